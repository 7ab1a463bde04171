r"""Evaluation suites for a trained encoder (`evaluate.py`, vivi/evaluate/suite.py; the
training loop's `config.probe` runs the same evaluators).

  python evaluate.py --config=configs/evaluate.py:synthetic --workdir=/tmp/vivi_obj_tiny
  python evaluate.py --config=configs/evaluate.py:vtab --encoder=EXPORTED_DIR \
      --config.data_dir=~/tensorflow_datasets
  python evaluate.py --config=configs/evaluate.py:vtab_tiny --random_init

Variants:
  synthetic  the default for a tiny run: everything on the synthetic world, at the tiny runs'
             image size: linear probe and kNN on pooled features (block 4 averaged), the
             probe also on pooled block 3; the VTAB-1k protocol end to end on one synthetic
             task (vtab_tiny's settings: synthetic/class, steps scaled by 0.01, one run,
             BatchNorm statistics re-estimated); pm-k robustness on held-out video frames,
             the object nearest-neighbour fraction (Romijnders et al. Table 2), object
             discovery (Odin: k-means segments of block 4 vs true object masks, ABO and
             object recovery, with its picture), frame-to-video retrieval, and the pictures
             (training curves, t-SNE, nearest-neighbour grid, VITO attention when the run
             has it). Each run's results.md lists every evaluator's wall time.
  synthetic_full  the same with the VTAB protocol on three synthetic tasks (class, count,
             orientation), median of 3 runs, batch 64: about three times as long.
  quick      the same without VTAB-1k.
  vtab       the VTAB-1k protocol of VIVI section 4 on the 19 tasks (TFDS, prepared under
             data_dir; nothing is downloaded), VTAB v1's "lightweight" sweep: per task the
             whole network plus a zero-initialised linear head is fine-tuned on train800
             with SGD (momentum 0.9, batch 512) for each of learning rate {0.1, 0.01} x
             schedule {10k steps, x0.1 every 3k; 2.5k steps, x0.1 every 750}; the best on
             val200 is retrained on all 1000 and scored on the whole test split; median of
             3 runs. The setting is chosen per model, as VIVI does: the best mean val200
             accuracy over the tasks (selection='per_model'). Images resized to 224 px, no
             augmentation, as VTAB's loader. Expected for VIVI-Ex(4) (ResNet-50): 62.5% mean
             over the 19 tasks (VIVI Table 1). Cost: 19 x 3 x 37.5k steps at batch 512,
             accelerator territory. Some tasks only:
             --config.evaluators.vtab.tasks='("natural",)' or '("cifar100", "dtd")'.
  vtab_per_task  the same protocol as Romijnders et al. run it (section 4.2): the setting
             chosen on each task's own val200 (selection='per_task'), 12 independent runs,
             the number their Welch tests (the tables' †) are based on; compare models'
             vtab_runs.json with `python compare.py A=DIR B=DIR`.
  vtab_tiny  the protocol end to end on synthetic/class at the tiny runs' image size, steps
             x0.01 (settings of 100 and 25 steps), batch 32, one run, the task's
             label-preserving augmentation, BatchNorm statistics re-estimated after each
             fine-tuning (25-100 steps are too few for running averages of momentum 0.99).
             With --random_init (the encoder `model` at initialisation, VTAB's from-scratch
             baseline) it checks the machinery and measures nothing: accuracies stay at
             chance.
  discovery  the training probe's object discovery alone (configs/common.py OBJECT_DISCOVERY,
             probe seed 1), with its picture: e.g. for a run whose probe had it switched
             off.
  probe      the training probe's linear probes alone (pooled block 4, the five synthetic
             tasks): e.g. a finished run's checkpoint on the validation split
             (--config.split=validation) to compare training settings without the test split.
  retrieval  frame-to-video retrieval alone (the suite's settings): how much of a frame's
             video (its background, camera path, cast) the encoder keeps, e.g. to
             see what an image-level objective learned.
The papers' evaluations on real data (docs/evaluations.md; TFDS datasets under data_dir and
official release folders, never downloaded), each also as '<variant>,quick': a smoke run of
the same evaluators on the real data with a few steps and images (checks paths and formats,
measures nothing):
  imagenet_linear  linear evaluation on ImageNet at 224 px (VITO A.6: SGD Nesterov 0.9, no
             weight decay, learning rates {0.4, 0.3, 0.2, 0.1, 0.05}; 90 epochs, batch 1024)
             chosen on 10,000 held-out training images, top-1 / top-5 on validation; writes
             the classifier the robustness evaluators read.
  robustness the linear classifier, then the robustness rows of Romijnders et al. Table 5 and
             VITO Table 1: ImageNet validation, -V2, -A and -R (on their 200 classes), -Sketch
             (TFDS), ImageNet-C's mCE against AlexNet's errors (TFDS imagenet2012_corrupted;
             ImageNet-3DCC too with --config.evaluators.imagenet_c.dcc_dir), ObjectNet's 113
             overlapping classes (set --config.evaluators.objectnet.objectnet_dir),
             ImageNet-Vid-Robust and YouTube-BB-Robust pm-10 with Clopper-Pearson intervals
             (VIVI Table 3) and the cue-conflict shape bias (Romijnders et al. section 5.2):
             set --config.evaluators.video_robustness.release_dir and
             --config.evaluators.shape_bias.stimuli_dir. 'robustness,finetuned' leaves out the
             linear classifier: set each evaluator's `classifier` to a fine-tuned run's workdir
             (configs/imagenet_finetune.py) or a classifier folder.
  segmentation_voc, segmentation_ade20k  semantic segmentation transfer (VITO Table 1, B.3):
             an FCN decoder fine-tuned with the encoder, 512-px crops, 30k (ADE20K: 60k)
             steps of 16, mIoU on val; set --config.evaluators.semantic_segmentation.voc_dir
             (VOCdevkit, with SBD's train_aug) or .ade_dir (ADEChallengeData2016).
  coco_discovery  object discovery on COCO val2017 (TFDS coco/2017_panoptic; the Odin
             slides' table): k-means of block 4, ABO per image and per object, object
             recovery.
Results: <workdir>/eval/step_<N>/{results.md, <evaluator>.json, *.png} and TensorBoard
(or under --output).
"""

import ml_collections

from configs import common

PAPER_VARIANTS = ('imagenet_linear', 'robustness', 'segmentation_voc', 'segmentation_ade20k',
                  'coco_discovery')
# The FCN transfer protocol (vivi/evaluate/segmentation.py DEFAULTS give each value's source).
SEGMENTATION = dict(head='decoder', crop_size=512, scale_range=(0.5, 2.0), batch_size=16,
                    num_steps=30_000, learning_rate=0.02, momentum=0.9, weight_decay=1e-4)
QUICK_SEGMENTATION = dict(head='linear', crop_size=64, batch_size=8, num_steps=10, num_train=16,
                          num_eval=8, eval_batch_size=8)
QUICK_LINEAR = dict(num_steps=10, held_out=64, eval_limit=64, batch_size=32, eval_batch_size=32,
                    shuffle_buffer=256)


def get_config(variant: str = 'synthetic') -> ml_collections.ConfigDict:
  variant, *flags = variant.split(',')
  unknown = set(flags) - {'quick', 'finetuned'}
  if unknown or (flags and variant not in PAPER_VARIANTS):
    raise ValueError(f'unknown variant options {flags!r}: a variant of {PAPER_VARIANTS} takes '
                     "',quick' (and robustness ',finetuned')")
  quick = 'quick' in flags
  config = ml_collections.ConfigDict()
  config.seed = 1
  config.image_size = common.TINY_IMAGE_SIZE   # The tiny runs' images (their blocks 3, 4: 4x4).
  config.data_dir = ''        # TFDS data (tfds/<name> datasets, VTAB tasks); never downloaded.
  config.num_train = 2000     # Probe / kNN examples per split (synthetic tasks are rendered).
  config.num_test = 1000
  config.workdir = ''         # Set by evaluate.py: training curves and VITO's attention need it.
  config.split = 'test'       # 'validation': score on held-out training images (suite.py).
  # The encoder of `evaluate.py --random_init` (VTAB's from-scratch baseline): the tiny one.
  config.model = common.base('tiny').model
  tasks = tuple(f'synthetic/{t}' for t in common.PROBE_TASKS)
  sequences = dict(num_videos=40, frames_per_video=12)   # pm-k: consecutive frames, 4 fps
  held_out = dict(num_videos=40, frames_per_video=8)     # retrieval, t-SNE: across shots
  # The VTAB-1k protocol on synthetic tasks at the tiny scale: end to end on one task (the
  # default suite's), and on three, median of three runs (synthetic_full).
  vtab_tiny = dict(tasks=('synthetic/class',), step_scale=0.01, num_runs=1, batch_size=32,
                   augment='', recalibrate_batch_stats=True)
  vtab_full = dict(tasks=('synthetic/class', 'synthetic/count', 'synthetic/orientation'),
                   step_scale=0.01, num_runs=3, batch_size=64, augment='')
  if variant in ('synthetic', 'synthetic_full', 'quick'):
    config.evaluators = dict(
        # Block 4 averaged over its positions is pre_logits itself: not a row of its own.
        linear_probe=dict(datasets=tasks, features=('pre_logits', 'block3')),
        knn=dict(datasets=tasks, features=('pre_logits',), k=20, temperature=0.07),
        vtab=vtab_full if variant == 'synthetic_full' else vtab_tiny,
        pm_k=dict(ks=(1, 4), **sequences),
        object_nn=dict(num_videos=40, frames_per_video=8),
        object_discovery={**common.OBJECT_DISCOVERY, **held_out},   # ~700 objects
        retrieval=dict(ks=(1, 5), **held_out),
        pictures=dict(num_queries=6, k=5, **held_out),
    )
    if variant == 'quick':
      del config.evaluators['vtab']
  elif variant in ('vtab', 'vtab_per_task'):
    config.image_size = 224
    per_task = variant == 'vtab_per_task'
    config.evaluators = dict(vtab=dict(
        tasks=('vtab',), step_scale=1.0, num_runs=12 if per_task else 3, batch_size=512,
        augment='none', selection='per_task' if per_task else 'per_model'))
  elif variant in PAPER_VARIANTS:
    config.image_size = 224
    linear = dict(QUICK_LINEAR) if quick else {}
    config.evaluators = dict(imagenet_linear=linear)
    if variant.startswith('segmentation'):
      dataset = 'pascal_voc' if variant == 'segmentation_voc' else 'ade20k'
      paper = dict(SEGMENTATION, voc_train_set='train_aug') if dataset == 'pascal_voc' else \
          dict(SEGMENTATION, num_steps=60_000)   # ~45 epochs of ADE20K's 20,210: our choice.
      config.evaluators = dict(semantic_segmentation=dict(
          QUICK_SEGMENTATION if quick else paper, dataset=dataset))
    elif variant == 'coco_discovery':
      config.evaluators = dict(coco_discovery=dict(num_images=16 if quick else 0))
    if variant == 'robustness':
      few = dict(limit=32) if quick else {}
      if 'finetuned' in flags:
        del config.evaluators['imagenet_linear']
      config.evaluators.imagenet_variants = dict(few)
      config.evaluators.imagenet_c = dict(few)
      config.evaluators.objectnet = dict(few)
      config.evaluators.video_robustness = dict(
          benchmarks=('imagenet_vid_robust', 'ytbb_robust'), ks=(10,), **few)
      config.evaluators.shape_bias = dict(few)
  elif variant == 'vtab_tiny':
    config.num_test = 500
    config.evaluators = dict(vtab=dict(vtab_tiny, num_test=500))
  elif variant == 'discovery':
    config.evaluators = dict(object_discovery=dict(common.OBJECT_DISCOVERY))
  elif variant == 'probe':
    config.evaluators = dict(linear_probe=dict(datasets=tasks, features=('pre_logits',)))
  elif variant == 'retrieval':
    config.evaluators = dict(retrieval=dict(ks=(1, 5), **held_out))
  else:
    raise ValueError(f"unknown variant {variant!r}: 'synthetic', 'synthetic_full', 'quick', "
                     "'vtab', 'vtab_per_task', 'vtab_tiny', 'discovery', 'probe', 'retrieval' "
                     f'or one of {PAPER_VARIANTS}')
  return config
