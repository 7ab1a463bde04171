r"""DetCon_B: contrastive detection with Felzenszwalb-Huttenlocher masks and BYOL's
architecture (Hénaff et al., "Efficient visual pretraining with contrastive detection",
ICCV 2021, arXiv 2103.10957; and the slides that present it beside VITO and Odin).

Paper run (ImageNet in the paper; here one frame per video of the user's records):

  python main.py --config=configs/detcon.py --workdir=/tmp/detcon \
      --config.data.dataset=/path/to/records

  The slides give the method (FH masks, masked pooling, one contrastive pair per mask
  across views) but no hyper-parameters. These come from the DetCon paper (Hénaff et al.,
  ICCV 2021, section 3 and appendix) and its released code (github.com/deepmind/detcon):
  FH masks computed once per image (skimage felzenszwalb, scale 1000, min_size 1000 on
  ImageNet images: generate_fh_masks_for_imagenet.py), 16 masks sampled per image
  (detcon_b.py, sample_masks n_random_vectors=16), masked average pooling of the final
  ResNet-50 feature map, the other masks of the batch as negatives, temperature 0.1
  (detcon_b_config.py, nce_loss_temperature), projector and predictor 4096 -> 256 with
  BatchNorm, EMA target with base momentum 0.996 rising to 1, LARS with base learning rate
  0.2 scaled by batch / 256 (3.2 at batch 4096), weight decay 1.5e-6, a warm-up of 1% of
  the epochs, cosine decay; BYOL's asymmetric augmentations. 1000 ImageNet epochs
  (312,500 steps at batch 4096). Our FH sigma (0.8, skimage's default) is our choice
  (vivi/input/segments.py).

Smoke run on the synthetic world:

  python main.py --config=configs/detcon.py:tiny --workdir=/tmp/detcon_tiny

  The tiny runs' encoder at 64 px: masks pool from the 4x4 block-4 grid, each cell
  weighted by how much of it the mask covers.
  Expected result: projects/synthetic_world/results.md, 'Gains per method'.
"""

import ml_collections

from configs import common

TINY_LR_MULTIPLIER = 1   # Chosen by the validation sweep (configs/common.py).


# The TPU slice (benchmarks/aot.py): 512 TPU v3 cores, BYOL's for a batch of 4096 (DetCon
# follows BYOL's recipe; the slides do not name the hardware).
TPU_SLICE = 'v3:16x16'


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  size, ablation = common.parse_variant(variant, 'configs/detcon.py', ('whole_image',))
  config = common.base(size)

  config.input = ml_collections.ConfigDict()
  config.input.sampler = 'detcon'      # vivi/input/detcon_sampler.py
  config.input.batch_videos = 4096     # One frame per video: 4096 images x 2 views.
  config.input.image_size = 224
  config.input.augment = 'byol'
  config.input.crop_area = (0.08, 1.0)
  config.input.num_masks = 16
  config.input.masks = 'fh'            # 'whole_image': the same objective on whole images.
  config.input.fh = dict(scale=1000.0, sigma=0.8, min_size=1000)

  config.objectives = ml_collections.ConfigDict()
  config.objectives.detcon = dict(weight=1.0, projector_hidden=4096, projection_dim=256,
                                  temperature=0.1)
  config.target_network = dict(momentum=0.996, schedule='cosine')

  config.optimizer = dict(name='lars', momentum=0.9, nesterov=False, weight_decay=1.5e-6)
  config.schedule = dict(name='cosine', base_learning_rate=3.2, warmup_steps=3125)
  config.num_train_steps = 312_500

  if size == 'tiny':
    common.tiny_schedule(config, images_per_video=2,
                         lr_multiplier=TINY_LR_MULTIPLIER)
    config.input.crop_area = (0.25, 1.0)
    config.input.num_masks = 8
    config.input.fh = dict(scale=100.0, sigma=0.8, min_size=50)
    config.objectives.detcon.projector_hidden = 512
    config.objectives.detcon.projection_dim = 64
  if ablation == 'whole_image':   # The same objective on whole images: one mask each.
    config.input.masks = 'whole_image'
    config.input.num_masks = 1
  return config
