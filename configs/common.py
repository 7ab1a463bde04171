"""What every method's config shares: data source, encoder, co-training slot, logging,
checkpoints and the synthetic-world probe. Method configs add `input`, `objectives`,
`optimizer`, `schedule` and `num_train_steps` (see configs/vivi.py for the full picture).
"""

import ml_collections

# The tiny runs (variant 'tiny'): every method on the synthetic world with the same encoder,
# image size and budget (`tiny_schedule`), so that their rows in the learning benchmark
# (`python -m projects.synthetic_world.learning`) compare. The encoder was chosen by the
# tiny-encoder study (projects/synthetic_world/): the papers' ResNet at 48 px cannot learn the
# world's shapes even with labels, so this one downsamples by pooling and runs at 64 px.
TINY_IMAGES_PER_STEP = 96   # Images through the online encoder per step, every method.
TINY_STEPS = 1000
TINY_IMAGE_SIZE = 64
TINY_MODEL = dict(depth=14, width=0.25, stem='small', stem_stride=2, downsample='pool')
# The tiny runs' optimiser and schedule, the same for every method, not the papers' (SGD or
# LARS at the linear-scaling rule): in 1,000 steps of 96 images SGD, even at 4x the rule,
# trains this encoder *with labels* far less than AdamW does under the same schedule. The
# learning rate is TINY_LEARNING_RATE (AdamW's in the tiny-encoder study) times the method's
# TINY_LR_MULTIPLIER, chosen from TINY_LR_MULTIPLIERS on the probe's validation split by
# `python -m projects.synthetic_world.learning --sweep`; cosine decay after a 5% warm-up.
TINY_OPTIMIZER = dict(name='adamw', momentum=0.9, nesterov=False, weight_decay=1e-4)
TINY_LEARNING_RATE = 2e-3
TINY_LR_MULTIPLIERS = (0.25, 1, 4)
TINY_WARMUP_STEPS = 50
# The synthetic world's held-out tasks every run probes (vivi/input/synthetic_tasks.py).
PROBE_TASKS = ('class', 'count', 'position', 'orientation', 'size')
# The probe's object discovery (vivi/evaluate/discovery.py) on the representation the
# objectives train: block 4, not upsampled. At the tiny size (64 px: blocks 3 and 4 are 4x4
# maps, block 2 is 8x8) upsampling block 4 (bilinear, x2 or x4) raises no trained encoder's
# ABO; blocks 1-2 of an encoder at initialisation already segment by colour, better than
# most trained encoders, so there the evaluation would measure colour, not learning; block 4
# at initialisation scores what a fixed grid of K blocks scores, a clean zero.
# K = 5: the world's MAX_CAST (4) objects per frame and the background. 60 videos x 4
# frames (about 500 objects) keep each probe pass to seconds on a CPU.
OBJECT_DISCOVERY = dict(num_videos=60, frames_per_video=4, num_clusters=5, num_iterations=10,
                        feature='block4', upsample=1)


def base(variant: str = '') -> ml_collections.ConfigDict:
  """The shared part; `variant='tiny'` is the smoke-run scale on the synthetic world."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Fine-tuning: start the encoder from an exported encoder folder or a training workdir's
  # latest checkpoint ('' = random initialisation; vivi/train.py with_pretrained_encoder).
  config.init_encoder = ''

  config.data = ml_collections.ConfigDict()
  config.data.dataset = ''            # A folder of records + manifest.json, or 'synthetic'.
  config.data.cache_dir = '~/.cache/vivi'   # Where the synthetic world is built on first use.
  config.data.synthetic = dict(num_videos=2000, image_size=256, seed=0, fps=1.0)
  config.data.shuffle_buffer = 2000

  # Co-training with labelled images (input/labelled.py): '' = none.
  config.labelled = dict(dataset='', split='train', data_dir='', batch_size=0, num_examples=10000,
                         seed=2)

  config.model = ml_collections.ConfigDict()
  config.model.depth = 50
  config.model.width = 1.0            # 3.0 for VIVI-Ex(4)-Big.
  config.model.norm = 'batch'         # 'group_ws' when co-training (VIVI section 4).
  config.model.num_groups = 32
  # 'imagenet': 7x7/2 convolution + 3x3/2 max-pool (Keras' ResNet50V2, the papers' 224 px);
  # 'small': one 3x3 convolution of stride stem_stride, no max-pool (small images).
  config.model.stem = 'imagenet'
  config.model.stem_stride = 1
  config.model.downsample = 'stride'  # 'pool': stride-2 units max-pool instead (resnet_v2.py).
  # 'keras': Keras' ResNet50V2 units; 'timm': timm's ResNetV2 (stride in each stage's first
  # unit, no conv biases), which evaluate.py --export_timm writes for PyTorch (resnet_v2.py).
  config.model.layout = 'keras'
  # The dtype of convolutions (resnet_v2.Conv casts kernel and input to it); parameters,
  # normalisation, heads, losses, optimiser state and the EMA target stay float32.
  # bfloat16 as TPUs run it at paper scale; float32 for the tiny runs: XLA:CPU runs them no
  # faster in bfloat16 and the synthetic study's records are float32 (benchmarks/README.md,
  # "bfloat16 on the CPU").
  config.model.dtype = 'float32' if variant == 'tiny' else 'bfloat16'
  # Shard parameters and optimiser state over devices (parallel.state_shardings), e.g. for
  # width 3.0.
  config.model.fsdp = False

  # A jax.profiler trace of steps first_step .. first_step + num_steps - 1 into
  # <workdir>/profile (vivi/loop.py Profile); 0 steps: none.
  config.profile = dict(first_step=10, num_steps=0)

  config.log_every_steps = 100
  # A step with a non-finite loss or gradient is skipped (the state is kept); this many in
  # a row stop the run (vivi/loop.py NonFiniteGuard).
  config.max_nonfinite_steps = 10
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  # Linear probe of frozen pooled features on the synthetic world's held-out tasks, the
  # object nearest-neighbour diagnostic of Romijnders et al. Table 2 on held-out videos,
  # and Odin's object discovery (k-means segments of block 4 vs the true object masks).
  # split='validation' scores on held-out training images and never renders the test split
  # (for choosing hyper-parameters: python -m projects.synthetic_world.learning --sweep).
  # The evaluators are the evaluation suite's (vivi/evaluate/suite.py, configs/evaluate.py):
  # set a linear probe's datasets to () or object_nn's or object_discovery's num_videos to 0
  # to switch it off.
  config.probe = dict(
      every_steps=10_000, split='test', seed=1, image_size=224, num_train=2000, num_test=1000,
      evaluators=dict(
          linear_probe=dict(datasets=tuple(f'synthetic/{t}' for t in PROBE_TASKS),
                            features=('pre_logits',)),
          object_nn=dict(num_videos=40, frames_per_video=8),
          object_discovery=dict(OBJECT_DISCOVERY)))

  if variant == 'tiny':
    config.data.dataset = 'synthetic'
    config.data.synthetic = dict(num_videos=400, image_size=64, seed=0, fps=1.0)
    config.data.shuffle_buffer = 400
    config.model.update(TINY_MODEL)
    config.log_every_steps = 25
    config.checkpoint_every_steps = 150
    config.probe.every_steps = TINY_STEPS // 2   # Midway and at the end.
    config.probe.image_size = TINY_IMAGE_SIZE
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' (paper) or 'tiny'")
  return config


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


def tiny_schedule(config: ml_collections.ConfigDict, *, images_per_video: int,
                  lr_multiplier: float) -> None:
  """The tiny runs' budget, optimiser and learning-rate rule, the same for every method
  (call it after the method's paper values are set; it replaces `optimizer` and `schedule`).

  Budget: TINY_IMAGES_PER_STEP images through the online encoder per step (so
  `images_per_video` decides the videos per step) for TINY_STEPS steps at TINY_IMAGE_SIZE.
  Optimiser: TINY_OPTIMIZER, cosine decay after TINY_WARMUP_STEPS, peak learning rate
  TINY_LEARNING_RATE x `lr_multiplier` (the method's TINY_LR_MULTIPLIER, one of
  TINY_LR_MULTIPLIERS, chosen on the validation split; see above).
  """
  if TINY_IMAGES_PER_STEP % images_per_video:
    raise ValueError(f'{images_per_video} images per video do not divide '
                     f'{TINY_IMAGES_PER_STEP} images per step')
  if lr_multiplier not in TINY_LR_MULTIPLIERS:
    raise ValueError(f'lr_multiplier {lr_multiplier} is not one of {TINY_LR_MULTIPLIERS}')
  config.input.batch_videos = TINY_IMAGES_PER_STEP // images_per_video
  config.input.image_size = TINY_IMAGE_SIZE
  config.num_train_steps = TINY_STEPS
  config.optimizer = dict(TINY_OPTIMIZER)
  config.schedule = dict(name='cosine', base_learning_rate=TINY_LEARNING_RATE * lr_multiplier,
                         warmup_steps=TINY_WARMUP_STEPS)
  if 'target_network' in config:
    # A target that averages over 1/(1 - m) steps must follow the online network within a
    # tiny run: 0.999 (MoCo) would leave it at its initialisation (VINCE's loss then stays
    # at chance), so 0.99 (a 100-step horizon) for every tiny run.
    config.target_network.momentum = 0.99
