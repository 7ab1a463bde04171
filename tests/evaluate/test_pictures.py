"""Tests of vivi/evaluate/pictures.py: the event reader, the figures and the neighbour rule."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vivi.evaluate import pictures, tables


def _write_events(folder, points: list[tuple[int, dict]], hparams=None) -> str:
  from clu import metric_writers
  writer = metric_writers.SummaryWriter(str(folder))
  if hparams:
    writer.write_hparams(hparams)
  for step, scalars in points:
    writer.write_scalars(step, scalars)
  writer.close()
  (path,) = [os.path.join(folder, f) for f in os.listdir(folder) if 'tfevents' in f]
  return path


def _fake_workdir(tmp_path) -> str:
  """A run to step 30 with probes, then a resume from step 20 that rewrites step 30."""
  workdir = tmp_path / 'workdir'
  workdir.mkdir()
  first = _write_events(tmp_path / 'a', [
      (0, {'probe_init/class': 0.2, 'probe_init/count': 0.3}),
      (10, {'loss': 5.0, 'shot_infonce/loss': 4.0, 'exemplar/loss': 1.0, 'learning_rate': 1e-4}),
      (20, {'loss': 2.0, 'shot_infonce/loss': 1.5, 'exemplar/loss': 0.5, 'learning_rate': 1e-3}),
      (20, {'probe/class': 0.4, 'probe/count': 0.5}),
      (30, {'loss': 9.0, 'shot_infonce/loss': 8.0, 'exemplar/loss': 1.0, 'learning_rate': 1e-3}),
  ], hparams={'lr': '0.001'})
  second = _write_events(tmp_path / 'b', [
      (30, {'loss': 0.5, 'shot_infonce/loss': 0.4, 'exemplar/loss': 0.1, 'learning_rate': 5e-4}),
      (40, {'loss': 0.3, 'shot_infonce/loss': 0.2, 'exemplar/loss': 0.1, 'learning_rate': 1e-4}),
      (40, {'probe/class': 0.7, 'probe/count': 0.6}),
  ])
  # Event files are named by creation time; fix the names so the resume is later for sure.
  shutil.copy(first, workdir / 'events.out.tfevents.1000.host.1.0.v2')
  shutil.copy(second, workdir / 'events.out.tfevents.2000.host.2.0.v2')
  return str(workdir)


def _check_png(path, array, min_side=200):
  assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
  assert min(array.shape[:2]) >= min_side and max(array.shape[:2]) <= 4000
  with Image.open(path) as im:
    assert im.size == (array.shape[1], array.shape[0])
  assert array.std() > 10  # Not a blank canvas.


def test_read_scalars_sorts_and_keeps_last_written(tmp_path):
  scalars = pictures.read_scalars(_fake_workdir(tmp_path))
  assert '_hparams_/session_start_info' not in scalars
  steps, values = scalars['loss']
  np.testing.assert_array_equal(steps, [10, 20, 30, 40])
  np.testing.assert_allclose(values, [5.0, 2.0, 0.5, 0.3])  # Step 30 from the resume.
  np.testing.assert_allclose(scalars['probe/class'][1], [0.4, 0.7])
  np.testing.assert_allclose(scalars['probe_init/count'][1], [0.3])
  assert scalars['learning_rate'][0].dtype == np.int64


def test_read_scalars_keeps_last_within_a_file(tmp_path):
  _write_events(tmp_path, [(5, {'loss': 1.0}), (5, {'loss': 2.0}), (1, {'loss': 3.0})])
  steps, values = pictures.read_scalars(str(tmp_path))['loss']
  np.testing.assert_array_equal(steps, [1, 5])
  np.testing.assert_allclose(values, [3.0, 2.0])


def test_training_curves(tmp_path):
  out = tmp_path / 'curves.png'
  array = pictures.training_curves(_fake_workdir(tmp_path), str(out))
  _check_png(out, array)
  assert array.shape[1] > array.shape[0]  # loss, 2 objectives, lr, 2 probes: a wide grid.


# The probe metrics as the training loop names them (evaluator/dataset/feature), with the
# values of a run's probe at initialisation, at steps 10 and 20, of the colour histogram
# (linear probes only: object_nn needs a network) and each metric's number of examples.
LP_CLASS = 'linear_probe/synthetic/class/pre_logits'
LP_ORIENTATION = 'linear_probe/synthetic/orientation/pre_logits'
LP_POSITION = 'linear_probe/synthetic/position/pre_logits'
OBJECT_NN = 'object_nn/same_class_fraction_other_videos'
INIT = {LP_CLASS: 0.15, LP_ORIENTATION: 0.16, LP_POSITION: 0.4, OBJECT_NN: 0.12}
TRAINED = {10: {LP_CLASS: 0.35, LP_ORIENTATION: 0.27, LP_POSITION: 0.58, OBJECT_NN: 0.16},
           20: {LP_CLASS: 0.49, LP_ORIENTATION: 0.28, LP_POSITION: 0.65, OBJECT_NN: 0.24}}
COLOUR_HISTOGRAM = {LP_CLASS: 0.115, LP_ORIENTATION: 0.134, LP_POSITION: 0.187}
COUNTS = {LP_CLASS: 1000, LP_ORIENTATION: 1000, LP_POSITION: 400, OBJECT_NN: 666}


def _probe_workdir(tmp_path, finished: bool = True) -> str:
  """A workdir as vivi/loop.py leaves it: event files with the probe at step 0 and during
  training, probe_init.json, and once `finished` probe_results.json."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  _write_events(workdir, [
      (0, {f'probe_init/{k}': v for k, v in INIT.items()}),
      (5, {'loss': 2.0, 'shot_infonce/loss': 2.0, 'learning_rate': 1e-3}),
      (10, {f'probe/{k}': v for k, v in TRAINED[10].items()}),
      (15, {'loss': 1.0, 'shot_infonce/loss': 1.0, 'learning_rate': 5e-4}),
      (20, {f'probe/{k}': v for k, v in TRAINED[20].items()}),
  ])
  (workdir / tables.INIT_PROBE_FILE).write_text(json.dumps(INIT))
  if finished:
    (workdir / tables.PROBE_RESULTS_FILE).write_text(json.dumps({
        'step': 20, 'split': 'test', 'trained': TRAINED[20], 'init': INIT, 'counts': COUNTS,
        'reference': {'color_histogram': COLOUR_HISTOGRAM}}))
  return str(workdir)


def _probe_axes(fig) -> dict:
  """{metric: its panel} of a training-curves figure (a panel's label is its tag)."""
  by_tag = {ax.get_label(): ax for ax in fig.axes}
  assert {f'probe/{m}' for m in INIT} <= set(by_tag), sorted(by_tag)
  return {m: by_tag[f'probe/{m}'] for m in INIT}


def _reference_line(ax, label: str):
  """The y of the panel's horizontal line whose legend label starts with `label`, or None."""
  lines = [line for line in ax.get_lines() if line.get_label().startswith(label)]
  if not lines:
    return None
  (line,) = lines
  ys = np.asarray(line.get_ydata(), np.float64)
  assert ys.min() == ys.max()  # Horizontal.
  return ys[0]


def _error_bars(ax) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(steps, centres, half-widths) of the panel's vertical error bars, from the drawn
  segments (empty where the panel has none)."""
  containers = [c for c in ax.containers if c.has_yerr]
  if not containers:
    return np.zeros(0), np.zeros(0), np.zeros(0)
  (container,) = containers
  (bars,) = container.lines[2]
  segments = np.array(bars.get_segments())  # [points, 2 ends, (x, y)]
  lo, hi = segments[:, :, 1].min(1), segments[:, :, 1].max(1)
  return segments[:, 0, 0], (lo + hi) / 2, (hi - lo) / 2


def test_training_curves_reference_lines(tmp_path):
  fig = pictures.training_curves_figure(_probe_workdir(tmp_path))
  try:
    for metric, ax in _probe_axes(fig).items():
      assert _reference_line(ax, 'at init') == pytest.approx(INIT[metric])
      hist = _reference_line(ax, 'colour histogram')
      if metric in COLOUR_HISTOGRAM:
        assert hist == pytest.approx(COLOUR_HISTOGRAM[metric])
      else:
        assert hist is None  # No baseline for object_nn: none drawn.
      legend = [t.get_text() for t in ax.get_legend().get_texts()]
      assert legend[0].startswith('trained')
      assert any(t.startswith('at init') for t in legend)
      assert any(t.startswith('colour histogram') for t in legend) == (hist is not None)
  finally:
    pictures.plt.close(fig)


def test_training_curves_error_bars_are_standard_errors(tmp_path):
  fig = pictures.training_curves_figure(_probe_workdir(tmp_path))
  try:
    for metric, ax in _probe_axes(fig).items():
      steps, centres, half_widths = _error_bars(ax)
      np.testing.assert_array_equal(steps, [10, 20])
      p = np.array([TRAINED[10][metric], TRAINED[20][metric]])
      np.testing.assert_allclose(centres, p, rtol=1e-6)  # float32 event values.
      np.testing.assert_allclose(half_widths, np.sqrt(p * (1 - p) / COUNTS[metric]), rtol=1e-5)
  finally:
    pictures.plt.close(fig)


def test_training_curves_while_training(tmp_path):
  """No probe_results.json yet: the picture still renders, with the encoder at
  initialisation but neither error bars (the counts are unknown) nor the colour histogram."""
  workdir = _probe_workdir(tmp_path, finished=False)
  out = tmp_path / 'curves.png'
  _check_png(out, pictures.training_curves(workdir, str(out)))
  fig = pictures.training_curves_figure(workdir)
  try:
    for metric, ax in _probe_axes(fig).items():
      assert len(_error_bars(ax)[0]) == 0
      assert _reference_line(ax, 'colour histogram') is None
      assert _reference_line(ax, 'at init') == pytest.approx(INIT[metric])
      np.testing.assert_allclose(ax.get_lines()[0].get_ydata(),
                                 [TRAINED[10][metric], TRAINED[20][metric]], rtol=1e-6)
  finally:
    pictures.plt.close(fig)


def test_probe_references_fall_back_to_the_json_files(tmp_path):
  """Without 'probe_init/...' scalars (events lost or not yet flushed) the encoder at
  initialisation comes from probe_init.json; a workdir without any file has no references."""
  workdir = _probe_workdir(tmp_path)
  refs = pictures.probe_references(workdir, scalars={})
  assert refs == {'init': INIT, 'color_histogram': COLOUR_HISTOGRAM, 'counts': COUNTS}
  empty = pictures.probe_references(str(tmp_path), scalars={'probe_init/x': ([0], [0.5])})
  assert empty == {'init': {'x': 0.5}, 'color_histogram': {}, 'counts': {}}


def test_training_curves_before_the_first_scalar(tmp_path):
  """Only probe_init.json (the run has probed its initial encoder, no events flushed yet):
  the probe panels show the encoder at initialisation."""
  (tmp_path / tables.INIT_PROBE_FILE).write_text(json.dumps(INIT))
  fig = pictures.training_curves_figure(str(tmp_path))
  try:
    for metric, ax in _probe_axes(fig).items():
      assert _reference_line(ax, 'at init') == pytest.approx(INIT[metric])
  finally:
    pictures.plt.close(fig)


def test_training_curves_titles_do_not_overlap(tmp_path):
  """Every panel title, rendered, lies inside the figure and clear of every other title."""
  fig = pictures.training_curves_figure(_probe_workdir(tmp_path))
  try:
    fig.set_dpi(pictures.DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 + len(INIT)  # loss, objective, learning rate, the probes.
    boxes = [t.get_window_extent(renderer) for t in titles]
    figure = fig.bbox
    for t, box in zip(titles, boxes):
      assert (figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0
              and box.y1 <= figure.y1), t.get_text()
    for i in range(len(boxes)):
      for j in range(i + 1, len(boxes)):
        assert not boxes[i].overlaps(boxes[j]), (titles[i].get_text(), titles[j].get_text())
  finally:
    pictures.plt.close(fig)


def test_training_curves_titles_name_the_metric(tmp_path):
  fig = pictures.training_curves_figure(_probe_workdir(tmp_path))
  try:
    firsts = {m: ax.get_title().split('\n')[0] for m, ax in _probe_axes(fig).items()}
    assert firsts == {LP_CLASS: 'class', LP_ORIENTATION: 'orientation',
                      LP_POSITION: 'position', OBJECT_NN: 'same class fraction other videos'}
  finally:
    pictures.plt.close(fig)


def test_probe_titles_are_short_and_distinct():
  titles = pictures.probe_titles([LP_CLASS, LP_ORIENTATION, OBJECT_NN, 'object_nn/abc'])
  assert titles[LP_ORIENTATION].split('\n') == ['orientation',
                                                'linear_probe synthetic/*/pre_logits']
  assert titles[OBJECT_NN].split('\n') == ['same class fraction other videos', 'object_nn']
  assert all(len(line) <= 40 for t in titles.values() for line in t.split('\n'))
  # Metrics of different shapes keep their whole name; none shares another's title.
  vtab = pictures.probe_titles(['vtab/mean', 'vtab/mean/natural', 'vtab/cifar100'])
  assert len(set(vtab.values())) == 3
  assert pictures.probe_titles(['class']) == {'class': 'class'}


def test_tsne_plot(tmp_path):
  rng = np.random.default_rng(0)
  classes = np.repeat(np.arange(3), 8)
  features = rng.normal(size=(24, 6)) + 4 * np.eye(6)[classes]
  out = tmp_path / 'tsne.png'
  array = pictures.tsne_plot(features, np.arange(24) // 4, classes, str(out),
                             class_names=['circle', 'square', 'star'])
  _check_png(out, array)
  single = pictures.tsne_plot(features, np.arange(24) // 4, None, str(tmp_path / 't1.png'))
  assert single.shape[1] < array.shape[1]  # One panel without classes.


def test_nearest_neighbours_self_first():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(6, 5))
  idx, sims = pictures.nearest_neighbours(features, 3 * features, k=3)
  np.testing.assert_array_equal(idx[:, 0], np.arange(6))  # Cosine ignores the scale.
  np.testing.assert_allclose(sims[:, 0], 1.0, rtol=1e-6)  # float32 features.
  assert np.all(np.diff(sims, axis=1) <= 1e-12)


def test_nearest_neighbours_one_per_video():
  query = np.array([[1.0, 0.0]])
  angles = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # Gallery sorted by similarity.
  gallery = np.stack([np.cos(angles), np.sin(angles)], 1)
  videos = np.array(['a', 'a', 'b', 'a', 'c', 'b'])
  idx, sims = pictures.nearest_neighbours(query, gallery, k=3, gallery_video_ids=videos)
  np.testing.assert_array_equal(idx, [[0, 2, 4]])
  np.testing.assert_allclose(sims, [np.cos([0.0, 0.2, 0.4])])
  idx, _ = pictures.nearest_neighbours(query, gallery, k=3, gallery_video_ids=videos,
                                       one_per_video=False)
  np.testing.assert_array_equal(idx, [[0, 1, 2]])
  # Skipping the query's own video; only two other videos remain, so the row is padded.
  idx, sims = pictures.nearest_neighbours(query, gallery, k=3, gallery_video_ids=videos,
                                          query_video_ids=['a'])
  np.testing.assert_array_equal(idx, [[2, 4, -1]])
  assert np.isnan(sims[0, 2])


def test_neighbour_grid(tmp_path):
  rng = np.random.default_rng(2)
  images = rng.integers(0, 255, size=(10, 32, 32, 3), dtype=np.uint8)
  features = rng.normal(size=(10, 8))
  out = tmp_path / 'nn.png'
  array = pictures.neighbour_grid(images[:3], images, features[:3], features, str(out), k=4,
                                  gallery_video_ids=np.arange(10) // 2)
  _check_png(out, array)
  assert array.shape[1] > array.shape[0]  # 3 rows of 5 images.


def test_attention_figure(tmp_path):
  rng = np.random.default_rng(3)
  images = rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
  yy, xx = np.mgrid[:32, :32]
  saliency = np.broadcast_to(np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 50.0), (4, 32, 32))
  out = tmp_path / 'attention.png'
  array = pictures.attention_figure(images, saliency, str(out))
  _check_png(out, array)
  assert array.shape[1] > array.shape[0]


@pytest.mark.parametrize('n', [1, 3])
def test_figures_with_few_items(tmp_path, n):
  images = np.full((n, 16, 16, 3), 128, np.uint8)
  images[..., 0] = 255
  array = pictures.neighbour_grid(images, images, np.eye(n, 4), np.eye(n, 4),
                                  str(tmp_path / f'nn{n}.png'), k=2)
  assert array.ndim == 3 and array.shape[2] == 3
