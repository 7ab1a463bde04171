"""Prints a dataset's statistics and optionally renders a contact sheet of a few videos.

  python data/inspect_dataset.py --dataset /tmp/synth --contact_sheet /tmp/synth.png

The report comes from the manifest plus one full pass over the shards, and says how many
videos the sampler of each training config can use (default: every method's paper and tiny
configs; `--config configs/vivi.py:tiny` for one); the contact sheet shows frames with
timestamps, shot ids, shot boundaries and the boxes training keeps (see
`vivi/prep/inspect_dataset.py`).
"""

import os

from vivi import cli, errors
from vivi.prep import inspect_dataset

DEFAULT_CONFIGS = ('vivi.py', 'vivi.py:tiny', 'vivi_obj.py', 'vince.py', 'vito.py',
                   'detcon.py')


def load_config(spec: str):
  """`configs/X.py[:variant]` (or `X.py[:variant]`) -> the config."""
  import importlib
  path, _, variant = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  try:
    module = importlib.import_module('configs.' + name)
  except ModuleNotFoundError as e:
    if e.name != f'configs.{name}':
      raise
    raise errors.ConfigError(f'--config {spec}: no config configs/{name}.py') from None
  try:
    return module.get_config(variant)
  except ValueError as e:   # An unknown variant: the config says which exist.
    raise errors.ConfigError(f'--config {spec}: {e}') from None


def main(argv=None) -> None:
  parser = cli.ArgumentParser(description="Prints a dataset's statistics.")
  parser.add_argument('--dataset', required=True, help='dataset folder (with manifest.json)')
  parser.add_argument('--contact_sheet', help='PNG to write a contact sheet to')
  parser.add_argument('--num_videos', type=int, default=4, help='rows of the contact sheet')
  parser.add_argument('--max_frames', type=int, default=16, help='frames per row at most')
  parser.add_argument('--thumb_height', type=int, default=96, help='thumbnail height, px')
  parser.add_argument('--min_score', type=float, default=inspect_dataset.TRAIN_MIN_SCORE,
                      help='draw boxes with at least this score')
  parser.add_argument('--spread', action='store_true',
                      help='pick videos evenly spaced over the dataset, not the first ones')
  parser.add_argument('--config', action='append',
                      help='a training config (configs/X.py[:variant]) whose sampler to '
                           'check; repeatable (default: the methods\' configs)')
  args = parser.parse_args(argv)
  specs = args.config or [f'configs/{c}' for c in DEFAULT_CONFIGS]
  configs = {s: load_config(s) for s in specs}
  print(inspect_dataset.format_statistics(inspect_dataset.statistics(args.dataset)), end='')
  usable = inspect_dataset.usable_videos(args.dataset, configs)
  print(inspect_dataset.format_usable(usable), end='')
  if args.contact_sheet:
    path = inspect_dataset.contact_sheet(
        args.dataset, args.contact_sheet, num_videos=args.num_videos,
        max_frames=args.max_frames, thumb_height=args.thumb_height, min_score=args.min_score,
        spread=args.spread)
    print(f'contact sheet: {path}')


if __name__ == '__main__':
  cli.script(main)
