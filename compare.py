r"""Compares two or more models' VTAB-1k results over repeated runs of the transfer protocol:
per-task and per-group mean test accuracies with bootstrap intervals, and Welch's t-test
against the first model, marking significant differences with † as Romijnders et al.'s
tables do (vivi/evaluate/compare.py).

  python compare.py vivi=/runs/vivi/eval moclr=/runs/moclr/eval
  python compare.py base=a/vtab_runs.json,b/vtab_runs.json ours=c/eval --output=cmp.json

Each model is NAME=PATH[,PATH...]: vtab_runs.json files (the `vtab` evaluator writes one per
evaluation, configs/evaluate.py:vtab) or folders searched for them; a model's runs pool
over its files. The first model is the reference.
"""

import json

from vivi import cli, errors
from vivi.evaluate import compare


def parse_model(text: str) -> tuple[str, list[str]]:
  name, sep, paths = text.partition('=')
  if not sep or not name or not paths:
    raise errors.ConfigError(f'model {text!r}: expected NAME=PATH[,PATH...]')
  return name, [p for p in paths.split(',') if p]


def main() -> None:
  parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('models', nargs='+', metavar='NAME=PATH[,PATH...]',
                      help='a model and its vtab_runs.json files or folders; the first is '
                           'the reference')
  parser.add_argument('--alpha', type=float, default=0.05,
                      help="significance level of Welch's two-sided test (default 0.05)")
  parser.add_argument('--confidence', type=float, default=0.95,
                      help='confidence of the bootstrap intervals (default 0.95)')
  parser.add_argument('--output', help='also write the comparison as JSON to this file')
  args = parser.parse_args()
  models = {}
  for text in args.models:
    name, paths = parse_model(text)
    if name in models:
      raise errors.ConfigError(f'model {name!r} is given twice')
    models[name] = compare.read_runs([f for p in paths for f in compare.find_runs_files(p)])
  result = compare.compare(models, alpha=args.alpha, confidence=args.confidence)
  print(compare.format_comparison(result))
  if args.output:
    try:
      with open(args.output, 'w') as f:
        json.dump(result, f, indent=1)
    except OSError as e:
      raise errors.PathError(f'--output={args.output}: cannot write it ({e.strerror})') from None


if __name__ == '__main__':
  cli.script(main)
