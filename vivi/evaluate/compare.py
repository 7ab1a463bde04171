"""Compares models' VTAB-1k results over repeated runs of the transfer protocol, as the
papers' tables do.

Romijnders et al. (section 4) report the mean over independent runs of the transfer
protocol with "bootstrapped 95% confidence intervals" and mark with † the differences that
are significant "at the p = 0.05 level on a Welch's two sided t-test based on 12
independent runs"; VIVI (Table 1) reports per-group means and the mean over the 19 tasks.
This module takes each model's `vtab_runs.json` files (the `vtab` evaluator writes one per
evaluation: every task's test accuracy of every run, vtab.py) and computes

  * per task: the mean test accuracy over the model's runs and its bootstrap interval;
  * per group (natural, specialized, structured) and over all tasks ('mean'): run r's score
    is the mean over the group's tasks of their run-r accuracies (runs are aligned: run r of
    one evaluation is one pass of the protocol over every task, sharing its per-model
    selection), and the mean and interval are over those per-run scores;
  * against the first model (the reference): Welch's two-sided t-test of each row, † where
    p < `alpha`.

Runs pool over a model's files in the order given: three evaluations of three runs each
are nine runs. Only the tasks every model has are compared (the others are named).

  python compare.py vivi=/runs/vivi/eval moclr=/runs/moclr/eval/step_1000/vtab_runs.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from vivi import errors
from vivi.evaluate import stats, vtab

RUNS_FILE = 'vtab_runs.json'


def find_runs_files(path: str) -> list[str]:
  """`path` itself if it is a file, else every vtab_runs.json beneath the folder (sorted);
  MissingPathError if there is none."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise errors.MissingPathError(f'{path}: no such file or folder (give a {RUNS_FILE} or a '
                                  f'folder holding them, e.g. an evaluation output folder)')
  found = sorted(os.path.join(root, RUNS_FILE) for root, _, files in os.walk(path)
                 if RUNS_FILE in files)
  if not found:
    raise errors.MissingPathError(f'{path}: no {RUNS_FILE} in this folder or beneath it (the '
                                  f'vtab evaluator writes one per evaluation)')
  return found


def read_runs(paths: Sequence[str]) -> dict[str, dict]:
  """{task: {'group', 'runs': [test accuracy of every run, over the files in order]}} of a
  model's vtab_runs.json files. DatasetError naming the file for one that is not a
  vtab_runs.json, or a task whose group differs between files."""
  tasks: dict[str, dict] = {}
  for path in paths:
    try:
      with open(path) as f:
        record = json.load(f)
      entries = record['tasks']
      parsed = {name: (str(entry.get('group', '')),
                       [float(a) for a in entry['test_accuracies']])
                for name, entry in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
      raise errors.DatasetError(
          f'{path}: not a {RUNS_FILE} (expected {{"tasks": {{name: {{"group", '
          f'"test_accuracies": [...]}}}}}}, as the vtab evaluator writes it): '
          f'{type(e).__name__}: {e}') from None
    for name, (group, runs) in parsed.items():
      task = tasks.setdefault(name, {'group': group, 'runs': []})
      if task['group'] != group:
        raise errors.DatasetError(f'{path}: task {name!r} is in group {group!r} here and '
                                  f'{task["group"]!r} in an earlier file of the same model')
      task['runs'].extend(runs)
  return tasks


def row_runs(tasks: Mapping[str, dict], names: Sequence[str], model: str = 'model'
             ) -> dict[str, np.ndarray]:
  """Per row (every task of `names`, then each group present and 'mean'), one model's
  per-run scores: a task's accuracies, a group's per-run mean over its tasks. DatasetError
  if the tasks have different numbers of runs (group scores pair run r across tasks)."""
  rows = {name: np.asarray(tasks[name]['runs'], np.float64) for name in names}
  counts = {name: len(runs) for name, runs in rows.items()}
  if len(set(counts.values())) > 1:
    raise errors.DatasetError(
        f'{model}: its tasks have different numbers of runs ({counts}); group means pair '
        f'run r of every task, so give every task the same runs')
  per_run = [vtab.group_means({n: {'group': tasks[n]['group'], 'test_accuracy': rows[n][r]}
                               for n in names}) for r in range(len(rows[names[0]]))]
  for row in per_run[0] if per_run else ():
    rows[row] = np.array([scores[row] for scores in per_run])
  return rows


def compare(models: Mapping[str, Mapping[str, dict]], alpha: float = 0.05,
            confidence: float = 0.95, num_resamples: int = 10_000, seed: int = 0) -> dict:
  """The comparison of `models` ({name: read_runs result}, the first the reference).

  Returns {'models': names, 'reference', 'tasks': the compared tasks, 'missing': {model:
  tasks it lacks that another has}, 'rows': {row: {model: {'mean', 'interval', 'runs',
  and for the other models 'welch' (stats.welch_t_test vs the reference, or None with
  fewer than 2 runs on a side) and 'significant'}}}}."""
  if len(models) < 2:
    raise errors.ConfigError(f'compare needs two or more models; got {len(models)}')
  for what, value in (('alpha', alpha), ('confidence', confidence)):
    if not 0 < value < 1:
      raise errors.ConfigError(f'{what}={value}: must be in (0, 1)')
  names = list(models)
  every = sorted(set().union(*(set(m) for m in models.values())))
  common = [t for t in every if all(t in m for m in models.values())]
  if not common:
    raise errors.DatasetError(f'the models have no task in common ({", ".join(names)})')
  missing = {n: [t for t in every if t not in m] for n, m in models.items()}
  per_model = {n: row_runs(m, common, n) for n, m in models.items()}
  reference = names[0]
  rows = {}
  for row in per_model[reference]:
    rows[row] = {}
    for n in names:
      runs = per_model[n][row]
      entry = {'mean': float(runs.mean()), 'runs': int(len(runs)),
               'interval': stats.bootstrap_interval(runs, confidence, num_resamples, seed)}
      if n != reference:
        ref = per_model[reference][row]
        welch = stats.welch_t_test(runs, ref) if min(len(runs), len(ref)) >= 2 else None
        entry.update(welch=welch, significant=bool(welch and welch['p'] < alpha))
      rows[row][n] = entry
  return {'models': names, 'reference': reference, 'tasks': common,
          'missing': {n: t for n, t in missing.items() if t}, 'alpha': alpha,
          'confidence': confidence, 'rows': rows}


def format_comparison(result: dict) -> str:
  """The comparison as a plain-text table: one row per task, group and 'mean', one column
  per model, 'mean [low, high]' in percent, † where it differs from the reference at p <
  alpha (Welch's two-sided test)."""
  names, rows = result['models'], result['rows']
  width = max([12] + [len(r) + 2 for r in rows])
  cell = 24
  lines = [f'{"":<{width}}' + ''.join(f'{n[:cell - 2]:>{cell}}' for n in names)]
  for i, (row, entries) in enumerate(rows.items()):
    if row not in result['tasks'] and (i == 0 or list(rows)[i - 1] in result['tasks']):
      lines.append('')   # The groups and the mean below the tasks.
    text = f'{row:<{width}}'
    for n in names:
      e = entries[n]
      low, high = e['interval']
      mark = '†' if e.get('significant') else ' '
      value = f'{100 * e["mean"]:.1f} [{100 * low:.1f}, {100 * high:.1f}]{mark}'
      text += f'{value:>{cell}}'
    lines.append(text)
  runs = ', '.join(f'{n}: {rows["mean"][n]["runs"]}' for n in names)
  lines += ['', f'Test accuracy (%), mean over runs ({runs}) with its bootstrap '
            f'{100 * result["confidence"]:.0f}% interval; † differs from '
            f'{result["reference"]} at p < {result["alpha"]} (Welch\'s two-sided t-test).']
  for n, tasks in result['missing'].items():
    lines.append(f'{n} lacks {", ".join(tasks)}: not compared.')
  return '\n'.join(lines)
