r"""How often VINCE's anchor-positive pairs cross a shot boundary, on prepared records.

  python -m projects.synthetic_world.vince_pairs \
      --folder=~/.cache/vivi/videos-v4-n400-s64-seed0-fps1
  python -m projects.synthetic_world.vince_pairs --folder=... --gap_seconds=1

R2V2 (Gordon et al., section 3.1) picks T frames G seconds apart from a random start and
ignores shots; each anchor and each positive is one of the T frames, drawn with replacement
(Table 3, Multi-Frame Multi-Pair). This replays that rule (`vince_sampler.VinceSampler.
select`: uniform start, nearest stored frame to each time, uniform draws) on the stored
timestamps and shot ids and prints the share of pairs whose two frames lie in different
shots, and the share of pairs that are one frame twice (results.md, "History of the world":
what led to version 4).
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import tensorflow as tf

from vivi.input import frame_times, records


def crossing_shares(folder: str, num_frames: int, gap_seconds: float, draws: int,
                    seed: int) -> dict[str, float]:
  rng = np.random.default_rng(seed)
  crossing = same_frame = pairs = skipped = 0
  for path in sorted(glob.glob(os.path.join(os.path.expanduser(folder), '*.tfrecord'))):
    for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
      video = records.from_serialized(serialized)
      t, shots = video.timestamps, video.shot_ids
      slack = t[-1] - t[0] - (num_frames - 1) * gap_seconds
      if slack < -1e-3:
        skipped += 1
        continue
      for _ in range(draws):
        times = t[0] + rng.uniform() * max(slack, 0.0) + gap_seconds * np.arange(num_frames)
        frames = frame_times.nearest_frame(t, times).numpy()
        anchor, positive = frames[rng.integers(0, num_frames, 2)]
        crossing += shots[anchor] != shots[positive]
        same_frame += anchor == positive
        pairs += 1
  return {'pairs': pairs, 'videos_skipped': skipped, 'crossing': crossing / pairs,
          'same_frame': same_frame / pairs}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--folder', required=True, help='prepared records (data/ or the cache)')
  parser.add_argument('--num_frames', type=int, default=4, help='T')
  parser.add_argument('--gap_seconds', type=float, default=5.0, help='G')
  parser.add_argument('--draws', type=int, default=50, help='pairs per video')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  shares = crossing_shares(args.folder, args.num_frames, args.gap_seconds, args.draws,
                           args.seed)
  print(f'T={args.num_frames} G={args.gap_seconds:g} s: {shares["pairs"]} pairs, '
        f'{shares["crossing"]:.3f} cross a shot boundary, {shares["same_frame"]:.3f} are one '
        f'frame twice ({shares["videos_skipped"]} videos too short)')


if __name__ == '__main__':
  main()
