r"""Evaluation suites for a trained encoder (`evaluate.py`, vivi/evaluate/suite.py).

  python evaluate.py --config=configs/evaluate.py:synthetic --workdir=/tmp/vivi_obj_tiny
  python evaluate.py --config=configs/evaluate.py:vtab --encoder=EXPORTED_DIR \
      --config.data_dir=~/tensorflow_datasets

Variants:
  synthetic  everything on the synthetic world, at the tiny runs' image size: linear probe and
             kNN on pooled features (block 4 averaged), the probe also on pooled block 3;
             VTAB-1k protocol with steps scaled by 0.01 on three synthetic tasks (3 runs,
             median), pm-k robustness on held-out video frames, the object
             nearest-neighbour fraction (Romijnders et al. Table 2), frame-to-video
             retrieval, and the pictures (training curves, t-SNE, nearest-neighbour grid,
             VITO attention when the run has it).
  quick      the same without VTAB-1k (about 20 of the suite's 27 minutes on 2 cores).
  vtab       the VTAB-1k protocol of VIVI section 4 on the 19 tasks (TFDS, prepared under
             data_dir): full steps, batch 512, 224 px, median of 3 runs.
Results: <workdir>/eval/step_<N>/{results.md, <evaluator>.json, *.png} and TensorBoard
(or under --output).
"""

import ml_collections

from configs import common


def get_config(variant: str = 'synthetic') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 1
  c.image_size = common.TINY_IMAGE_SIZE   # The tiny runs' images (their blocks 3, 4: 4x4).
  c.data_dir = ''        # TFDS data (tfds/<name> datasets, VTAB tasks); never downloaded.
  c.num_train = 2000     # Probe / kNN examples per split (synthetic tasks are rendered).
  c.num_test = 1000
  c.workdir = ''         # Set by evaluate.py: training curves and VITO's attention need it.
  tasks = ('synthetic/class', 'synthetic/count', 'synthetic/position', 'synthetic/orientation',
           'synthetic/size')
  sequences = dict(num_videos=40, frames_per_video=12)   # pm-k: consecutive frames, 4 fps
  held_out = dict(num_videos=40, frames_per_video=8)     # retrieval, t-SNE: across shots
  if variant in ('synthetic', 'quick'):
    c.evaluators = dict(
        # Block 4 averaged over its positions is pre_logits itself: not a row of its own.
        linear_probe=dict(datasets=tasks, features=('pre_logits', 'block3')),
        knn=dict(datasets=tasks, features=('pre_logits',), k=20, temperature=0.07),
        vtab=dict(tasks=('synthetic/class', 'synthetic/count', 'synthetic/orientation'),
                  step_scale=0.01, num_runs=3, batch_size=64),
        pm_k=dict(ks=(1, 4), **sequences),
        object_nn=dict(num_videos=40, frames_per_video=8),
        retrieval=dict(ks=(1, 5), **held_out),
        pictures=dict(num_queries=6, k=5, **held_out),
    )
    if variant == 'quick':
      del c.evaluators['vtab']
  elif variant == 'vtab':
    c.image_size = 224
    c.evaluators = dict(vtab=dict(tasks=('vtab',), step_scale=1.0, num_runs=3,
                                  batch_size=512))
  else:
    raise ValueError(f"unknown variant {variant!r}: 'synthetic', 'quick' or 'vtab'")
  return c
