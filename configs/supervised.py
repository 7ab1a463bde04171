r"""The supervised reference: the same encoder trained with labels, no video.

Paper-scale run (the supervised ImageNet baseline the VIVI papers compare against; ImageNet
prepared in the user's TFDS data dir, nothing is downloaded):

  python main.py --config=configs/supervised.py --workdir=/tmp/supervised \
      --config.labelled.data_dir=/path/to/tfds

  ResNet-50 v2, softmax cross-entropy of a linear classifier on the pooled representation;
  the standard recipe of Goyal et al. 2017: batch 1024, SGD with momentum 0.9, learning rate
  0.1 x 1024 / 256 = 0.4 after a 5-epoch warm-up, x0.1 at epochs 30, 60 and 80 of 90,
  weight decay 1e-4; Inception crops and flips (the co-training augmentation).

The synthetic world's ceiling (the `supervised` row of the learning benchmark):

  python main.py --config=configs/supervised.py:tiny --workdir=/tmp/supervised_tiny

  The tiny encoder, image size, images per step, steps and schedule of every method's tiny
  run (configs/common.py: tiny_schedule), trained on 10,000 labelled images of the world's
  `class` task (rendered with seed 2; the probe's images use seed 1, so none is shared).
  What the encoder reaches when the labels of the probe's task are given: a method's row is
  read between the colour histogram and this one.
  Expected result: projects/synthetic_world/results.md (the supervised ceiling).
"""

import ml_collections

from configs import common

IMAGENET_EPOCH = 1_281_167
TINY_LR_MULTIPLIER = 4   # Chosen by the validation sweep (configs/common.py).


# The TPU slice (benchmarks/aot.py): 128 TPU v3 cores, 8 of the 1024 images each (the
# supervised reference of VIVI's hardware; not named in the paper).
TPU_SLICE = 'v3:8x8'


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  size, _ = common.parse_variant(variant, 'configs/supervised.py')
  config = common.base(size)
  config.input = ml_collections.ConfigDict()
  config.input.sampler = 'none'              # Labelled images only (vivi/input/samplers.py).
  config.input.batch_videos = 1              # Unused without videos (kept for the checks).
  config.input.image_size = 224
  config.input.crop_area = (0.08, 1.0)      # Inception crops (Szegedy et al. 2015), and flips.
  config.labelled.dataset = 'imagenet2012'
  config.labelled.batch_size = 1024
  config.objectives = ml_collections.ConfigDict()
  config.objectives.supervised = dict(weight=1.0, num_classes=1000)
  config.optimizer = dict(name='sgd', momentum=0.9, nesterov=False, weight_decay=1e-4)
  steps_per_epoch = IMAGENET_EPOCH // 1024
  config.schedule = dict(name='piecewise', base_learning_rate=0.4, decay_factor=0.1,
                         boundaries=tuple(e * steps_per_epoch for e in (30, 60, 80)),
                         warmup_steps=5 * steps_per_epoch)
  config.num_train_steps = 90 * steps_per_epoch

  if size == 'tiny':
    config.labelled.dataset = 'synthetic/class'
    config.objectives.supervised.num_classes = 10
    common.tiny_schedule(config, images_per_video=1,
                         lr_multiplier=TINY_LR_MULTIPLIER)
    config.labelled.batch_size = common.TINY_IMAGES_PER_STEP
    config.input.batch_videos = 1
    # Flips only, the recipe with which the tiny-encoder study chose the tiny encoder: crops
    # of 25-100% of the image cut the centred object and train a weaker classifier, and the
    # ceiling is the best labelled run.
    config.input.crop_area = (1.0, 1.0)
  return config
