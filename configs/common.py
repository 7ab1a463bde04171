"""What every method's config shares: data source, encoder, co-training slot, logging,
checkpoints and the synthetic-world probe. Method configs add `input`, `objectives`,
`optimizer`, `schedule` and `num_train_steps` (see configs/vivi.py for the full picture).
"""

import ml_collections


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
  c.probe = dict(every_steps=10_000, tasks=('class', 'count', 'position', 'orientation',
                                             'size'),
                 num_train=2000, num_test=1000, image_size=224, seed=1,
                 nn_videos=40, nn_frames_per_video=8)

  if variant == 'tiny':
    c.data.dataset = 'synthetic'
    c.data.synthetic = dict(num_videos=400, image_size=64, seed=0, fps=1.0)
    c.data.shuffle_buffer = 400
    c.model.depth = 14
    c.model.width = 0.5
    c.log_every_steps = 25
    c.checkpoint_every_steps = 150
    c.probe.every_steps = 225
    c.probe.image_size = 48
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' (paper) or 'tiny'")
  return c


def tiny_schedule(c: ml_collections.ConfigDict, learning_rate: float) -> None:
  """The tiny runs' schedule: 450 steps after a 20-step warm-up, and their batch of 8
  videos at 48 px (learning rates chosen once per method, not tuned). Call it after the
  method's paper values are set."""
  c.input.batch_videos = 8
  c.input.image_size = 48
  c.schedule.base_learning_rate = learning_rate
  c.schedule.warmup_steps = 20
  c.num_train_steps = 450
  if 'target_network' in c:
    # A target that averages over 1/(1 - m) steps must follow the online network within a
    # 450-step run: 0.999 (MoCo) would leave it at its initialisation (measured: VINCE's
    # loss then stays at chance), so 0.99 (a 100-step horizon) for every tiny run.
    c.target_network.momentum = 0.99
