"""Builds a synthetic video dataset (see `vivi/input/synthetic.py`) from the command line.

  python data/make_synthetic.py --out /tmp/synth --num_videos 500 --image_size 64 --seed 0

Restartable: run it again with the same arguments after an interruption and only the
missing shards are rendered.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

try:
  from vivi.input import synthetic
except ImportError:  # Run as a script from a checkout: make the repository importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from vivi.input import synthetic


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='dataset folder to write')
  parser.add_argument('--num_videos', type=int, required=True)
  parser.add_argument('--image_size', type=int, required=True, help='square frame side, px')
  parser.add_argument('--seed', type=int, required=True)
  parser.add_argument('--fps', type=float, default=1.0, help='frames per second of video')
  parser.add_argument('--videos_per_shard', type=int, default=64)
  parser.add_argument('--workers', type=int, default=1, help='processes (one per shard)')
  args = parser.parse_args(argv)
  start = time.time()
  manifest = synthetic.build_dataset(
      args.out, num_videos=args.num_videos, image_size=args.image_size, seed=args.seed,
      fps=args.fps, videos_per_shard=args.videos_per_shard, num_workers=args.workers)
  counts = ', '.join(f'{k}={v}' for k, v in manifest.counts.items())
  print(f'{args.out}: {len(manifest.shards)} shards, {counts} '
        f'({time.time() - start:.1f} s)')


if __name__ == '__main__':
  main()
