"""Tests of the synthetic video world (vivi/input/synthetic.py and synthetic_tasks.py)."""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import helpers
from vivi.input import records, synthetic, synthetic_tasks

REPO = helpers.ROOT
SIZE = 32


def _decode(jpeg: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(jpeg)).convert('RGB'), np.float32)


def _same_video(a: records.Video, b: records.Video) -> bool:
  return (a.video_id == b.video_id and a.fps == b.fps and a.frames == b.frames
          and np.array_equal(a.shot_ids, b.shot_ids)
          and np.allclose(a.timestamps, b.timestamps)
          and all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes))
          and all(np.array_equal(x, y) for x, y in zip(a.labels, b.labels))
          and all(np.array_equal(x, y) for x, y in zip(a.scores, b.scores)))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of one box [4] against boxes [m, 4]."""
  h = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
  w = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  return h * w / (area(a) + area(b) - h * w + 1e-9)


def test_render_is_deterministic_and_index_dependent():
  a = synthetic.render_video(3, seed=1, image_size=SIZE)
  b = synthetic.render_video(3, seed=1, image_size=SIZE)
  assert a.video_id == 'synthetic-1-0000003'
  assert _same_video(a, b)
  assert a.frames[0] != synthetic.render_video(4, seed=1, image_size=SIZE).frames[0]
  assert a.frames[0] != synthetic.render_video(3, seed=2, image_size=SIZE).frames[0]


def test_records_validate_and_round_trip():
  v = synthetic.render_video(0, seed=0, image_size=SIZE)
  records.validate_video(v)
  assert _decode(v.frames[0]).shape == (SIZE, SIZE, 3)
  w = records.from_serialized(records.to_sequence_example(v).SerializeToString())
  assert w.video_id == v.video_id and w.fps == v.fps and w.frames == v.frames
  np.testing.assert_array_equal(w.shot_ids, v.shot_ids)
  np.testing.assert_allclose(w.timestamps, v.timestamps, rtol=1e-6)
  for f in range(len(v.frames)):
    np.testing.assert_array_equal(w.boxes[f], v.boxes[f])
    np.testing.assert_array_equal(w.labels[f], v.labels[f])
    np.testing.assert_array_equal(w.scores[f], v.scores[f])


def test_shots_and_timestamps():
  num_shots = []
  for i in range(8):
    v = synthetic.render_video(i, seed=0, image_size=SIZE)
    ids = v.shot_ids
    assert ids[0] == 0 and set(np.diff(ids)) <= {0, 1}  # Non-decreasing, no gaps.
    lengths = np.bincount(ids)
    assert lengths.min() >= 4 and lengths.max() <= 14  # Seconds, at 1 fps.
    np.testing.assert_allclose(v.timestamps, np.arange(len(v.frames)))
    num_shots.append(len(lengths))
  assert min(num_shots) >= 3 and max(num_shots) <= 7 and len(set(num_shots)) > 1


def test_detections_follow_the_objects():
  """Boxes are the objects' visible extents (up to jitter), scores and noise as stated."""
  ious, wrong, low, num_boxes, empty, frames, covered, missed = [], 0, 0, 0, 0, 0, 0, 0
  for i in range(6):
    v, truth = synthetic.render_video_with_truth(i, seed=5, image_size=48)
    for boxes, labels, scores, t in zip(v.boxes, v.labels, v.scores, truth):
      frames += 1
      empty += len(boxes) == 0
      num_boxes += len(boxes)
      low += int(np.sum(scores < 0.05))
      assert len(boxes) <= 8 and np.all(np.diff(scores) <= 0)
      assert np.all((boxes >= 0) & (boxes <= 1)) and np.all(scores > 0) and np.all(scores <= 1)
      # The truth boxes cover the objects: little coverage is left outside them and there
      # is a lot inside each (this would fail with swapped or shifted coordinates).
      cov = t['coverage']
      inside = np.zeros_like(cov, bool)
      for b in np.round(t['boxes'] * cov.shape[0]).astype(int):
        assert cov[b[0]:b[2], b[1]:b[3]].mean() > 0.25
        inside[b[0]:b[2], b[1]:b[3]] = True
      covered += np.sum(cov > 0.5)
      missed += np.sum(cov[~inside] > 0.5)
      for b, l, s in zip(boxes, labels, scores):
        if s >= 0.5:  # False positives score at most 0.35.
          overlap = _iou(b, t['boxes'])
          ious.append(overlap.max())
          wrong += int(l != t['classes'][overlap.argmax()])
  assert missed <= 0.01 * covered, (missed, covered)
  ious = np.array(ious)
  assert len(ious) > 100 and np.mean(ious > 0.5) > 0.9, np.mean(ious > 0.5)
  assert 0.02 < wrong / len(ious) < 0.2  # Label noise of 0.1 (and confusions score lower).
  assert low > 0 and empty < frames and num_boxes > frames


# sha256 (first 16 hex digits) of everything `render_video_with_truth` returns but the frames
# (shots, soft labels, boxes, labels, scores, truth arrays; the same since before the truth
# carried masks, commit cb6d29c, through grey objects, version 3, and a palette per shot,
# version 4): (index, seed, image size) -> digest (`_digest`); and of the frames alone in
# version 4.
GEOMETRY_DIGESTS = {(0, 0, 32): '672f620d70fb3a24', (1, 0, 32): 'aad21e4baf4266c3',
                    (2, 3, 32): 'e5a9d2e5bf88b211', (0, 1, 64): '2c166fb789dfadc9'}
FRAME_DIGESTS = {(0, 0, 32): 'ab9aca07f3507104', (1, 0, 32): 'ac6c8309907151e6',
                 (2, 3, 32): '2e43f3d3511ed317', (0, 1, 64): '3f3f6b0a29cdbc48'}


def _digest(video: records.Video, truth: list[dict], frames: bool) -> str:
  if frames:
    return hashlib.sha256(b''.join(video.frames)).hexdigest()[:16]
  h = hashlib.sha256()
  arrays = [video.shot_ids, video.soft_labels, *video.boxes, *video.labels, *video.scores]
  arrays += [t[key] for t in truth for key in ('boxes', 'classes', 'visible', 'coverage')]
  for a in arrays:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def test_the_world_is_what_it_was():
  """The world is a shared instrument: neither the masks, grey objects (version 3) nor a
  palette per shot (version 4) changed a shot, box, label, score, soft label or truth array,
  and the frames are version 4's. (A frame mismatch on another platform that renders the
  same geometry would mean floating-point differences in the rendering, not a changed
  world.)"""
  for (index, seed, size), expected in GEOMETRY_DIGESTS.items():
    video, truth = synthetic.render_video_with_truth(index, seed=seed, image_size=size)
    assert _digest(video, truth, frames=False) == expected, (index, seed, size)
    assert _digest(video, truth, frames=True) == FRAME_DIGESTS[index, seed, size]


def test_objects_are_grey():
  """Version 3: an instance's colour and stripes are grey levels (the shot's lighting tints
  them, the same for everything in the shot), so colour cannot match an instance."""
  rng = np.random.default_rng(0)
  for cls in range(synthetic.NUM_CLASSES):
    a = synthetic.sample_appearance(rng, cls)
    assert np.ptp(a.colour) == 0 and np.ptp(a.stripe_colour) == 0, a
    assert 0.2 < a.colour[0] <= 1.0 and 0.0 < a.stripe_colour[0] <= 1.0


def _hues(colours: np.ndarray) -> np.ndarray:
  return np.array([colorsys.rgb_to_hsv(*c) for c in colours])


def test_each_shot_turns_the_videos_palette_by_an_angle_of_its_own():
  """Version 4: a shot's background is its video's with both ends of the gradient turned
  round the hue circle by one angle, drawn per shot from the video's third stream;
  saturation, value and the waves are the video's, and every other draw is version 3's."""
  for index in range(3):
    world = np.random.default_rng([5, index, 0])
    video = synthetic.sample_background(np.random.default_rng([5, index, 0]))  # First draw.
    _, shots = synthetic._plan_video(  # pylint: disable=protected-access
        world, np.random.default_rng([5, index, 2]))
    turns = []
    for shot in shots:
      before, after = _hues(video.colours), _hues(shot.background.colours)
      np.testing.assert_allclose(after[:, 1:], before[:, 1:], atol=1e-9)   # S and V kept.
      turn = (after[:, 0] - before[:, 0]) % 1.0
      assert abs(np.angle(np.exp(2j * np.pi * (turn[1] - turn[0])))) < 1e-6   # One angle.
      turns.append(turn[0])
      for field in ('direction', 'freqs', 'phases', 'amps'):
        np.testing.assert_array_equal(getattr(shot.background, field), getattr(video, field))
    np.testing.assert_allclose(turns, np.random.default_rng([5, index, 2]).random(len(shots)),
                               atol=1e-6)
    assert len({round(t, 6) for t in turns}) == len(shots)   # Not shared across shots.


def test_masks_span_their_boxes_and_are_disjoint():
  overlapping_boxes = 0
  for i in range(4):
    _, truth = synthetic.render_video_with_truth(i, seed=2, image_size=48)
    for t in truth:
      masks = t['masks']
      assert masks.dtype == bool and masks.shape == (len(t['boxes']), 48, 48)
      for mask, box in zip(masks, t['boxes']):
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        extent = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / 48
        np.testing.assert_array_equal(extent, box)
      # No pixel belongs to two objects, and each mask pixel is more than half covered.
      assert masks.sum(0).max(initial=0) <= 1
      assert np.all(t['coverage'][masks.any(0)] > 0.5)
      for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
          overlapping_boxes += _iou(t['boxes'][a], t['boxes'][b:b + 1])[0] > 0
  assert overlapping_boxes > 10   # Occlusions happen, so disjointness was tested.


def test_fps_samples_the_same_world_more_densely():
  slow = synthetic.render_video(5, seed=0, image_size=SIZE, fps=1.0)
  fast = synthetic.render_video(5, seed=0, image_size=SIZE, fps=4.0)
  assert fast.fps == 4.0 and len(fast.frames) == 4 * len(slow.frames)
  np.testing.assert_array_equal(np.bincount(fast.shot_ids), 4 * np.bincount(slow.shot_ids))
  np.testing.assert_allclose(fast.timestamps, np.arange(len(fast.frames)) / 4.0)
  # Frame k at 1 fps and frame 4k at 4 fps show the same instant (up to sensor noise),
  # and are closer to each other than consecutive frames at 1 fps are.
  same = [np.abs(_decode(slow.frames[k]) - _decode(fast.frames[4 * k])).mean()
          for k in range(len(slow.frames))]
  nxt = [np.abs(_decode(slow.frames[k]) - _decode(slow.frames[k + 1])).mean()
         for k in range(len(slow.frames) - 1)]
  assert max(same) < 6.0 and np.mean(same) < 0.5 * np.mean(nxt)


def _read_folder(folder: str, manifest: records.Manifest) -> list[records.Video]:
  import tensorflow as tf
  return [records.from_serialized(r.numpy())
          for p in manifest.shard_paths(folder) for r in tf.data.TFRecordDataset(p)]


def test_build_dataset_counts_and_restart(tmp_path):
  folder = str(tmp_path / 'd')
  kw = dict(num_videos=5, image_size=24, seed=3, videos_per_shard=2)
  m = synthetic.build_dataset(folder, **kw)
  assert m.shards == [f'train-0000{k}-of-00003.tfrecord' for k in range(3)]
  assert m.label_map == list(synthetic.CLASS_NAMES) and m.detector == 'synthetic'
  assert m.fps == 1.0 and m.extra['generator']['seed'] == 3
  videos = _read_folder(folder, records.Manifest.read(folder))
  expected = [synthetic.render_video(i, seed=3, image_size=24) for i in range(5)]
  assert all(_same_video(a, b) for a, b in zip(videos, expected)) and len(videos) == 5
  assert m.counts == {
      'videos': 5, 'shots': sum(len(set(v.shot_ids)) for v in expected),
      'frames': sum(len(v.frames) for v in expected),
      'boxes': sum(len(l) for v in expected for l in v.labels)}
  # Restart: a missing shard is rebuilt identically, present ones are left alone.
  paths = m.shard_paths(folder)
  before = [pathlib.Path(p).read_bytes() for p in paths]
  mtime = os.stat(paths[0]).st_mtime_ns
  os.remove(paths[1])
  os.remove(os.path.join(folder, records.MANIFEST))
  m2 = synthetic.build_dataset(folder, **kw)
  assert [pathlib.Path(p).read_bytes() for p in paths] == before
  assert os.stat(paths[0]).st_mtime_ns == mtime and m2 == m
  # Several processes write the same bytes. The pool forks, so it runs as `ensure_dataset`
  # runs it, in a fresh process: forked from this one, which runs JAX's threads, a worker
  # could deadlock on a lock another thread held.
  other = str(tmp_path / 'e')
  out = subprocess.run([sys.executable, '-m', 'vivi.input.synthetic', '--out', other,
                        '--num_videos=5', '--image_size=24', '--seed=3',
                        '--videos_per_shard=2', '--workers=2'],
                       cwd=REPO, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert [pathlib.Path(p).read_bytes() for p in m.shard_paths(other)] == before
  with pytest.raises(ValueError, match='different dataset'):
    synthetic.build_dataset(folder, **{**kw, 'seed': 4})


def test_ensure_dataset_and_cli(tmp_path):
  folder = synthetic.ensure_dataset(str(tmp_path), num_videos=2, image_size=16, seed=0, fps=2)
  name = f'videos-v{synthetic.GENERATOR_VERSION}-n2-s16-seed0-fps2'
  assert folder == os.path.join(str(tmp_path), name)
  assert records.Manifest.read(folder).counts['videos'] == 2
  stamp = os.stat(os.path.join(folder, records.MANIFEST)).st_mtime_ns
  assert synthetic.ensure_dataset(str(tmp_path), num_videos=2, image_size=16, seed=0,
                                  fps=2) == folder
  assert os.stat(os.path.join(folder, records.MANIFEST)).st_mtime_ns == stamp  # Not rebuilt.
  # With workers, the build runs in a subprocess (no fork of this process): same bytes.
  other = synthetic.ensure_dataset(str(tmp_path / 'w'), num_videos=2, image_size=16, seed=0,
                                   fps=2, num_workers=2)
  shards = records.Manifest.read(folder).shards
  for shard in shards:
    with open(os.path.join(folder, shard), 'rb') as a, open(os.path.join(other, shard),
                                                            'rb') as b:
      assert a.read() == b.read()
  out = str(tmp_path / 'cli')
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'data', 'make_synthetic.py'), '--out', out,
       '--num_videos', '2', '--image_size', '16', '--seed', '0'],
      capture_output=True, text=True, check=True)
  assert 'videos=2' in result.stdout
  with open(os.path.join(out, records.MANIFEST)) as f:
    assert json.load(f)['counts']['videos'] == 2


@pytest.mark.parametrize('task', sorted(synthetic_tasks.DOWNSTREAM_TASKS))
def test_downstream_tasks(task):
  k = synthetic_tasks.DOWNSTREAM_TASKS[task]
  n = 3 * k
  x, y = synthetic_tasks.render_downstream(task, 'train', n, image_size=SIZE, seed=0)
  assert x.shape == (n, SIZE, SIZE, 3) and x.dtype == np.uint8 and y.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(y, minlength=k), np.full(k, 3))  # Balanced.
  x2, y2 = synthetic_tasks.render_downstream(task, 'train', n, image_size=SIZE, seed=0)
  assert np.array_equal(x, x2) and np.array_equal(y, y2)
  xt, _ = synthetic_tasks.render_downstream(task, 'test', n, image_size=SIZE, seed=0)
  train = {im.tobytes() for im in x}
  assert len(train) == n and not train & {im.tobytes() for im in xt}


def test_downstream_rejects_unknown_names():
  assert set(synthetic_tasks.DOWNSTREAM_TASKS) >= {'class', 'count', 'position', 'orientation',
                                             'size'}
  with pytest.raises(ValueError, match='count'):
    synthetic_tasks.render_downstream('colour', 'train', 2, image_size=SIZE, seed=0)
  with pytest.raises(ValueError, match='test'):
    synthetic_tasks.render_downstream('count', 'val', 2, image_size=SIZE, seed=0)


def test_teacher_soft_labels_are_probabilities_that_favour_visible_classes():
  video, truth = synthetic.render_video_with_truth(1, seed=0, image_size=32)
  p = video.soft_labels
  assert p.shape == (len(video.frames), synthetic.NUM_CLASSES)
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
  # The teacher's top class is mostly one of the frame's visible classes (chance: <= 0.4).
  top = [np.argmax(q) in t['classes'] for q, t in zip(p, truth) if len(t['classes'])]
  assert top and np.mean(top) > 0.6, np.mean(top)
  again = records.from_serialized(records.to_sequence_example(video).SerializeToString())
  np.testing.assert_allclose(again.soft_labels, p, rtol=1e-6)


def test_render_options_are_the_hook_of_pilot_worlds(tmp_path):
  """`WORLD` renders the world; a pilot's options hold inside `rendering_with` only, are
  recorded in its dataset's manifest, and keep it out of the world's cache."""
  world = synthetic.render_video(1, seed=0, image_size=24)
  with synthetic.rendering_with(synthetic.RenderOptions()):
    assert _same_video(synthetic.render_video(1, seed=0, image_size=24), world)
  pilot = synthetic.RenderOptions(size_scale=1.6)
  with pytest.raises(RuntimeError), synthetic.rendering_with(pilot):
    assert synthetic.render_options() == pilot
    m = synthetic.build_dataset(str(tmp_path / 'pilot'), num_videos=1, image_size=24, seed=0)
    assert m.extra['generator']['render_options']['size_scale'] == 1.6
    assert not _same_video(synthetic.render_video(1, seed=0, image_size=24), world)
    with pytest.raises(ValueError, match='holds only the world'):
      synthetic.ensure_dataset(str(tmp_path), num_videos=1, image_size=24, seed=0)
    raise RuntimeError('leaving the block')
  assert synthetic.render_options() == synthetic.WORLD
  m = synthetic.build_dataset(str(tmp_path / 'world'), num_videos=1, image_size=24, seed=0)
  assert 'render_options' not in m.extra['generator']
