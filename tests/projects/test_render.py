"""projects/synthetic_world/render.py: the committed tables are what the kept records render,
`--check` names a table that is not, and rendering reads records only; the pooled statistics
on a tiny record set, against values worked out by hand."""

import json
import os
import shutil

import pytest

from projects.synthetic_world import learning, learning_pooled, render

KEY = learning.COLUMNS['class']


def test_committed_tables_are_what_the_records_render(capsys):
  assert render.main(['--check']) == 0, capsys.readouterr().out


def test_check_names_a_table_that_differs_and_rendering_trains_nothing(tmp_path, monkeypatch,
                                                                       capsys):
  def no_training(*args, **kwargs):
    raise AssertionError(f'a run was started: {args}')
  monkeypatch.setattr(learning.subprocess, 'run', no_training)
  results, readme = tmp_path / 'results.md', tmp_path / 'README.md'
  shutil.copy(render.RESULTS, results)
  shutil.copy(render.README, readme)
  text = results.read_text()
  begin, end = render.markers('masks')
  i, j = text.index(begin), text.index(end)
  results.write_text(text[:i] + text[i:j].replace('| 9 |', '| 8 |') + text[j:])
  paths = [f'--results={results}', f'--readme={readme}']
  assert render.main(['--check', *paths]) == 1
  assert 'differ from their render: masks\n' in capsys.readouterr().out
  assert results.read_text() != text   # --check wrote nothing.
  assert render.main(paths) == 0 and results.read_text() == text
  readme.write_text(readme.read_text().replace(render.README_MARKERS[1], ''))
  assert render.main(['--check', *paths]) == 1
  assert 'results table (markers missing)' in capsys.readouterr().out


def _record(folder, trained: float, init: float, n: int = 100) -> None:
  os.makedirs(folder)
  with open(os.path.join(folder, learning.RESULTS), 'w') as f:
    json.dump({'trained': {KEY: trained}, 'init': {KEY: init}, 'counts': {KEY: n}}, f)


def test_pooled_gains_and_pairs_worked_out_by_hand(tmp_path):
  """Two worlds, one training seed, probes of 100 images, so the binomial errors are round:
  sqrt(0.5 * 0.5 / 100) = 0.05, sqrt(0.2 * 0.8 / 100) = 0.04, sqrt(0.1 * 0.9 / 100) = 0.03."""
  root = str(tmp_path)
  _record(learning.workdir(root, 0, 'vivi', 0), trained=0.5, init=0.2)
  _record(learning.workdir(root, 1, 'vivi', 0), trained=0.2, init=0.1)
  _record(learning.workdir(root, 0, 'vince', 0), trained=0.2, init=0.2)
  _record(learning.workdir(root, 1, 'vince', 0), trained=0.1, init=0.1)
  _record(learning.workdir(root, 2, 'vince', 0), trained=0.9, init=0.1)   # No vivi partner.
  runs = render.pooled(('vivi', 'vince', 'odin'), (0, 1, 2), (0,), root)
  assert list(runs) == ['vivi', 'vince'] and len(runs['vince']) == 3   # odin: no records.

  # vivi's gains 0.3 and 0.1: mean 0.2, SD sqrt(2 * 0.1^2) = 0.1414, SD / sqrt(2) = 0.1; the
  # binomial floor sqrt(0.05^2 + 0.04^2 + 0.04^2 + 0.03^2) / 2 = sqrt(0.0066) / 2 = 0.0406.
  g = learning_pooled.gain_summary(runs['vivi'])
  assert (g['runs'], g['clear'], g['mean_clears']) == (2, 1, False)   # 0.1 < 3 x 0.05.
  assert (g['mean'], g['se'], g['low'], g['high']) == pytest.approx((0.2, 0.1, 0.1, 0.3))

  # vivi - vince, paired on worlds 0 and 1: differences 0.3 and 0.1 again, so mean 0.2 and
  # SD / sqrt(2) = 0.1; the floor sqrt(0.05^2 + 0.04^2 + 0.04^2 + 0.03^2) / 2 is below it.
  assert learning_pooled.paired(runs['vivi'], runs['vince']) == pytest.approx((2, 0.2, 0.1))
  # Two equal differences: SD 0, so the floor is the error.
  same = {(0, 0): runs['vivi'][0, 0], (1, 0): runs['vivi'][0, 0]}
  base = {(0, 0): runs['vince'][0, 0], (1, 0): runs['vince'][0, 0]}
  floor = (2 * (0.05 ** 2 + 0.04 ** 2)) ** 0.5 / 2   # 0.0453
  assert learning_pooled.paired(same, base) == pytest.approx((2, 0.3, floor))
  table = learning_pooled.claims_table({'vivi': same, 'vivi_obj': base})
  assert '| Ours beats VIVI | Romijnders et al. Table 1 | 2 | -0.300 ± 0.045 | does not hold |' \
      in table
