r"""Object discovery, paired: which of two trained encoders finds the world's objects better.

  python -m projects.synthetic_world.discovery_pairs --world_seed=1 --runs=odin,detcon,moclr

The learning benchmark's `object_discovery` column (ABO) carries a binomial standard error,
an upper bound that ignores that every encoder is scored on the same objects. This compares
runs of `python -m projects.synthetic_world.learning` (their final checkpoints under
<workdir_root>/seed<world_seed>/<run>) object by object: each object's best IoU under each
encoder (configs/common.py OBJECT_DISCOVERY on the probe's held-out frames, probe seed 1),
and for every pair the mean difference with its paired standard error (the spread of the
per-object differences over sqrt(n)). 'init' is the tiny encoder at random initialisation.
Objects of one frame share its segmentation, so the error is still a little optimistic.
"""

from __future__ import annotations

import argparse
import itertools
import os

import numpy as np

from configs import common
from vivi import encoder as encoders
from vivi import parallel
from vivi.evaluate import discovery, linear_probe, retrieval


def best_ious(encoder, frames, truth, mesh) -> np.ndarray:
  s = common.OBJECT_DISCOVERY
  fn = discovery.segmenter(encoder.module, mesh, feature=s['feature'], upsample=s['upsample'],
                           num_clusters=s['num_clusters'], num_iterations=s['num_iterations'])
  cells = linear_probe.extract_features(fn, encoder.variables, frames, mesh)
  segments = discovery.upsample_nearest(cells, frames.shape[1])
  return np.concatenate([discovery.best_overlaps(seg, t['masks'])
                         for seg, t in zip(segments, truth)])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--world_seed', type=int, default=0)
  parser.add_argument('--runs', default='odin,detcon,moclr')
  parser.add_argument('--probe_seed', type=int, default=1)
  parser.add_argument('--workdir_root', default='/tmp/vivi_learning')
  args = parser.parse_args()
  mesh = parallel.make_mesh()
  s = common.OBJECT_DISCOVERY
  frames, _, _, truth = retrieval.held_out_frames(
      s['num_videos'], s['frames_per_video'], image_size=common.TINY_IMAGE_SIZE,
      seed=args.probe_seed, return_truth=True)
  model = common.base('tiny').model   # Every tiny run's encoder (configs/common.py).
  ious = {'init': best_ious(encoders.random_encoder(model, common.TINY_IMAGE_SIZE, 0, mesh),
                            frames, truth, mesh)}
  for run in args.runs.split(','):
    workdir = os.path.join(args.workdir_root, f'seed{args.world_seed}', run)
    ious[run] = best_ious(encoders.restore_encoder(workdir, mesh=mesh), frames, truth, mesh)
  n = len(ious['init'])
  print(f'World seed {args.world_seed}: {n} held-out objects (probe seed {args.probe_seed})\n')
  print('| encoder | ABO | object recovery |\n| --- | --- | --- |')
  for name, v in ious.items():
    print(f'| {name} | {v.mean():.3f} | {np.mean(v > 0.5):.3f} |')
  print('\n| a vs b | ABO difference (paired) |\n| --- | --- |')
  for a, b in itertools.combinations(ious, 2):
    d = ious[a] - ious[b]
    print(f'| {a} vs {b} | {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(n):.3f} |')


if __name__ == '__main__':
  main()
