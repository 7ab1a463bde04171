r"""VITO: video pretraining with multi-scale contrastive attention pooling (Parthasarathy
et al. 2023).

Paper run, on records of clips at a frame rate that resolves 2.56 s (data/, e.g. 25 fps;
VITO trains on VideoNet, videos filtered by an ImageNet classifier, >= 10 s long):

  python main.py --config=configs/vito.py --workdir=/tmp/vito \
      --config.data.dataset=/path/to/records

  Published values (section 3.1, B.2): ResNet-50; n=3 views per clip drawn marginally
  (uniformly and independently) from a clip of T=2.56 s; random resized crops of minimum
  scale 0.4, flip, blur, colour and solarisation as in BYOL [61]; attention pooling over
  the last two ResNet blocks (S=2), a 2-layer attention MLP per scale, a 2-layer MLP
  projector; EMA target networks; InfoNCE (equation 3) summed over all ordered view pairs
  with negatives from the other videos of the batch.

  Not in the paper (its pretraining appendix defers to MoCLR [68] and BYOL [61]), chosen
  here from BYOL: LARS, batch 4096 clips, learning rate 0.2 x 4096/256 = 3.2 with a
  10-epoch warm-up and cosine decay, weight decay 1.5e-6, target momentum 0.996 rising to
  1 (cosine), 300 ImageNet-equivalent epochs (section 4.3's budget: 300 x 1.28M / 4096
  = 93,750 steps); temperature 0.1 on L2-normalised projections (MoCLR); projector
  4096 -> 256.

Smoke run on the synthetic world, rendered at 4 fps (about ten frames per 2.56 s clip):

  python main.py --config=configs/vito.py:tiny --workdir=/tmp/vito_tiny

  Expected result: projects/synthetic_world/results.md, 'Gains per method'.

Variants, comma-separated: a size ('' or 'tiny') and optionally one ablation row:
  pooling (Figure B.2, right; section 4.4 "Multi-scale attention pooling"):
    no_attention     global average pooling of the same two blocks (2-scale, no attention);
    single_scale     attention pooling of block 4 alone;
    average_pooling  global average pooling of block 4 alone (the standard single-scale
                     contrastive head);
  temporal sampling (Figure B.3; vivi/input/vito_sampler.py):
    delta            the 3 views at fixed spacing T/2 in the clip (Gordon et al.'s scheme);
    uniform          one view uniform in each third of the clip (Xu and Wang's).
The paper's claims (section 4.4, B.2): 2-scale attention above 2-scale average pooling above
single-scale attention, itself +0.2% mIoU above single-scale average pooling; marginal
sampling above delta and uniform on PASCAL and ADE20K.
"""

import ml_collections

from configs import common

TINY_LR_MULTIPLIER = 1   # Chosen by the validation sweep (configs/common.py).
ABLATIONS = ('no_attention', 'single_scale', 'average_pooling', 'delta', 'uniform')


# The TPU slice (benchmarks/aot.py): not named in the paper; 512 TPU v3 cores, what BYOL
# (whose recipe VITO follows) used for its global batch of 4096.
TPU_SLICE = 'v3:16x16'


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  size, ablation = common.parse_variant(variant, 'configs/vito.py', ABLATIONS)
  config = common.base(size)

  config.input = ml_collections.ConfigDict()
  config.input.sampler = 'vito'        # vivi/input/vito_sampler.py
  config.input.batch_videos = 4096
  config.input.num_views = 3
  config.input.clip_seconds = 2.56
  config.input.image_size = 224
  config.input.augment = 'byol'        # vivi/input/augment.py; view i uses BYOL's view i % 2.
  config.input.crop_area = (0.4, 1.0)  # Section 3.1: minimum crop scale 0.4.
  # Marginal sampling (eq. 1); 'delta' and 'uniform' are Figure B.3's alternatives.
  config.input.temporal = ablation if ablation in ('delta', 'uniform') else 'marginal'

  config.objectives = ml_collections.ConfigDict()
  single = ablation in ('single_scale', 'average_pooling')
  config.objectives.vito = dict(
      weight=1.0, scales=('block4',) if single else ('block3', 'block4'),
      attention=ablation not in ('no_attention', 'average_pooling'), attention_hidden=512,
      projector_hidden=4096, projection_dim=256, temperature=0.1)
  config.target_network = dict(momentum=0.996, schedule='cosine')

  config.optimizer = dict(name='lars', momentum=0.9, nesterov=False, weight_decay=1.5e-6)
  config.schedule = dict(name='cosine', base_learning_rate=3.2, warmup_steps=3125)
  config.num_train_steps = 93_750

  if size:
    config.data.synthetic = dict(num_videos=400, image_size=64, seed=0, fps=4.0)
    common.tiny_schedule(config, images_per_video=config.input.num_views,
                         lr_multiplier=TINY_LR_MULTIPLIER)
    config.objectives.vito.attention_hidden = 64
    config.objectives.vito.projector_hidden = 512
    config.objectives.vito.projection_dim = 64
  return config
