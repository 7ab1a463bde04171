r"""Odin: object discovery and representation networks (Hénaff et al., ECCV 2022, arXiv
2203.08777; and the slides that present it beside DetCon and VITO).

Paper run (ImageNet in the paper; here one frame per video of the user's records):

  python main.py --config=configs/odin.py --workdir=/tmp/odin \
      --config.data.dataset=/path/to/records

  DetCon_B's recipe (configs/detcon.py: LARS 3.2 at batch 4096, cosine with 1% warm-up,
  weight decay 1.5e-6, projector and predictor 4096 -> 256, temperature 0.1, BYOL's
  augmentations, EMA momentum 0.996 -> 1) with the Felzenszwalb-Huttenlocher masks replaced
  by segments discovered on the fly: the EMA target encodes a discovery view (a large crop
  of the frame, not otherwise augmented) and k-means clusters its final feature map into K
  segments, recomputed at every step (vivi/objectives/odin.py). 1000 ImageNet epochs.

  Chosen here, the paper's values not being quoted in this repository (the slides give
  none): K = 8 clusters of the block-4 map (7 x 7 at 224 px), cosine k-means from a
  deterministic farthest-point seeding, 10 Lloyd iterations; the discovery view a crop of
  50-100% of the frame at the training views' resolution. Check them against the paper
  before a paper run. Summaries of the paper describe, as here, the discovery view as a
  crop covering most of the image and not otherwise augmented, its feature map clustered
  into segments that are then cropped and flipped with each augmented view, and the
  discovery network as a slowly updated copy of the representation network.

Smoke run on the synthetic world:

  python main.py --config=configs/odin.py:tiny --workdir=/tmp/odin_tiny

  At 64 px block 4 is 4 x 4: 16 cells in K = 4 clusters (the paper's ~6 cells per
  cluster, rounded so that every cluster can hold an object of the world's frames, which
  carry 1-4 objects over a background). The learning rate is DetCon's: the same objective,
  optimiser and heads with other masks; Odin's own validation sweep (`python -m
  projects.synthetic_world.learning --sweep --runs=odin`) chooses the same value.
  Expected result: projects/synthetic_world/results.md, 'Gains per method'.
"""

import ml_collections

from configs import common, detcon

TINY_LR_MULTIPLIER = detcon.TINY_LR_MULTIPLIER
TPU_SLICE = detcon.TPU_SLICE   # DetCon's: the same recipe and batch.


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  size, _ = common.parse_variant(variant, 'configs/odin.py')
  config = detcon.get_config(size)        # DetCon_B's recipe, then its masks replaced.
  config.input.masks = 'discovered'       # vivi/input/detcon_sampler.py
  config.input.discovery_crop_area = (0.5, 1.0)
  del config.input.fh, config.input.num_masks  # Odin's masks are its K clusters.
  head = dict(config.objectives.detcon)
  del config.objectives.detcon
  config.objectives.odin = dict(weight=1.0, num_clusters=8, kmeans_iterations=10, feature='block4',
                                temperature=head['temperature'],
                                projector_hidden=head['projector_hidden'],
                                projection_dim=head['projection_dim'])
  if size == 'tiny':
    config.objectives.odin.num_clusters = 4
  return config
