r"""Each method's learning pooled over world seeds and training seeds, as a paper reports it.

  python -m projects.synthetic_world.learning_pooled --world_seeds=0,1 --seeds=0,1
  python -m projects.synthetic_world.learning_pooled --seeds=0,1,2 --runs=vivi_obj
  python -m projects.synthetic_world.learning_pooled --world_seeds=0,1,2 --all_pairs

The runs are `python -m projects.synthetic_world.learning --world_seed=W --seeds=S`'s (the
same workdirs; any that is missing is run first, as that script would, unless
`--finished_only` pools just the finished ones: an interim table while the rest run). For
each row, every run's gain on `class` over *its own* encoder at initialisation (the
training seed sets the initialisation), then over the n = worlds x training seeds runs: the
mean gain ± its standard error (SD / sqrt(n): world, training and probe noise together, as
a paper's "mean ± s.e. over n runs"; never below what the probe's binomial errors alone
give, since two to four runs can agree by chance), the range, and how many runs clear the
bar on their own (a gain of at least +0.05 and beyond three of the probe's binomial
standard errors). Then the papers' orderings (learning.py's CLAIMS on `class`) as *paired*
differences: a and b on the same world with the same training seed share their
initialisation and the probe's images, so the mean of a - b over the n pairs ± SD /
sqrt(n) (with the same floor, conservative here: shared probe images make the two errors
agree) removes what they share; "holds" beyond two standard errors, "does not hold" beyond
two the other way. `--all_pairs` adds the same paired difference for every two rows.
"""

from __future__ import annotations

import argparse
import math

from projects.synthetic_world import learning
from vivi.evaluate import tables

# The bar a method's learning must clear: a gain of at least this, beyond three standard errors.
BAR = 0.05
GAINS_LEGEND = ('Gain over each run\'s own encoder at initialisation; ± the standard error of '
                f'the mean over the runs; * mean gain of at least +{BAR} and beyond three '
                'standard errors; a run clears the bar with a gain of at least '
                f'+{BAR} beyond three of its probe\'s binomial standard errors.')
PAIRS_LEGEND = ('Row minus column on `class`, mean ± s.e. over the pairs; ** beyond two standard '
                'errors.')


def mean_se(values: list[float], binomial: list[float]) -> tuple[float, float]:
  """The mean of n runs' values and its standard error: SD / sqrt(n), but never below what
  the probe's binomial errors of the runs (`binomial`) alone give the mean of n independent
  runs (with 2-4 runs the sample SD can come out near zero by chance)."""
  n = len(values)
  mean = sum(values) / n
  sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.inf
  floor = math.sqrt(sum(b * b for b in binomial)) / n
  return mean, max(sd / math.sqrt(n), floor)


def class_of(results: dict, part: str) -> tuple[float, float]:
  key = learning.COLUMNS['class']
  value = results[part][key]
  return value, tables.standard_error(value, results['counts'][key])


def clears(gain: float, se: float) -> bool:
  """Whether a gain clears the bar: at least BAR and beyond three standard errors."""
  return gain >= BAR and gain > 3 * se


def gain_summary(by_run: dict[tuple[int, int], dict]) -> dict:
  """One row's runs: each run's gain on `class` over its own encoder at initialisation, then
  'runs', the 'mean' gain and its 'se' (`mean_se`), their range ('low', 'high'), how many runs
  clear the bar on their own ('clear') and whether the mean does ('mean_clears')."""
  gains, binomial = [], []
  for results in by_run.values():
    (trained, se_t), (init, se_i) = class_of(results, 'trained'), class_of(results, 'init')
    gains.append(trained - init)
    binomial.append(math.hypot(se_t, se_i))
  mean, se = mean_se(gains, binomial)
  return {'runs': len(gains), 'mean': mean, 'se': se, 'low': min(gains), 'high': max(gains),
          'clear': sum(clears(g, b) for g, b in zip(gains, binomial)),
          'mean_clears': clears(mean, se)}


def gains_table(runs: dict[str, dict[tuple[int, int], dict]]) -> str:
  lines = ['| row | runs | gain on `class`, mean ± s.e. | range | runs clearing the bar |',
           '| --- | --- | --- | --- | --- |']
  for key, by_run in runs.items():
    g = gain_summary(by_run)
    lines.append(f'| {learning.RUNS[key][0].strip()} | {g["runs"]} | {g["mean"]:+.3f} ± '
                 f'{g["se"]:.3f}{" *" * g["mean_clears"]} | {g["low"]:+.3f} to '
                 f'{g["high"]:+.3f} | {g["clear"]} of {g["runs"]} |')
  return '\n'.join(lines)


def paired(a: dict[tuple[int, int], dict], b: dict[tuple[int, int], dict]
           ) -> tuple[int, float, float]:
  """Two rows' runs paired by (world seed, training seed): (pairs, mean of a - b on
  `class`, its standard error)."""
  pairs = sorted(set(a) & set(b))
  both = [(class_of(a[p], 'trained'), class_of(b[p], 'trained')) for p in pairs]
  mean, se = mean_se([va - vb for (va, _), (vb, _) in both],
                     [math.hypot(sa, sb) for (_, sa), (_, sb) in both])
  return len(pairs), mean, se


def claims_table(runs: dict[str, dict[tuple[int, int], dict]]) -> str:
  """learning.CLAIMS on `class`, each a paired difference over the pairs both rows have."""
  lines = ['| claim | paper | pairs | a − b, mean ± s.e. | verdict |',
           '| --- | --- | --- | --- | --- |']
  for claim, paper, a, b, column in learning.CLAIMS:
    if column != 'class' or a not in runs or b not in runs:
      continue
    n, mean, se = paired(runs[a], runs[b])
    if n < 2:
      continue
    verdict = 'holds' if mean > 2 * se else 'does not hold' if mean < -2 * se else 'within noise'
    lines.append(f'| {claim} | {paper} | {n} | {mean:+.3f} ± {se:.3f} | {verdict} |')
  return '\n'.join(lines)


def pairs_table(runs: dict[str, dict[tuple[int, int], dict]]) -> str:
  """Every two rows, paired: the row's `class` minus the column's, ± s.e.; ** beyond two
  standard errors."""
  names = {k: learning.RUNS[k][0].strip() for k in runs}
  lines = ['| row − column | ' + ' | '.join(names.values()) + ' |',
           '| --- |' + ' --- |' * len(runs)]
  for a in runs:
    cells = []
    for b in runs:
      n, mean, se = paired(runs[a], runs[b])
      if a == b or n < 2:
        cells.append('–')
      else:
        cells.append(f'{mean:+.3f} ± {se:.3f}' + (' **' if abs(mean) > 2 * se else ''))
    lines.append(f'| {names[a]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def finished_runs(root: str, keys, worlds, seeds) -> dict[str, dict[tuple[int, int], dict]]:
  """The finished runs under `root` of each row of `keys` (in learning.RUNS's order) on the
  given world and training seeds, by (world seed, training seed); a row without any is left
  out. Reads records only: nothing is trained."""
  runs = {}
  for key in [k for k in learning.RUNS if k in keys]:
    found = {(world, seed): learning.read_results(learning.workdir(root, world, key, seed))
             for world in worlds for seed in seeds}
    found = {cell: results for cell, results in found.items() if results is not None}
    if found:
      runs[key] = found
  return runs


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--world_seeds', default='0,1')
  parser.add_argument('--seeds', default='0,1', help='comma-separated training seeds')
  parser.add_argument('--probe_seed', type=int, default=1)
  parser.add_argument('--runs', default='vivi,vivi_obj,vince,vito,detcon,moclr,odin',
                      help=f'comma-separated, from {",".join(learning.RUNS)}')
  parser.add_argument('--workdir_root', default='/tmp/vivi_learning')
  parser.add_argument('--cache_dir', default='~/.cache/vivi')
  parser.add_argument('--out', help='write the Markdown tables here too')
  parser.add_argument('--all_pairs', action='store_true',
                      help='also print every two rows\' paired difference on `class`')
  parser.add_argument('--finished_only', action='store_true',
                      help='pool only the runs that have finished (their probe_results.json '
                           'exists) instead of running the missing ones; each row and pair '
                           'then counts its own runs')
  args = parser.parse_args(argv)
  worlds = [int(w) for w in args.world_seeds.split(',') if w]
  seeds = [int(s) for s in args.seeds.split(',') if s]
  keys = [r for r in args.runs.split(',') if r]
  unknown = sorted(set(keys) - set(learning.RUNS))
  if unknown:
    parser.error(f'unknown runs {unknown}; valid: {list(learning.RUNS)}')
  if args.finished_only:
    runs = finished_runs(args.workdir_root, keys, worlds, seeds)
  else:
    runs = {key: {(world, seed): learning.run_seed(key, world, seed, args)
                  for world in worlds for seed in seeds}
            for key in learning.RUNS if key in keys}   # The table's order.
  text = (f'## `class` pooled over world seeds {",".join(map(str, worlds))} and training '
          f'seeds {",".join(map(str, seeds))} (probe seed {args.probe_seed})\n\n'
          f'{gains_table(runs)}\n\n{GAINS_LEGEND}\n\n### The papers\' orderings, paired by '
          f'world and training seed\n\n{claims_table(runs)}\n\n{learning.CLAIMS_LEGEND}\n')
  if args.all_pairs:
    text += (f'\n### Every two rows, paired by world and training seed\n\n{pairs_table(runs)}'
             f'\n\n{PAIRS_LEGEND}\n')
  learning.report(text, args.out)


if __name__ == '__main__':
  main()
