"""The record schema, the VIVI sampler and the tf.data pipeline."""

import functools
import io
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import helpers
from vivi import errors
from vivi.input import augment, objects, pipeline, records, vivi_sampler

SIZE = 16
_video = functools.partial(helpers.coded_video, size=SIZE)  # Solid frames, coded.
_decode = helpers.decode_coded
NO_AUGMENT = augment.AugmentConfig(image_size=SIZE, crop_area=(1.0, 1.0), crop_aspect=(1, 1),
                                   flip=False, color=False)


def _write(tmp_path, shards):
  paths = []
  for s, videos in enumerate(shards):
    path = os.path.join(tmp_path, f'train-{s:05d}.tfrecord')
    records.write_shard(path, videos)
    paths.append(path)
  return paths


def _batches(files, sampler, batch_size=1, seed=0, repeat=False, **kw):
  p = pipeline.make_pipeline(files, sampler, batch_size=batch_size, seed=seed, repeat=repeat,
                             shuffle_buffer=kw.pop('shuffle_buffer', 1), **kw)
  return p, list(p)


def test_validate_video_names_the_problem():
  v = _video('v0', [3, 2])
  v.boxes[1] = np.array([[0.1, 0.2, 1.3, 0.5]], np.float32)
  v.labels[1], v.scores[1] = np.array([1]), np.array([0.9], np.float32)
  with pytest.raises(records.RecordError, match=r"f.tfrecord record 4: video 'v0' frame 1: box "
                                                r"outside the image"):
    records.validate_video(v, 'f.tfrecord record 4')
  v = _video('v1', [3, 2])
  v.shot_ids = v.shot_ids[::-1].copy()
  with pytest.raises(records.RecordError, match='non-decreasing'):
    records.validate_video(v)


def test_sampler_takes_consecutive_frames_of_consecutive_usable_shots(tmp_path):
  # Shots of 5, 2, 6, 4, 7 frames; with L=4 the usable shots are 0, 2, 3, 4.
  files = _write(tmp_path, [[_video('a', [5, 2, 6, 4, 7])]])
  sampler = vivi_sampler.ViviSampler(num_shots=3, frames_per_shot=4, augment=NO_AUGMENT)
  seen = set()
  for seed in range(12):
    _, batches = _batches(files, sampler, seed=seed)
    frame, shot = _decode(batches[0]['frames'][0])        # [K, L]
    assert batches[0]['frames'].shape == (1, 3, 4, SIZE, SIZE, 3)
    assert np.all(np.diff(frame, axis=1) == 1)                    # Consecutive frames...
    assert np.all(shot == shot[:, :1])                            # ...of one shot each.
    seen.add(tuple(shot[:, 0]))
  assert seen == {(0, 2, 3), (2, 3, 4)}                           # Consecutive usable shots.


def test_videos_with_too_few_shots_are_skipped_and_counted(tmp_path):
  good = [_video(f'g{i}', [4, 4, 4]) for i in range(3)]
  bad = [_video('short_shots', [3, 3, 3, 3]), _video('two_shots', [9, 9])]
  files = _write(tmp_path, [bad[:1] + good[:2], bad[1:] + good[2:]])
  sampler = vivi_sampler.ViviSampler(num_shots=3, frames_per_shot=4, augment=NO_AUGMENT)
  p, batches = _batches(files, sampler)
  assert len(batches) == 3
  assert p.videos_skipped == 2


def test_a_dataset_without_usable_videos_stops_with_a_clear_error(tmp_path):
  files = _write(tmp_path, [[_video('short', [2, 2, 2])]])
  sampler = vivi_sampler.ViviSampler(num_shots=3, frames_per_shot=4, augment=NO_AUGMENT)
  with pytest.raises(ValueError, match=r'^5 videos in a row were skipped: no video in .*'
                                       r'has what the ViviSampler needs: K=3 shots of at least '
                                       r'L=4 stored frames each \(at 1 fps: 3 shots of 4 s or '
                                       r'longer\); to use more videos, lower input.num_shots'):
    _batches(files, sampler, repeat=True, max_consecutive_skips=5)
  assert pipeline.count_usable(files, sampler) == (0, 1)


def test_usable_videos_are_counted_with_the_samplers_own_rule(tmp_path):
  good = [_video(f'g{i}', [4, 4, 4]) for i in range(3)]
  bad = [_video('short_shots', [3, 3, 3, 3]), _video('two_shots', [9, 9])]
  files = _write(tmp_path, [bad[:1] + good[:2], bad[1:] + good[2:]])
  sampler = vivi_sampler.ViviSampler(num_shots=3, frames_per_shot=4, augment=NO_AUGMENT)
  assert pipeline.count_usable(files, sampler) == (3, 5)
  relaxed = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=4, augment=NO_AUGMENT)
  assert pipeline.count_usable(files, relaxed) == (4, 5)


def test_pipeline_is_deterministic_for_a_seed(tmp_path):
  files = _write(tmp_path, [[_video(f'v{i}', [6, 7, 5]) for i in range(6)]] * 2)
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=3,
                                     augment=augment.AugmentConfig(image_size=SIZE))
  run = lambda seed: [b['frames'] for b in _batches(
      files, sampler, batch_size=4, seed=seed, shuffle_buffer=8)[1]]
  a, b, c = run(0), run(0), run(1)
  assert len(a) == 3
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_rotation_variant_rotates_frames_and_labels_them(tmp_path):
  image = np.zeros((SIZE, SIZE, 3), np.uint8)
  image[:4, :8] = 255  # An asymmetric mark: top-left.
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='JPEG', quality=100)
  v = _video('r', [4, 4])
  v.frames = [buf.getvalue()] * 8
  files = _write(tmp_path, [[v]])
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=4, augment=NO_AUGMENT,
                                     rotate=True)
  _, batches = _batches(files, sampler)
  frames, rotation = batches[0]['frames'][0], batches[0]['rotation'][0]
  for k in range(2):
    assert sorted(rotation[k]) == [0, 1, 2, 3]                    # (l + r) mod 4.
    assert np.all(np.diff(rotation[k]) % 4 == 1)
    for l in range(4):
      expected = np.rot90(image, rotation[k, l])
      assert np.abs(frames[k, l].astype(int) - expected).mean() < 10


def test_host_shards():
  files = [f's{i}' for i in range(5)]
  assert pipeline.host_shards(files, 1, 2) == ['s1', 's3']
  with pytest.raises(ValueError, match='5 shards cannot feed 8 processes'):
    pipeline.host_shards(files, 0, 8)


def test_transform_boxes_through_crop_and_flip():
  boxes = tf.constant([[0.5, 0.5, 0.7, 0.9], [0.0, 0.0, 0.1, 0.1]])
  window = tf.constant([40, 20, 50, 80])          # y0, x0, h, w in a 100 x 100 frame.
  out, valid = augment.transform_boxes(boxes, tf.constant([True, True]), window,
                                       tf.constant([100, 100]), tf.constant(True))
  # Box 0: y (50-40)/50=0.2 .. (70-40)/50=0.6; x (50-20)/80=0.375 .. (90-20)/80=0.875,
  # flipped: 0.125 .. 0.625. Box 1's centre (5, 5) is outside the crop: dropped.
  np.testing.assert_allclose(out[0], [0.2, 0.125, 0.6, 0.625], rtol=1e-6)
  np.testing.assert_array_equal(valid, [True, False])


def test_corrupt_shard_error_names_the_file(tmp_path):
  files = _write(tmp_path, [[_video(f'v{i}', [4, 4]) for i in range(3)]])
  data = bytearray(pathlib.Path(files[0]).read_bytes())
  data[len(data) // 2] ^= 0xFF                     # Breaks a record's CRC.
  pathlib.Path(files[0]).write_bytes(bytes(data))
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=4, augment=NO_AUGMENT)
  with pytest.raises(records.RecordError, match=r'train-00000.tfrecord: corrupt shard after '
                                                r'record \d'):
    _batches(files, sampler)


def test_record_that_is_not_a_video_names_file_and_record(tmp_path):
  files = _write(tmp_path, [[_video('v0', [4, 4])]])
  with tf.io.TFRecordWriter(files[0] + '.x') as w:
    w.write(records.to_sequence_example(_video('v0', [4, 4])).SerializeToString())
    w.write(b'\x0a\x03not a sequence example')
  os.replace(files[0] + '.x', files[0])
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=4, augment=NO_AUGMENT)
  with pytest.raises(records.RecordError, match=r'train-00000.tfrecord record 1: not a video '
                                                r'record'):
    _batches(files, sampler)


def test_undecodable_frame_names_file_record_and_frame(tmp_path):
  v = _video('broken', [4, 4])
  v.frames[5] = b'\xff\xd8 this is not a jpeg'
  files = _write(tmp_path, [[_video('ok', [4, 4]), v]])
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=4, augment=NO_AUGMENT)
  with pytest.raises(records.RecordError, match=r"record 1 \(broken\) frame 5: undecodable"):
    _batches(files, sampler)


def _annotate(v: records.Video, rng) -> records.Video:
  """Gives each frame 0-7 boxes with random scores (some below 0.05) and labels."""
  for f in range(len(v.frames)):
    n = int(rng.integers(0, 8))
    corners = np.sort(rng.uniform(0, 1, (n, 2, 2)), axis=1)
    v.boxes[f] = corners.transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    v.labels[f] = rng.integers(0, 6, n)
    v.scores[f] = rng.uniform(0, 0.3, n).astype(np.float32)
  v.soft_labels = rng.dirichlet(np.ones(3), len(v.frames)).astype(np.float32)
  return v


def _select(v, frame_idx, cfg, seed=0):
  serialized = records.to_sequence_example(v).SerializeToString()
  parsed = pipeline._parse(tf.constant(serialized), records.parse_features(3))
  return {k: x.numpy() for k, x in objects.select_boxes(
      parsed, tf.constant(frame_idx), cfg, tf.constant([seed, 1], tf.int64)).items()}


def test_select_boxes_keeps_the_top_five_above_the_score_threshold():
  v = _annotate(_video('o', [6, 6]), np.random.default_rng(0))
  frames = np.array([[0, 1, 2], [7, 8, 9]])
  out = _select(v, frames, objects.ObjectsConfig(num_classes=6))
  assert out['boxes'].shape == (2, 3, 5, 4) and out['box_valid'].shape == (2, 3, 5)
  for (k, l), f in np.ndenumerate(frames):
    keep = [i for i in np.argsort(-v.scores[f], kind='stable') if v.scores[f][i] >= 0.05][:5]
    n = len(keep)
    assert out['box_valid'][k, l].tolist() == [True] * n + [False] * (5 - n)
    np.testing.assert_allclose(out['boxes'][k, l, :n], v.boxes[f][keep], rtol=1e-6)
    np.testing.assert_array_equal(out['box_labels'][k, l, :n], v.labels[f][keep])
    assert not out['boxes'][k, l, n:].any() and not out['box_labels'][k, l, n:].any()


def test_random_box_ablations_change_only_what_they_should():
  v = _annotate(_video('o', [10]), np.random.default_rng(1))
  frames = np.arange(10)[None]
  base = _select(v, frames, objects.ObjectsConfig(num_classes=6))
  moved = _select(v, frames, objects.ObjectsConfig(num_classes=6, random_boxes=True))
  relabelled = _select(v, frames, objects.ObjectsConfig(num_classes=6, random_labels=True))
  valid = base['box_valid']
  assert valid.sum() > 10
  for out in (moved, relabelled):
    np.testing.assert_array_equal(out['box_valid'], valid)
  size = lambda b: b[..., 2:] - b[..., :2]
  # Random coordinates: same sizes and labels, new positions inside the frame.
  np.testing.assert_allclose(size(moved['boxes'])[valid], size(base['boxes'])[valid], atol=1e-6)
  np.testing.assert_array_equal(moved['box_labels'], base['box_labels'])
  assert np.all(moved['boxes'][valid] >= 0) and np.all(moved['boxes'][valid] <= 1 + 1e-6)
  assert np.abs(moved['boxes'][valid] - base['boxes'][valid]).mean() > 0.05
  # Random labels: same boxes, new labels within the label map.
  np.testing.assert_array_equal(relabelled['boxes'], base['boxes'])
  assert np.mean(relabelled['box_labels'][valid] != base['box_labels'][valid]) > 0.5
  assert relabelled['box_labels'].max() < 6


def test_boxes_follow_their_frame_through_the_flip_and_soft_labels_pass(tmp_path):
  image = np.zeros((SIZE, SIZE, 3), np.uint8)
  image[:, :SIZE // 2] = 255                       # Bright left half: shows the flip.
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='JPEG', quality=100)
  v = _video('f', [4, 4])
  v.frames = [buf.getvalue()] * 8
  v.boxes = [np.array([[0.2, 0.1, 0.6, 0.3]], np.float32)] * 8
  v.labels, v.scores = [np.array([4])] * 8, [np.array([0.9], np.float32)] * 8
  v.soft_labels = np.tile(np.array([[0.2, 0.5, 0.3]], np.float32), (8, 1))
  files = _write(tmp_path, [[v]])
  cfg = augment.AugmentConfig(image_size=SIZE, crop_area=(1.0, 1.0), crop_aspect=(1, 1),
                              flip=True, color=False)
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=4, augment=cfg,
                                     objects=objects.ObjectsConfig(num_classes=5),
                                     soft_label_classes=3)
  flips = set()
  for seed in range(3):
    batch = _batches(files, sampler, seed=seed)[1][0]
    for k in range(2):
      for l in range(4):
        flipped = batch['frames'][0, k, l, :, 0].mean() < 128   # Left column dark.
        flips.add(flipped)
        want = [0.2, 0.7, 0.6, 0.9] if flipped else [0.2, 0.1, 0.6, 0.3]
        np.testing.assert_allclose(batch['boxes'][0, k, l, 0], want, atol=1e-6)
        assert batch['box_valid'][0, k, l].tolist() == [True, False, False, False, False]
        assert batch['box_labels'][0, k, l, 0] == 4
    np.testing.assert_allclose(batch['soft_labels'][0], np.full((2, 4, 3), [0.2, 0.5, 0.3]),
                               rtol=1e-6)
  assert flips == {True, False}


def test_transform_boxes_clips_and_keeps_centre_inside():
  boxes = tf.constant([[0.3, 0.3, 0.9, 0.5]])     # Extends below the crop; centre inside.
  out, valid = augment.transform_boxes(boxes, tf.constant([True]), tf.constant([20, 20, 60, 60]),
                                       tf.constant([100, 100]), tf.constant(False))
  # y: (30-20)/60 = 1/6 .. (90-20)/60 > 1 -> clipped to 1; x: 1/6 .. 0.5.
  np.testing.assert_allclose(out[0], [1 / 6, 1 / 6, 1.0, 0.5], rtol=1e-5)
  assert valid.numpy().tolist() == [True]


def test_a_restored_pipeline_reads_on_where_the_saved_one_was(tmp_path):
  files = _write(tmp_path, [[_video(f's{s}v{i}', [6, 7, 5] if i % 3 else [2]) for i in range(5)]
                            for s in range(3)])    # Every third video unusable: skipped.
  sampler = vivi_sampler.ViviSampler(num_shots=2, frames_per_shot=3,
                                     augment=augment.AugmentConfig(image_size=SIZE))
  make = lambda **kw: pipeline.make_pipeline(files, sampler, batch_size=3, seed=0,
                                             shuffle_buffer=4, **kw)
  straight = iter(make())
  first = [next(straight) for _ in range(4)]
  p = make()
  it = iter(p)
  for _ in range(2):
    next(it)
  prefix = str(tmp_path / 'state' / 'videos')
  os.makedirs(os.path.dirname(prefix))
  p.save_state(prefix)
  assert os.path.getsize(prefix + '.json') < 400
  resumed = make()
  assert resumed.restore_state(prefix) and resumed.videos_skipped == p.videos_skipped > 0
  for a, b in zip(first[2:], iter(resumed)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  other = pipeline.make_pipeline(files, sampler, batch_size=3, seed=0, shuffle_buffer=8)
  with pytest.raises(errors.DatasetError, match=r"another record order \(\['window'\]"):
    other.restore_state(prefix)
  assert not make().restore_state(str(tmp_path / 'nothing'))
