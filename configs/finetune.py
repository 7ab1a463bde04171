r"""VTAB-1k fine-tuning of an exported encoder (vivi/evaluate/vtab.py, finetune.py).

Paper protocol (VIVI section 4, VTAB v1 "lightweight" sweep; Romijnders et al. section 4),
on VTAB data sets prepared in a local TFDS data dir (nothing is downloaded):

  python -m vivi.evaluate.vtab --config=configs/finetune.py \
      --config.encoder_checkpoint=/path/to/exported_encoder \
      --config.data_dir=/path/to/tensorflow_datasets --output=/tmp/vtab.json

  The encoder folder is what `vivi.checkpoint.export_encoder` writes (its variables plus
  encoder.json with the architecture). Per task: the whole network plus a zero-initialised
  linear head is fine-tuned on train800 with SGD (momentum 0.9, batch 512) for each of
  learning rate {0.1, 0.01} x schedule {10k steps, 10x decay every 3k; 2.5k steps, 10x
  decay every 750}; the best setting on val200 is retrained on all 1000 examples and
  evaluated on the whole test split; 3 independent runs, median reported (VIVI: "repeated
  this evaluation scheme three times and report the median"; Romijnders et al. use 12 runs
  for their significance tests: --config.num_runs=12). Images are resized to 224 x 224
  without augmentation, as VTAB's data loader does. Expected for VIVI-Ex(4) (ResNet-50):
  62.5% mean over the 19 tasks (VIVI Table 1). Cost: 5 fine-tunings of 2.5k-10k steps per
  task and run, i.e. 19 x 3 x 37.5k = 2.1M steps at batch 512: accelerator territory.
  Only some tasks: --config.task=natural, or --config.task=cifar100,dtd.

Smoke run on the synthetic world (no data needed):

  python -m vivi.evaluate.vtab --config=configs/finetune.py:tiny \
      [--config.encoder_checkpoint=/tmp/vivi_tiny_encoder]

  The protocol end to end on `synthetic/class` at the tiny runs' image size with steps
  x0.01 (settings of 100 and 25 steps, decays every 30 and 8 steps), batch 32, 1 run.
  Without an encoder_checkpoint the encoder is `model` (configs/common.py TINY_MODEL, the
  tiny runs' encoder) at random initialisation, VTAB's from-scratch baseline. BatchNorm
  statistics are re-estimated after each fine-tuning (`recalibrate_batch_stats`): 25-100
  steps are too few for the running averages (momentum 0.99) to forget their initial
  values. Prints each
  setting's val200 accuracy, the chosen one and the test accuracy (about 1.5 min on 2 CPU
  cores). It checks the machinery, it measures nothing: from a random encoder the
  accuracies stay at chance (measured: 10.6% test; with --config.step_scale=0.05, i.e.
  125-500 steps, 3.5 min: 8.4%), since 800 images and a few hundred noisy steps at
  batch 32 do not teach a ResNet the synthetic shapes from scratch.

Variants: '' (paper), 'tiny'. Any key can be overridden: --config.num_runs=12.
"""

import ml_collections

from configs import common


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # A folder written by vivi.checkpoint.export_encoder; '' = `model` at random init.
  c.encoder_checkpoint = ''
  # A VTAB task name (vivi/evaluate/vtab.py TASKS, e.g. 'cifar100', 'clevr/count_all'),
  # 'synthetic/<task>', 'vtab' (all 19), a group ('natural', 'specialized', 'structured'),
  # 'synthetic' (all synthetic tasks), or a comma-separated list of these.
  c.task = 'vtab'
  c.data_dir = ''                # TFDS data dir; '' = TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.image_size = 224             # VTAB resizes every image to 224 x 224.
  c.num_test = 0                 # Cap on test examples; 0 = the whole test split (VTAB).
  c.data_seed = 0                # Rendering seed of synthetic tasks.

  c.batch_size = 512             # VTAB's fine-tuning batch.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.learning_rates = (0.1, 0.01)
  c.sweep.schedules = ((10_000, 3_000), (2_500, 750))  # (steps, decay every): x0.1 each time.
  c.step_scale = 1.0             # Multiplies steps and decay intervals (at least 1 step).
  c.num_runs = 3                 # Independent runs of the protocol; the median is reported.
  c.sweep_once = False           # True: one sweep, only the retraining repeats per run.
  c.seed = 0
  # '' = each task's label-preserving light augmentation (vtab.py); 'none' = VTAB's.
  c.augment = 'none'
  c.recalibrate_batch_stats = False  # VTAB: off (its schedules are long enough).

  # The encoder when encoder_checkpoint is '' (otherwise its encoder.json decides).
  c.model = ml_collections.ConfigDict()
  c.model.depth = 50
  c.model.width = 1.0
  c.model.norm = 'batch'
  c.model.num_groups = 32
  c.model.stem = 'imagenet'
  c.model.stem_stride = 1
  c.model.downsample = 'stride'  # 'pool': stride-2 units max-pool instead (resnet_v2.py).
  c.model.dtype = 'float32'

  if variant == 'tiny':
    c.task = 'synthetic/class'
    c.image_size = common.TINY_IMAGE_SIZE
    c.num_test = 500
    c.batch_size = 32
    c.step_scale = 0.01
    c.num_runs = 1
    c.augment = ''
    c.recalibrate_batch_stats = True
    c.model.update(common.TINY_MODEL)   # The tiny runs' encoder.
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' (paper) or 'tiny'")
  return c
