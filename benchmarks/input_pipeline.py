"""Input-pipeline throughput: the VIVI + objects tf.data pipeline against a PyTorch-style peer,
and against the frames/s the train step consumes.

  python -m benchmarks.input_pipeline [--frame_size 256 --image_size 224 --batch_videos 2]
                                     [--rounds 5 --batches_per_round 6 --workers 2]

Records: the synthetic world (64 videos of 256-px frames at 1 Hz, 4 shards; built once under
--cache_dir). Both sides read the same shards and produce the same batch: per video K=4
consecutive shots with >= 8 frames, 8 consecutive frames from each, every frame decoded,
Inception-cropped to `--image_size`, flipped and colour-distorted, with its top-5 detector
boxes (score >= 0.05) moved through the crop and flip (`configs/vivi_obj.py`'s input).

* tf.data: `vivi.sources.make_input` (the training pipeline itself: vivi/input/pipeline.py
  with `ViviSampler`), its threads on all cores (AUTOTUNE).
* PyTorch-style: `benchmarks.torch_input.make_loader`, a DataLoader with `--workers` worker
  processes (default: one per core), PIL decoding and torchvision-style PIL transforms.

The two alternate in rounds (the starting side rotated); before each side's round the
other side is left `--settle` seconds to fill its prefetch buffers and go idle, and the
round first takes out `--drain` batches untimed (what sat in the buffers), then times
`--batches_per_round` batches. Frames/s are medians over rounds; the ratio is the median of
the per-round ratios.

Then the train step of `configs/vivi_obj.py` (ResNet-50 v2, exemplar + shot InfoNCE +
L_object, the paper's model at `--image_size`) on a real batch of `--batch_videos` videos
from the pipeline: its frames/s, and the pipeline's frames/s over it (target >= 3x: input
never bounds training).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from benchmarks import timing


def build_records(cache_dir: str, frame_size: int) -> str:
  from vivi.input import records, synthetic
  folder = os.path.join(os.path.expanduser(cache_dir), f'bench-input-s{frame_size}')
  if not os.path.exists(os.path.join(folder, records.MANIFEST)):
    print(f'building the benchmark records in {folder} ...', flush=True)
    synthetic.build_dataset(folder, num_videos=64, image_size=frame_size, seed=0,
                            videos_per_shard=16, num_workers=os.cpu_count() or 1)
  return folder


def config_for(folder: str, args):
  from configs import vivi_obj
  config = vivi_obj.get_config('')
  config.data.dataset = folder
  config.data.shuffle_buffer = 64
  config.input.image_size = args.image_size
  config.input.batch_videos = args.batch_videos
  return config


def time_pipelines(sides: dict, args) -> dict[str, list[float]]:
  """Seconds per timed block of batches for each side, alternating (see the docstring)."""
  names = list(sides)
  for name in names:  # Warm-up: start workers and threads, fill buffers, trace functions.
    for _ in range(args.drain + 2):
      next(sides[name])
  times = {name: [] for name in names}
  for r in range(args.rounds):
    for i in range(len(names)):
      name = names[(r + i) % len(names)]
      time.sleep(args.settle)
      for _ in range(args.drain):
        next(sides[name])
      start = time.perf_counter()
      for _ in range(args.batches_per_round):
        next(sides[name])
      times[name].append(time.perf_counter() - start)
    print(f'  round {r + 1}/{args.rounds}: ' + ', '.join(
        f'{n} {times[n][-1]:.2f} s' for n in names), flush=True)
  return times


def time_train_step(config, batch: dict, iters: int) -> list[float]:
  import jax

  from vivi import optim, parallel, train
  model, tx = train.build_model(config), optim.make_optimizer(config)
  mesh = parallel.make_mesh()
  state = parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(0)),
                             mesh)
  batch = parallel.global_batch(batch, mesh)
  step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
  compiled = step.lower(state, batch, jax.random.key(1)).compile()
  times = []
  for i in range(iters + 1):  # The first call is a warm-up.
    start = time.perf_counter()
    state, metrics = compiled(state, batch, jax.random.key(1))
    jax.block_until_ready((state, metrics))
    if i:
      times.append(time.perf_counter() - start)
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--frame_size', type=int, default=256, help='stored frames (px)')
  parser.add_argument('--image_size', type=int, default=224, help='augmented frames (px)')
  parser.add_argument('--batch_videos', type=int, default=2)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--batches_per_round', type=int, default=6)
  parser.add_argument('--drain', type=int, default=4)
  parser.add_argument('--settle', type=float, default=3.0)
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
  parser.add_argument('--step_iters', type=int, default=3)
  parser.add_argument('--cache_dir', default='~/.cache/vivi')
  args = parser.parse_args()

  folder = build_records(args.cache_dir, args.frame_size)  # Before JAX: it forks workers.
  from benchmarks import torch_input
  from vivi.input import records, sources
  print(timing.machine())
  config = config_for(folder, args)
  i = config.input
  peer_cfg = torch_input.PeerConfig(
      num_shots=i.num_shots, frames_per_shot=i.frames_per_shot, image_size=i.image_size,
      crop_area=tuple(i.crop_area), max_boxes=i.max_boxes, min_score=i.min_box_score)
  frames_per_batch = args.batch_videos * i.num_shots * i.frames_per_shot
  files = records.Manifest.read(folder).shard_paths(folder)
  tf_pipeline = iter(sources.make_input(config))
  loader = torch_input.make_loader(files, peer_cfg, batch_videos=args.batch_videos,
                                   num_workers=args.workers)
  sides = {'tf.data (ours)': tf_pipeline, 'PyTorch-style DataLoader': iter(loader)}
  print(f'{len(files)} shards of {args.frame_size}-px frames; batches of {args.batch_videos} '
        f'videos = {frames_per_batch} frames at {args.image_size} px; {args.workers} '
        f'DataLoader workers; {args.rounds} rounds x {args.batches_per_round} batches',
        flush=True)
  times = time_pipelines(sides, args)
  del sides, loader  # Stops the DataLoader's worker processes.

  per_block = frames_per_batch * args.batches_per_round
  rate = {n: per_block / statistics.median(t) for n, t in times.items()}
  tf_name, peer_name = list(times)
  per_round = [tp / tt for tt, tp in zip(times[tf_name], times[peer_name])]

  print('timing the train step ...', flush=True)
  batch = next(tf_pipeline)
  step_times = time_train_step(config, batch, args.step_iters)
  step_rate = frames_per_batch / statistics.median(step_times)

  print(f'\nInput pipelines, VIVI + objects, {frames_per_batch} frames per batch at '
        f'{args.image_size} px:\n')
  print(timing.table(['side', 'frames/s'], [[n, f'{r:.1f}'] for n, r in rate.items()]
                     + [[f'train step (ResNet-50 v2, {frames_per_batch} frames)',
                         f'{step_rate:.1f}']]))
  consumption = rate[tf_name] / step_rate
  rows = [['tf.data / PyTorch-style', timing.format_ratio(
      (statistics.median(per_round), min(per_round), max(per_round))), '>= 2x',
           'yes' if statistics.median(per_round) >= 2 else 'no'],
          ['tf.data / train step consumption', f'{consumption:.1f}x', '>= 3x',
           'yes' if consumption >= 3 else 'no']]
  print('\nRatios:\n')
  print(timing.table(['comparison', 'ratio', 'target', 'met'], rows))
  sys.stdout.flush()


if __name__ == '__main__':
  main()
