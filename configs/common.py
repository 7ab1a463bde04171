"""What every method's config shares: data source, encoder, co-training slot, logging,
checkpoints and the synthetic-world probe. Method configs add `input`, `objectives`,
`optimizer`, `schedule` and `num_train_steps` (see configs/vivi.py for the full picture).
"""

import ml_collections

# The tiny runs (variant 'tiny'): every method on the synthetic world with the same encoder,
# image size and budget (`tiny_schedule`), so that their rows in benchmarks/learning.py
# compare. The encoder was chosen by benchmarks/tiny_encoder.py (see README, "Learning").
TINY_IMAGES_PER_STEP = 96   # Images through the online encoder per step, every method.
TINY_STEPS = 1000
TINY_IMAGE_SIZE = 64
TINY_MODEL = dict(depth=14, width=0.25, stem='small', stem_stride=2, downsample='pool')


def base(variant: str = '') -> ml_collections.ConfigDict:
  """The shared part; `variant='tiny'` is the smoke-run scale on the synthetic world."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.dataset = ''            # A folder of records + manifest.json, or 'synthetic'.
  c.data.cache_dir = '~/.cache/vivi'   # Where the synthetic world is built on first use.
  c.data.synthetic = dict(num_videos=2000, image_size=256, seed=0, fps=1.0)
  c.data.shuffle_buffer = 2000

  # Co-training with labelled images (input/labelled.py): '' = none.
  c.labelled = dict(dataset='', split='train', data_dir='', batch_size=0, num_examples=10000,
                    seed=2)

  c.model = ml_collections.ConfigDict()
  c.model.depth = 50
  c.model.width = 1.0            # 3.0 for VIVI-Ex(4)-Big.
  c.model.norm = 'batch'         # 'group_ws' when co-training (VIVI section 4).
  c.model.num_groups = 32
  # 'imagenet': 7x7/2 convolution + 3x3/2 max-pool (Keras' ResNet50V2, the papers' 224 px);
  # 'small': one 3x3 convolution of stride stem_stride, no max-pool (small images).
  c.model.stem = 'imagenet'
  c.model.stem_stride = 1
  c.model.downsample = 'stride'  # 'pool': stride-2 units max-pool instead (resnet_v2.py).
  c.model.dtype = 'float32'
  c.model.fsdp = False           # Shard parameters and optimiser state over devices
                                 # (parallel.state_shardings), e.g. for width 3.0.

  c.log_every_steps = 100
  # A step with a non-finite loss or gradient is skipped (the state is kept); this many in
  # a row stop the run (vivi/loop.py NonFiniteGuard).
  c.max_nonfinite_steps = 10
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  # Linear probe of frozen pooled features on the synthetic world's held-out tasks,
  # and the object nearest-neighbour diagnostic of Romijnders et al. Table 2 on held-out
  # videos.
  # split='validation' scores on held-out training images and never renders the test split
  # (for choosing hyper-parameters: benchmarks/learning.py --sweep).
  c.probe = dict(every_steps=10_000, tasks=('class', 'count', 'position', 'orientation',
                                             'size'),
                 num_train=2000, num_test=1000, image_size=224, seed=1,
                 nn_videos=40, nn_frames_per_video=8, split='test')

  if variant == 'tiny':
    c.data.dataset = 'synthetic'
    c.data.synthetic = dict(num_videos=400, image_size=64, seed=0, fps=1.0)
    c.data.shuffle_buffer = 400
    c.model.update(TINY_MODEL)
    c.log_every_steps = 25
    c.checkpoint_every_steps = 150
    c.probe.every_steps = 225
    c.probe.image_size = TINY_IMAGE_SIZE
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' (paper) or 'tiny'")
  return c


def parse_variant(variant: str, config_file: str, options: tuple[str, ...] = ()
                  ) -> tuple[str, str]:
  """'[tiny][,option]' -> (size: '' or 'tiny', option: '' or one of `options`); anything else
  is an error that lists what `config_file` accepts."""
  tokens = [t for t in variant.split(',') if t]
  sizes = [t for t in tokens if t not in options]
  chosen = [t for t in tokens if t in options]
  if sizes not in ([], ['tiny']) or len(chosen) > 1:
    valid = f'[tiny][,option] with an option from {options}' if options else "'' or 'tiny'"
    raise ValueError(f'unknown variant {variant!r} of {config_file}: want {valid}')
  return (sizes[0] if sizes else ''), (chosen[0] if chosen else '')


def tiny_schedule(c: ml_collections.ConfigDict, *, paper_lr: float,
                  paper_images_per_step: int, images_per_video: int,
                  lr_multiplier: float) -> None:
  """The tiny runs' budget and learning-rate rule, the same for every method (call it after
  the method's paper values are set).

  Budget: TINY_IMAGES_PER_STEP images through the online encoder per step (so
  `images_per_video` decides the videos per step) for TINY_STEPS steps at TINY_IMAGE_SIZE.
  Learning rate: the paper's, scaled linearly with the images per step (Goyal et al. 2017;
  for LARS methods this is BYOL's 0.2 x B / 256), times `lr_multiplier`, the method's
  TINY_LR_MULTIPLIER, chosen from (1, 4, 16) by `python benchmarks/learning.py --sweep` on
  the probe's validation split (never the test split), the same procedure for every method.
  Schedule: the paper's shape compressed to TINY_STEPS (its warm-up fraction and decay
  steps kept).
  """
  if TINY_IMAGES_PER_STEP % images_per_video:
    raise ValueError(f'{images_per_video} images per video do not divide '
                     f'{TINY_IMAGES_PER_STEP} images per step')
  c.input.batch_videos = TINY_IMAGES_PER_STEP // images_per_video
  c.input.image_size = TINY_IMAGE_SIZE
  c.schedule.base_learning_rate = (paper_lr * TINY_IMAGES_PER_STEP / paper_images_per_step
                                   * lr_multiplier)
  fraction = lambda step: step / c.num_train_steps
  c.schedule.warmup_steps = round(fraction(c.schedule.warmup_steps) * TINY_STEPS)
  if c.schedule.name == 'piecewise':
    c.schedule.boundaries = tuple(round(fraction(b) * TINY_STEPS) for b in c.schedule.boundaries)
  c.num_train_steps = TINY_STEPS
  if 'target_network' in c:
    # A target that averages over 1/(1 - m) steps must follow the online network within a
    # tiny run: 0.999 (MoCo) would leave it at its initialisation (measured: VINCE's loss
    # then stays at chance), so 0.99 (a 100-step horizon) for every tiny run.
    c.target_network.momentum = 0.99
