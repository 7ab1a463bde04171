"""The size of the input state a training run saves with every checkpoint, and what it grows
with: the shuffle buffer, the number of hosts, the batch.

  python -m benchmarks.input_state [--buffers 1,100,400 --hosts 1,2,4 --batches 3]
                                   [--json OUT.json]

For each (shuffle buffer, host count) it builds the training pipeline of
`configs/vivi_obj.py:tiny` on the synthetic world (`vivi.input.sources.make_input`'s
pipeline for process 0 of `hosts`), takes `--batches` batches, saves the input state with
the function the training loop uses (`vivi.checkpoint.save_input`) and prints the bytes it
wrote, beside the dataset's mean record size and the batch's size (the two things a
buffer of elements would hold). The table is what the input state costs per host per save;
a pod job multiplies it by its hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile


def _bytes_under(folder: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def measure(buffers: list[int], hosts: list[int], batches: int) -> list[dict]:
  import tensorflow as tf

  from configs import vivi_obj
  from vivi import checkpoint
  from vivi.input import pipeline, sources
  tf.config.set_visible_devices([], 'GPU')
  config = vivi_obj.get_config('tiny')
  source = sources.video_source(config)
  shards = source.manifest.shard_paths(source.folder)
  record_bytes = sum(os.path.getsize(s) for s in shards) / source.manifest.counts['videos']
  rows = []
  for count in hosts:
    for buffer in buffers:
      p = pipeline.make_pipeline(shards, source.sampler, batch_size=config.input.batch_videos,
                                 seed=config.seed, process_index=0, process_count=count,
                                 shuffle_buffer=buffer, fps=source.manifest.fps)
      it = iter(p)
      batch = [next(it) for _ in range(batches)][-1]
      with tempfile.TemporaryDirectory() as workdir:
        with checkpoint.manager(workdir, config) as mngr:
          checkpoint.save_input(mngr, workdir, batches, {'videos': p}, keep=3)
        state = _bytes_under(os.path.join(workdir, checkpoint.INPUT_DIR))
      rows.append({'hosts': count, 'shuffle_buffer': buffer, 'state_bytes': state,
                   'record_bytes': round(record_bytes),
                   'batch_bytes': sum(v.nbytes for v in batch.values()),
                   'batch_videos': config.input.batch_videos})
      print(f'{count:>5} {buffer:>14} {state:>12,} {record_bytes / 2**10:>14.1f} '
            f'{rows[-1]["batch_bytes"] / 2**20:>11.2f}', flush=True)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--buffers', default='1,100,400')
  parser.add_argument('--hosts', default='1,2,4')
  parser.add_argument('--batches', type=int, default=3)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  print(f'{"hosts":>5} {"shuffle_buffer":>14} {"state (B)":>12} {"record (KiB)":>14} '
        f'{"batch (MiB)":>11}')
  rows = measure([int(b) for b in args.buffers.split(',')],
                 [int(h) for h in args.hosts.split(',')], args.batches)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
