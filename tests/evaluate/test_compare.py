"""The comparison of models' VTAB results (vivi/evaluate/compare.py, compare.py) on
vtab_runs.json files written as the vtab evaluator writes them, against hand-computed means
and SciPy's Welch test."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests import helpers
from vivi import errors
from vivi.evaluate import compare, stats, vtab, vtab_tasks

TASKS = (('a', 'natural'), ('b', 'natural'), ('c', 'structured'))


def write_runs(path, accuracies: dict, num_runs: int):
  """A vtab_runs.json as `evaluators.vtab_eval` writes `vtab.run_suite`'s result, with a
  trainer whose test accuracy on task t in run r is accuracies[t][r] (val200: 0.5)."""
  tasks, order = [], [name for name, _ in TASKS]
  for i, (name, group) in enumerate(TASKS):
    split = lambda n, i=i: (np.full((n, 2, 2, 3), i, np.uint8), np.zeros(n, np.int32))
    tasks.append(vtab_tasks.TaskData(name, 3, split(800), split(200), split(20), group=group))
  calls = {}

  def trainer(train, evaluation, setting, seed):
    if len(evaluation[1]) == 200:
      return 0.5
    task = order[int(train[0][0, 0, 0, 0])]
    r = calls[task] = calls.get(task, -1) + 1
    return accuracies[task][r]

  out = vtab.run_suite(None, None, tasks, num_runs=num_runs, train_and_eval=trainer,
                       log=None, selection='per_model')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(out, f, default=float)
  return str(path)


RNG = np.random.default_rng(0)
BASE = {t: list(0.6 + 0.01 * RNG.standard_normal(6)) for t, _ in TASKS}
BETTER = {t: [a + (0.05 if t == 'c' else 0.001 * (-1) ** i) for i, a in enumerate(BASE[t])]
          for t, _ in TASKS}


def test_runs_pool_over_files_and_groups_pair_runs(tmp_path):
  first = write_runs(tmp_path / 'e1/step_5/vtab_runs.json', {t: v[:3] for t, v in BASE.items()},
                     3)
  second = write_runs(tmp_path / 'e2/vtab_runs.json', {t: v[3:] for t, v in BASE.items()}, 3)
  assert compare.find_runs_files(str(tmp_path)) == [first, second]
  tasks = compare.read_runs([first, second])
  assert list(tasks) == ['a', 'b', 'c']
  for task, values in BASE.items():
    assert tasks[task]['runs'] == pytest.approx(values)
  rows = compare.row_runs(tasks, ['a', 'b', 'c'])
  assert list(rows) == ['a', 'b', 'c', 'natural', 'structured', 'mean']
  for r in range(6):
    assert rows['natural'][r] == pytest.approx((BASE['a'][r] + BASE['b'][r]) / 2)
    assert rows['mean'][r] == pytest.approx(sum(BASE[t][r] for t in 'abc') / 3)


def test_comparison_means_intervals_and_welch_against_scipy(tmp_path):
  base = write_runs(tmp_path / 'base.json', BASE, 6)
  better = write_runs(tmp_path / 'better.json', BETTER, 6)
  result = compare.compare({'base': compare.read_runs([base]),
                            'better': compare.read_runs([better])})
  assert result['tasks'] == ['a', 'b', 'c'] and result['reference'] == 'base'
  for task in 'abc':
    for name, values in (('base', BASE), ('better', BETTER)):
      entry = result['rows'][task][name]
      assert entry['mean'] == pytest.approx(np.mean(values[task]))
      assert entry['interval'] == pytest.approx(stats.bootstrap_interval(values[task]))
      assert entry['runs'] == 6
    welch = result['rows'][task]['better']['welch']
    t, p = scipy_stats.ttest_ind(BETTER[task], BASE[task], equal_var=False)
    assert (welch['t'], welch['p']) == pytest.approx((t, p), rel=1e-9)
    assert result['rows'][task]['better']['significant'] == (p < 0.05)
  assert result['rows']['c']['better']['significant']          # +5 points, noise of 1.
  assert not result['rows']['a']['better']['significant']      # +-0.1 points.
  structured = result['rows']['structured']['better']
  assert structured['mean'] == pytest.approx(np.mean(BETTER['c']))
  text = compare.format_comparison(result)
  lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
  assert lines['c'].endswith('†') and '†' not in lines['a']
  assert f'{100 * np.mean(BETTER["c"]):.1f} [' in lines['c']


def test_missing_tasks_are_named_and_uneven_runs_refused(tmp_path):
  base = compare.read_runs([write_runs(tmp_path / 'base.json', BASE, 6)])
  fewer = {t: v for t, v in base.items() if t != 'b'}
  result = compare.compare({'base': base, 'fewer': fewer})
  assert result['tasks'] == ['a', 'c'] and result['missing'] == {'fewer': ['b']}
  assert 'fewer lacks b: not compared.' in compare.format_comparison(result)
  uneven = {t: dict(v, runs=v['runs'][:5] if t == 'a' else v['runs']) for t, v in base.items()}
  with pytest.raises(errors.DatasetError, match="uneven: its tasks have different numbers"):
    compare.compare({'base': base, 'uneven': uneven})
  with pytest.raises(errors.ConfigError, match='two or more models'):
    compare.compare({'base': base})
  one_run = {t: dict(v, runs=v['runs'][:1]) for t, v in base.items()}
  result = compare.compare({'base': base, 'one': one_run})
  assert result['rows']['a']['one']['welch'] is None
  assert not result['rows']['a']['one']['significant']


def test_a_file_that_is_not_vtab_runs_is_named(tmp_path):
  bad = tmp_path / 'vtab_runs.json'
  bad.write_text(json.dumps({'tasks': {'a': {'test_accuracy': 0.5}}}))
  with pytest.raises(errors.DatasetError, match=f'{bad}: not a vtab_runs.json.*KeyError'):
    compare.read_runs([str(bad)])


def test_the_command_prints_the_table_and_writes_json(tmp_path):
  base = write_runs(tmp_path / 'base/eval/vtab_runs.json', BASE, 6)
  better = write_runs(tmp_path / 'better.json', BETTER, 6)
  out = subprocess.run([sys.executable, 'compare.py', f'base={os.path.dirname(base)}',
                        f'better={better}', f'--output={tmp_path / "cmp.json"}'],
                       cwd=helpers.ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert 'base: 6, better: 6' in out.stdout and '†' in out.stdout
  with open(tmp_path / 'cmp.json') as f:
    assert json.load(f)['rows']['c']['better']['significant']
