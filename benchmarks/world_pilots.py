r"""Pilot worlds: the tiny synthetic world with one thing changed, to test why `class` is not
learned (docs/results.md, section 4) before any change to the shared world itself.

  python benchmarks/world_pilots.py --variant=flat_backgrounds --folder=/tmp/pilot/flat
  python main.py --config=configs/vivi.py:tiny --workdir=/tmp/pilot/vivi_flat \
      --config.data.dataset=/tmp/pilot/flat --config.probe.split=validation \
      --config.probe.evaluators.linear_probe.datasets='("synthetic/class",)' \
      --config.probe.evaluators.object_nn.num_videos=0 \
      --config.probe.evaluators.object_discovery.num_videos=0

Each variant renders the same 400 videos as the tiny world of seed `--seed` (the same random
draws, so the same casts, shots and trajectories) with one change; only the *training*
videos change, the probe's held-out images are rendered by the unchanged world in the
training process. Variants:
  flat_backgrounds  the backgrounds' sinusoids off (gradient only): no background texture
  fast_objects      every object's velocity x4 (0.04-0.32 frame sides per second)
  big_objects       every object's radius x1.6 (at most 0.4 of the frame side): the median
                    object of a training frame (radius ~0.14) at the scale of the `class`
                    probe's prominent object (0.16-0.30, median 0.23), and twice the area of a
                    block-4 cell of the tiny encoder, whose box columns carry an object's
                    class only when it has the pixels (docs/results.md section 4)
"""

from __future__ import annotations

import argparse
import dataclasses

from vivi.input import synthetic as world  # noqa: E402


def _flat_backgrounds() -> None:
  sample = world.sample_background

  def flat(rng, num_waves: int = 6):
    background = sample(rng, num_waves)   # The same draws, then the waves silenced.
    return dataclasses.replace(background, amps=background.amps * 0.0)
  world.sample_background = flat


def _fast_objects() -> None:
  motion = world._Motion  # pylint: disable=protected-access

  def fast(**fields):
    fields['vel'] = fields['vel'] * 4.0
    return motion(**fields)
  world._Motion = fast  # pylint: disable=protected-access


def _big_objects() -> None:
  motion = world._Motion  # pylint: disable=protected-access

  def big(**fields):
    fields['radius'] = min(fields['radius'] * 1.6, 0.4)
    return motion(**fields)
  world._Motion = big  # pylint: disable=protected-access


VARIANTS = {'flat_backgrounds': _flat_backgrounds, 'fast_objects': _fast_objects,
            'big_objects': _big_objects}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--variant', required=True, choices=sorted(VARIANTS))
  parser.add_argument('--folder', required=True)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num_videos', type=int, default=400)
  parser.add_argument('--image_size', type=int, default=64)
  args = parser.parse_args()
  VARIANTS[args.variant]()
  world.build_dataset(args.folder, num_videos=args.num_videos, image_size=args.image_size,
                      seed=args.seed, fps=1.0)


if __name__ == '__main__':
  main()
