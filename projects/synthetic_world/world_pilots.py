r"""Pilot worlds: the tiny synthetic world with one thing changed, to test a reading of what a
method learns before any change to the shared world itself.

  F=/tmp/pilot/flat
  python -m projects.synthetic_world.world_pilots --variant=flat_backgrounds --folder=$F
  python main.py --config=configs/vivi.py:tiny --workdir=/tmp/pilot/vivi_flat \
      --config.data.dataset=$F --config.probe.split=validation \
      --config.probe.evaluators.linear_probe.datasets='("synthetic/class",)' \
      --config.probe.evaluators.object_nn.num_videos=0 \
      --config.probe.evaluators.object_discovery.num_videos=0
  python -m projects.synthetic_world.world_pilots --measure --folder=$F  # colour vs video
  python -m projects.synthetic_world.world_pilots --contrast --variant=no_hue --seed=0
  python -m projects.synthetic_world.world_pilots --variant=flat_backgrounds --evaluate \
      --workdir=/tmp/pilot/vivi_flat --output=/tmp/pilot/vivi_flat/eval_flat_probe \
      --config=configs/evaluate.py:probe --config.split=validation   # probe on its images

Each variant is a `synthetic.RenderOptions`, the world's public hook (vivi/input/synthetic.py):
it renders the same 400 videos as the tiny world of seed `--seed` (the same random draws, so
the same casts, shots and trajectories) with one change. Only the *training* videos change;
the probe's held-out images are rendered by the unchanged world in the training process,
unless `--evaluate` renders them under the variant too. `--contrast` measures how far
objects stand out from the background around them (with the variant, if given), `--measure`
how far colour alone finds a shot's video in a built folder. Variants:
  flat_backgrounds  the backgrounds' sinusoids off (gradient only): no background texture
  fast_objects      every object's velocity x4 (0.04-0.32 frame sides per second)
  big_objects       every object's radius x1.6 (at most 0.4 of the frame side): the median
                    object of a training frame (radius ~0.14) at the scale of the `class`
                    probe's prominent object (0.16-0.30, median 0.23)
  three_hues        every background hue rounded to one of three (red, green, blue;
                    saturation, value and lighting unchanged): backgrounds whose colour
                    identifies a video less
  no_hue            every background gradient grey (saturation 0; values, lighting tints and
                    the per-channel waves unchanged)
The pilots that led to versions 3 and 4 of the world (grey objects; a palette per shot) are
in results.md, "History of the world"; the world now does what they did.
"""

from __future__ import annotations

import argparse
import io
import os
import runpy
import sys

import numpy as np
from PIL import Image

from projects.synthetic_world import ROOT
from vivi.evaluate import baselines
from vivi.input import synthetic as world
from vivi.prep import inspect_dataset

VARIANTS = {'flat_backgrounds': world.RenderOptions(wave_scale=0.0),
            'fast_objects': world.RenderOptions(speed_scale=4.0),
            'big_objects': world.RenderOptions(size_scale=1.6),
            'three_hues': world.RenderOptions(hue_levels=3),
            'no_hue': world.RenderOptions(saturation_scale=0.0)}


def colour_identifies_video(folder: str, num_videos: int = 200) -> tuple[float, float]:
  """How far colour alone tells a video from the others: the middle frame of every shot of
  the first `num_videos` videos, and for each the nearest other shot's frame by colour
  histogram (`baselines.color_histogram`, L1 distance) over all shots but its own. Returns
  (fraction whose neighbour is a shot of the same video, the chance of that)."""
  frames, video = [], []
  for i, v in enumerate(inspect_dataset.read_videos(folder, num_videos)):
    for shot in np.unique(v.shot_ids):
      t = np.flatnonzero(v.shot_ids == shot)
      frames.append(np.array(Image.open(io.BytesIO(v.frames[t[len(t) // 2]])).convert('RGB')))
      video.append(i)
  h, video = baselines.color_histogram(np.stack(frames)), np.array(video)
  distance = np.abs(h[:, None, :] - h[None, :, :]).sum(-1)
  np.fill_diagonal(distance, np.inf)
  same = video[:, None] == video[None, :]
  hit = same[np.arange(len(h)), distance.argmin(1)]
  chance = (same.sum(1) - 1) / (len(h) - 1)
  return float(hit.mean()), float(chance.mean())


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
  """`mask` grown by r pixels (a (2r+1)^2 square)."""
  padded, (h, w) = np.pad(mask, r), mask.shape
  return np.any([padded[dy:dy + h, dx:dx + w] for dy in range(2 * r + 1)
                 for dx in range(2 * r + 1)], axis=0)


def object_contrast(seed: int, num_videos: int = 40, image_size: int = 64
                    ) -> tuple[int, float, float, float]:
  """How far objects stand out from their background in the world of `seed` (as the options
  in force render it): every third frame of the first `num_videos` videos, for every object
  of at least 12 visible pixels the RGB distance (in [0, 1] units) between its mean colour
  and that of the pixels within 2 px of it that no object covers. Returns (objects, median
  distance, fraction of objects closer than 0.1, median luminance difference)."""
  rgb, luminance = [], []
  for i in range(num_videos):
    video, truth = world.render_video_with_truth(i, seed=seed, image_size=image_size)
    for frame, t in zip(video.frames[::3], truth[::3]):
      image = world.decode_jpeg(frame).astype(np.float32) / 255
      free = t['coverage'] <= 0.01
      for mask in t['masks']:
        ring = _dilate(mask, 2) & free
        if mask.sum() < 12 or ring.sum() < 8:
          continue
        d = image[mask].mean(0) - image[ring].mean(0)
        rgb.append(np.linalg.norm(d))
        luminance.append(abs(d @ np.array([0.299, 0.587, 0.114])))
  rgb = np.array(rgb)
  return len(rgb), float(np.median(rgb)), float((rgb < 0.1).mean()), float(np.median(luminance))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False)
  parser.add_argument('--variant', choices=sorted(VARIANTS))
  parser.add_argument('--measure', action='store_true',
                      help='print how far colour identifies a video in --folder, build nothing')
  parser.add_argument('--contrast', action='store_true',
                      help='print how far objects stand out from their background in the '
                      'first 40 videos of the world of --seed at 64 px (with --variant '
                      'applied, if given), build nothing')
  parser.add_argument('--folder')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num_videos', type=int, default=400)
  parser.add_argument('--image_size', type=int, default=64)
  parser.add_argument('--fps', type=float, default=1.0,
                      help='frames per second: 4 for VITO\'s tiny world (configs/vito.py)')
  parser.add_argument('--evaluate', action='store_true',
                      help='run evaluate.py with the remaining flags and --variant applied: '
                      'its synthetic probe images rendered by the pilot world')
  args, rest = parser.parse_known_args()
  if args.evaluate and not args.variant:
    parser.error('--evaluate needs --variant')
  if rest and not args.evaluate:
    parser.error(f'unrecognized arguments: {" ".join(rest)}')
  if not (args.evaluate or args.contrast or args.folder):
    parser.error('--folder is required to build or --measure a world')
  if not (args.evaluate or args.contrast or args.measure or args.variant):
    parser.error('--variant is required to build a world')
  with world.rendering_with(VARIANTS.get(args.variant, world.WORLD)):
    if args.evaluate:
      sys.argv = ['evaluate.py'] + rest
      runpy.run_path(os.path.join(ROOT, 'evaluate.py'), run_name='__main__')
    elif args.contrast:
      n, median, low, luminance = object_contrast(args.seed)
      print(f'world seed {args.seed}, {args.variant or "unchanged"}: {n} objects, RGB '
            f'distance to the background around them median {median:.3f}, below 0.1 for '
            f'{low:.3f} of them; luminance difference median {luminance:.3f}')
    elif args.measure:
      hit, chance = colour_identifies_video(args.folder)
      print(f'{args.folder}: the colour-histogram neighbour of a shot is a shot of the same '
            f'video {hit:.3f} of the time (chance {chance:.3f})')
    else:
      world.build_dataset(args.folder, num_videos=args.num_videos, image_size=args.image_size,
                          seed=args.seed, fps=args.fps)


if __name__ == '__main__':
  main()
