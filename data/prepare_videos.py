"""Turns a folder of videos into training records (the format of vivi/input/records.py).

  python data/prepare_videos.py --input ~/videos --output ~/data/my_videos --preset vivi
  python data/prepare_videos.py --input ~/videos --output ~/data/r2v2 --preset r2v2 --workers 8
  python data/prepare_videos.py --input gs://b/videos --output gs://b/data --runner beam \\
      --beam_options='--runner=DataflowRunner --project=P --region=R --setup_file=./setup.py'

Presets (vivi/prep/prepare.py PRESETS): vivi (1 Hz), r2v2 (VINCE: 4 frames 5 s apart from
a random point, static videos dropped), vito (25 fps clips, videos under 10 s dropped).
Every field of `PrepConfig` is also a flag (--fps, --shot_threshold, --detector, ...) that
overrides the preset. Videos are found recursively; a video's folder name is its query for
VideoNet-style curation (--classifier_model/--classifier_labels), or pass --queries_csv.

Interrupted? Run the same command again: finished shards are kept, the rest is prepared.
Then look at what you made: python data/inspect_dataset.py --dataset OUTPUT --contact_sheet s.png
"""

import argparse
import dataclasses
import json
import os
import time

from vivi import cli
from vivi.prep import prepare, runner


def _parser() -> argparse.ArgumentParser:
  p = cli.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--input', required=True, help='folder of video files (searched recursively)')
  p.add_argument('--output', required=True, help='dataset folder to write')
  p.add_argument('--preset', default='', choices=['', *prepare.PRESETS])
  p.add_argument('--queries_csv', default='', help='rows "video_id,query" for curation')
  p.add_argument('--videos_per_shard', type=int, default=64)
  p.add_argument('--runner', default='local', choices=['local', 'beam'])
  p.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='local processes')
  p.add_argument('--beam_options', default='', help='Beam pipeline options, one string')
  p.add_argument('--max_shards', type=int, default=0, help='local: stop after N shards')
  for field in dataclasses.fields(prepare.PrepConfig):
    kind = type(field.default)
    if kind is tuple:
      p.add_argument(f'--{field.name}', type=lambda s: tuple(s.split(',')), default=None,
                     help=f'comma-separated (default {",".join(field.default)})')
    else:
      p.add_argument(f'--{field.name}', type=kind, default=None,
                     help=f'PrepConfig.{field.name} (default {field.default!r})')
  return p


def main(argv=None) -> None:
  args = _parser().parse_args(argv)
  overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(prepare.PrepConfig)
               if getattr(args, f.name) is not None}
  cfg = prepare.PrepConfig.from_preset(args.preset, **overrides)
  if '://' not in args.output:
    cli.writable_folder(args.output, '--output')
  items = runner.find_videos(args.input, args.queries_csv)
  plan = runner.make_plan(items, args.output, cfg, args.videos_per_shard)
  print(f'{len(items)} videos in {len(plan.shards)} shards, {len(plan.pending())} to do; '
        f'config: {json.dumps(cfg.as_dict())}', flush=True)
  start = time.perf_counter()
  if args.runner == 'beam':
    from vivi.prep import beam_pipeline
    manifest = beam_pipeline.run_beam(plan, args.beam_options.split())
  else:
    manifest = runner.run_local(plan, workers=args.workers, max_shards=args.max_shards)
  if manifest is None:
    print(f'stopped after {args.max_shards} shards; run again to finish')
    return
  wall = time.perf_counter() - start
  print(f'{args.output}: ' + ', '.join(f'{k}={v}' for k, v in manifest.counts.items()) +
        f', {len(manifest.skipped)} skipped, {wall:.1f} s')
  for s in manifest.skipped:
    print(f'  skipped {s["video"]}: {s["reason"]}')
  figures = runner.speed(plan, wall)
  print(f'decoding {figures["decode_fps_per_core"]:.0f} frames/s per core, whole preparation '
        f'{figures["prepare_fps_per_core"]:.0f} frames/s per core (source frames)')


if __name__ == '__main__':
  cli.script(main)
