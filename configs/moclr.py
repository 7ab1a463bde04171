r"""MoCLR, the image-level contrastive baseline (Tian, Hénaff & van den Oord, "Divide and
contrast", ICCV 2021): "the best of SimCLR, MoCo and BYOL" in the slides, the ImageNet
baseline that VITO closes the gap with, and what DetCon and Odin add objects to.

Two augmented views of one image; an online network with projector and predictor and an EMA
target (BYOL's architecture); the InfoNCE between one view's online prediction and the other
view's target projection, against the target projections of the batch's other images
(SimCLR's loss), temperature 0.1, symmetrised over the views. That is DetCon_B's objective
with a single mask covering the whole image (DetCon, section 3: with one whole-image mask
the loss is the image-level one), so this config is configs/detcon.py's `whole_image`
variant: same sampler (one frame per video, BYOL's augmentations), heads, optimiser and
schedule (LARS 3.2 at batch 4096, cosine, 1.5e-6 weight decay, momentum 0.996 -> 1).
Tian et al.'s own learning rate and epochs are not quoted in this repository; the values
are DetCon_B's, from the same group's code base.

  python main.py --config=configs/moclr.py --workdir=/tmp/moclr \
      --config.data.dataset=/path/to/records
  python main.py --config=configs/moclr.py:tiny --workdir=/tmp/moclr_tiny

The tiny run is the learning benchmark's MoCLR row; its learning rate is DetCon's, the same
objective and optimiser. MoCLR's own validation sweep (`python -m
projects.synthetic_world.learning --sweep --runs=moclr`) does not tell DetCon's value from
x4 apart on a large validation probe, so it keeps DetCon's.
Expected result: projects/synthetic_world/results.md, 'Gains per method'.
"""

import ml_collections

from configs import common, detcon

TINY_LR_MULTIPLIER = detcon.TINY_LR_MULTIPLIER
TPU_SLICE = detcon.TPU_SLICE   # DetCon's: the same recipe and batch.


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  size, _ = common.parse_variant(variant, 'configs/moclr.py')
  return detcon.get_config(','.join(filter(None, (size, 'whole_image'))))
