"""projects/synthetic_world/learning_pooled.py: the pooled mean's standard error and the
paired differences against NumPy written from their definitions (mean ± SD/sqrt(n), floored
at the binomial error of n independent runs)."""

import json
import os

import numpy as np
import pytest

from projects.synthetic_world import learning, learning_pooled

KEY = learning.COLUMNS['class']
N = 500   # Probe images per run.


def results(trained: float, init: float) -> dict:
  return {'trained': {KEY: trained}, 'init': {KEY: init}, 'counts': {KEY: N}}


def binomial(p: float) -> float:
  return np.sqrt(p * (1 - p) / N)


def test_mean_se_is_sd_over_sqrt_n_when_runs_disagree():
  values = [0.10, 0.30, 0.05, 0.25]
  mean, se = learning_pooled.mean_se(values, [0.01] * 4)
  assert mean == pytest.approx(np.mean(values))
  assert se == pytest.approx(np.std(values, ddof=1) / 2)


def test_mean_se_never_below_the_binomial_floor():
  mean, se = learning_pooled.mean_se([0.2, 0.2, 0.2], [0.03, 0.04, 0.05])
  assert mean == pytest.approx(0.2)
  assert se == pytest.approx(np.sqrt(0.03**2 + 0.04**2 + 0.05**2) / 3)


def test_paired_differences_pair_by_world_and_seed():
  a = {(0, 0): results(0.30, 0.15), (0, 1): results(0.26, 0.16), (1, 0): results(0.20, 0.15),
       (2, 0): results(0.50, 0.15)}                      # (2, 0) has no partner in b.
  b = {(0, 0): results(0.20, 0.15), (0, 1): results(0.22, 0.16), (1, 0): results(0.21, 0.15)}
  n, mean, se = learning_pooled.paired(a, b)
  diffs = np.array([0.30 - 0.20, 0.26 - 0.22, 0.20 - 0.21])
  floor = np.sqrt(sum(binomial(x)**2 + binomial(y)**2
                      for x, y in [(0.30, 0.20), (0.26, 0.22), (0.20, 0.21)])) / 3
  assert n == 3
  assert mean == pytest.approx(diffs.mean())
  assert se == pytest.approx(max(np.std(diffs, ddof=1) / np.sqrt(3), floor))


def test_pairs_table_is_antisymmetric_and_marks_beyond_two_standard_errors():
  runs = {'vivi': {(0, s): results(0.30 + 0.01 * s, 0.15) for s in range(4)},
          'vince': {(0, s): results(0.18 + 0.01 * s, 0.15) for s in range(4)}}
  table = learning_pooled.pairs_table(runs).splitlines()
  assert '+0.120' in table[2] and '**' in table[2]
  assert '-0.120' in table[3] and '**' in table[3]


def test_finished_only_pools_the_finished_runs_and_runs_nothing(tmp_path, monkeypatch, capsys):
  finished = {('vivi', 0, 0): (0.30, 0.15), ('vivi', 1, 0): (0.26, 0.16),
              ('vince', 0, 0): (0.20, 0.15)}           # vince on world 1 has not finished.
  for (key, world, seed), (trained, init) in finished.items():
    folder = learning.workdir(str(tmp_path), world, key, seed)
    os.makedirs(folder)
    with open(os.path.join(folder, 'probe_results.json'), 'w') as f:
      json.dump(results(trained, init), f)

  def no_training(*args, **kwargs):
    raise AssertionError(f'a run was started: {args}')
  monkeypatch.setattr(learning.subprocess, 'run', no_training)
  learning_pooled.main(['--world_seeds=0,1', '--seeds=0', '--runs=vivi,vince',
                        '--finished_only', f'--workdir_root={tmp_path}'])
  rows = {line.split(' | ')[0].strip('| '): line for line in capsys.readouterr().out.splitlines()
          if line.startswith('| VI')}
  assert ' | 2 | +0.125 ± ' in rows['VIVI']            # (0.15 + 0.10) / 2 over its two runs.
  assert ' | 1 | +0.050 ± inf' in rows['VINCE (multi-frame multi-pair)']
