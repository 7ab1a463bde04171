"""Tests of vivi/evaluate/pictures.py: the event reader, the figures and the neighbour rule."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vivi.evaluate import pictures


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
