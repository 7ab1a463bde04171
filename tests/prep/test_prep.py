"""Data preparation (vivi/prep/, data/prepare_videos.py) on real clips nobody here made:
decoding rates, shot boundaries, filters, skipped files, restart, Beam = local."""

import math
import os
import pathlib
import shutil

import av
import numpy as np
import pytest

from tests import helpers
from tests.real_clips import clips_dir
from vivi.input import records
from vivi.prep import decode, filters, prepare, runner, shots


@pytest.fixture(scope='module')
def clips():
  return clips_dir()


def _clip(clips, name):
  return os.path.join(clips, name)


@pytest.mark.parametrize('name', ['bikes.mp4', 'bigbuckbunny.mp4', 'carphone_pristine.mp4'])
@pytest.mark.parametrize('fps', [1.0, 4.0])
def test_decode_stores_one_frame_per_target_time(clips, name, fps):
  path = _clip(clips, name)
  d = decode.decode(path, decode.Sampling(fps=fps, max_short_side=96))
  duration = decode.probe_duration(path)
  period = 1 / d.native_fps
  assert abs(d.duration - duration) < 1.5 * period
  # Target times k / fps before the end of the video, each shown by the frame on screen.
  assert len(d.frames) == math.ceil(duration * fps - 1e-6)
  targets = np.arange(len(d.frames)) / fps
  assert np.all(d.timestamps <= targets + 1e-6)
  assert np.all(d.timestamps > targets - period - 1e-6)
  assert all(min(f.shape[:2]) <= 96 and f.dtype == np.uint8 for f in d.frames)
  assert len(d.histograms) == len(d.histogram_times)
  np.testing.assert_allclose(d.histograms.sum(-1), 1, atol=1e-5)


def test_decode_above_native_rate_never_stores_a_frame_twice(clips):
  path = _clip(clips, 'bikes.mp4')  # 250 frames at 25 fps.
  d = decode.decode(path, decode.Sampling(fps=60, max_short_side=32))
  assert len(d.frames) == 250 and len(np.unique(d.timestamps)) == 250


def test_r2v2_random_start_is_seeded_per_video(clips):
  cfg = prepare.PrepConfig(fps=0.5, start='random', max_frames=3, detector='none')
  tools = prepare.Workers(cfg)
  path = _clip(clips, 'bikes.mp4')
  a = prepare.prepare_video(path, 'a', cfg, tools).video
  again = prepare.prepare_video(path, 'a', cfg, tools).video
  b = prepare.prepare_video(path, 'b', cfg, tools).video
  np.testing.assert_allclose(np.diff(a.timestamps), 2.0, atol=0.05)  # G apart.
  assert a.timestamps[0] <= 10 - 4 + 0.05  # Room for all three before the end.
  np.testing.assert_array_equal(a.timestamps, again.timestamps)
  assert a.frames == again.frames
  assert not np.allclose(a.timestamps, b.timestamps)
  # R2V2 itself needs 15 s for 4 frames 5 s apart: the 10 s clip is skipped, with why.
  r2v2 = prepare.PrepConfig.from_preset('r2v2', detector='none')
  out = prepare.prepare_video(path, 'a', r2v2, prepare.Workers(r2v2))
  assert out.video is None and out.skipped.startswith('too few frames: 2 < 4')


def test_shot_segments_merge_or_drop_short_shots():
  cuts = np.array([2.0, 2.4, 6.0])
  merge = shots.segments(cuts, 8.0, shots.ShotConfig(min_seconds=1.0, short='merge'))
  assert merge == [(0.0, 2.4), (2.4, 6.0), (6.0, 8.0)]
  drop = shots.segments(cuts, 8.0, shots.ShotConfig(min_seconds=1.0, short='drop'))
  assert drop == [(0.0, 2.0), (2.4, 6.0), (6.0, 8.0)]
  first_short = shots.segments(np.array([0.5, 4.0]), 6.0, shots.ShotConfig(min_seconds=1.0))
  assert first_short == [(0.0, 4.0), (4.0, 6.0)]
  # Frames in a dropped shot get -1; kept shots are renumbered 0, 1, ... by their frames.
  ids = shots.assign(np.arange(8.0) + 0.1, [(0.0, 2.0), (2.4, 6.0), (6.0, 8.0)])
  np.testing.assert_array_equal(ids, [0, 0, -1, 1, 1, 1, 2, 2])
  ids = shots.assign(np.array([0.1, 7.0]), [(0.0, 2.0), (2.4, 6.0), (6.0, 8.0)])
  np.testing.assert_array_equal(ids, [0, 1])


def test_cut_times_from_histogram_distance():
  h = np.zeros((5, 4))
  h[:2, 0] = 1
  h[2:, 1] = 1                                  # A cut before frame 2.
  h[4] = [0, 0.9, 0.1, 0]                       # A small change: not a cut.
  np.testing.assert_allclose(shots.histogram_distances(h), [0, 1, 0, 0.1])
  np.testing.assert_allclose(shots.cut_times(h, np.arange(5.0), 0.2), [2.0])


def test_shot_boundaries_on_real_clips(clips):
  """bikes.mp4 is an edit of street scenes; the other two are single shots."""
  cfg = prepare.PrepConfig(fps=4.0, detector='none', max_short_side=64)
  tools = prepare.Workers(cfg)
  found = {n: prepare.prepare_video(_clip(clips, n), n, cfg, tools).stats['cuts']
           for n in ('bikes.mp4', 'bigbuckbunny.mp4', 'carphone_pristine.mp4')}
  for expected in (1.2, 3.04, 5.48, 7.48, 9.68):  # Hard cuts, seen by eye.
    assert min(abs(c - expected) for c in found['bikes.mp4']) < 0.1, found
  assert found['bigbuckbunny.mp4'] == [] and found['carphone_pristine.mp4'] == []


def _write_video(path, frames, fps=10):
  with av.open(path, 'w') as out:
    stream = out.add_stream('mpeg4', rate=fps)
    stream.bit_rate = 2_000_000
    stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], 'yuv420p'
    for f in frames:
      out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format='rgb24')))
    out.mux(stream.encode())


def test_static_video_filter(tmp_path):
  y, x = np.mgrid[:64, :64]
  still = np.stack([4 * x, 4 * y, 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)], -1)
  still = still.clip(0, 255).astype(np.uint8)  # Smooth: the encoder keeps it still.
  moving = [np.roll(still, 5 * i, axis=1) for i in range(40)]
  _write_video(str(tmp_path / 'still.mp4'), [still] * 40)
  _write_video(str(tmp_path / 'moving.mp4'), moving)
  cfg = prepare.PrepConfig(detector='none', min_changed_fraction=0.01)
  tools = prepare.Workers(cfg)
  out = prepare.prepare_video(str(tmp_path / 'still.mp4'), 'still', cfg, tools)
  assert out.video is None and out.skipped.startswith('static: 0.00% of pixels'), out.skipped
  assert prepare.prepare_video(str(tmp_path / 'moving.mp4'), 'm', cfg, tools).video is not None


def test_duration_filter_and_curation(clips):
  cfg = prepare.PrepConfig.from_preset('vito', detector='none', max_short_side=32)
  out = prepare.prepare_video(_clip(clips, 'carphone_pristine.mp4'), 'c', cfg,
                              prepare.Workers(cfg))
  assert out.skipped == 'too short: 4.00 s < 10 s'

  class Brightness:  # A stand-in classifier: 'bright' when the mean pixel is over 100.
    labels = ('dark', 'bright')

    def __call__(self, images):
      return np.array([int(np.mean(i) > 100) for i in images])

  frames = [np.full((8, 8, 3), 30, np.uint8)] * 3 + [np.full((8, 8, 3), 200, np.uint8)]
  assert filters.check_curation(frames, Brightness(), 'Bright') is None
  assert filters.check_curation(frames[:3], Brightness(), 'bright') == (
      "curation: query 'bright' is the top-1 of none of 3 frames (dark x3)")


def test_keras_classifier_plugin(tmp_path):
  import tensorflow as tf
  model = tf.keras.Sequential([tf.keras.Input((16, 16, 3)), tf.keras.layers.Flatten(),
                               tf.keras.layers.Dense(3)])
  model.save(str(tmp_path / 'm.keras'))
  (tmp_path / 'labels.txt').write_text('cat\ndog\nfish\n')
  c = filters.KerasClassifier(str(tmp_path / 'm.keras'), str(tmp_path / 'labels.txt'),
                              input_size=16, preprocess='tf')
  images = [np.random.default_rng(i).integers(0, 255, (20, 30, 3), np.uint8) for i in range(3)]
  x = np.stack([tf.image.resize(i, [16, 16]).numpy() / 127.5 - 1 for i in images])
  np.testing.assert_array_equal(c(images), np.argmax(model(x).numpy(), -1))


def _input_folder(clips, folder):
  os.makedirs(folder / 'animals')
  for name in ('bikes.mp4', 'bigbuckbunny.mp4', 'carphone_pristine.mp4'):
    shutil.copy(_clip(clips, name), folder / name)
  data = pathlib.Path(_clip(clips, 'bikes.mp4')).read_bytes()
  (folder / 'animals' / 'truncated.mp4').write_bytes(data[:len(data) // 3])
  (folder / 'animals' / 'notes.mp4').write_text('this is not a video\n')
  (folder / 'readme.txt').write_text('not listed: no video extension\n')
  return str(folder)


def _plan(inputs, output):
  cfg = prepare.PrepConfig(fps=2.0, max_short_side=64, detector='none')
  return runner.make_plan(runner.find_videos(inputs), output, cfg, videos_per_shard=2)


def _shard_bytes(folder):
  m = records.Manifest.read(folder)
  return {s: open(os.path.join(folder, s), 'rb').read() for s in m.shards}


@pytest.fixture(scope='module')
def prepared(clips, tmp_path_factory):
  """The five files prepared by the local runner in one go."""
  tmp = tmp_path_factory.mktemp('prep')
  inputs = _input_folder(clips, tmp / 'in')
  manifest = runner.run_local(_plan(inputs, str(tmp / 'out')), progress=False)
  return inputs, str(tmp / 'out'), manifest


def test_local_run_writes_records_and_skips_bad_files_with_reasons(prepared):
  _, out, manifest = prepared
  assert manifest.counts['videos'] == 3
  skipped = {s['video']: s['reason'] for s in manifest.skipped}
  assert set(skipped) == {'animals/notes.mp4', 'animals/truncated.mp4'}
  assert all(r.startswith('unreadable: ') for r in skipped.values()), skipped
  assert records.Manifest.read(out).counts == manifest.counts
  import tensorflow as tf
  videos = [records.from_serialized(r.numpy()) for s in manifest.shard_paths(out)
            for r in tf.data.TFRecordDataset(s)]
  assert sorted(v.video_id for v in videos) == ['bigbuckbunny.mp4', 'bikes.mp4',
                                               'carphone_pristine.mp4']
  bikes = next(v for v in videos if v.video_id == 'bikes.mp4')
  assert len(bikes.frames) == 20 and bikes.fps == 2.0
  assert len(np.unique(bikes.shot_ids)) == manifest.counts['shots'] - 2 >= 4
  assert sum(len(v.frames) for v in videos) == manifest.counts['frames']


def test_interrupted_run_finishes_without_redoing_or_duplicating(prepared, tmp_path):
  inputs, full, manifest = prepared
  out = str(tmp_path / 'out')
  plan = _plan(inputs, out)
  # Shard 0 holds the two bad files (summary only), shard 1 two clips, shard 2 one.
  assert runner.run_local(plan, max_shards=2, progress=False) is None
  assert not os.path.exists(os.path.join(out, records.MANIFEST))
  done = [os.path.join(out, plan.names[1]), os.path.join(out, plan.names[0]) + '.json']
  stamps = [os.stat(f).st_mtime_ns for f in done]
  pathlib.Path(os.path.join(out, plan.names[2]) + '.tmp').write_bytes(b'half a shard')  # A crash.
  again = runner.run_local(_plan(inputs, out), progress=False)
  assert [os.stat(f).st_mtime_ns for f in done] == stamps
  assert again.counts == manifest.counts and again.skipped == manifest.skipped
  assert _shard_bytes(out) == _shard_bytes(full)
  other = prepare.PrepConfig(fps=1.0, detector='none')
  with pytest.raises(ValueError, match='refusing to mix'):
    runner.make_plan(runner.find_videos(inputs), out, other)


def test_beam_direct_runner_writes_the_same_records(prepared, tmp_path):
  from vivi.prep import beam_pipeline
  inputs, full, manifest = prepared
  out = str(tmp_path / 'beam')
  beam_manifest = beam_pipeline.run_beam(_plan(inputs, out))
  assert beam_manifest.counts == manifest.counts
  assert beam_manifest.skipped == manifest.skipped
  assert _shard_bytes(out) == _shard_bytes(full)


def test_haar_detector_annotates_the_face_in_carphone(clips):
  cfg = prepare.PrepConfig(fps=1.0, detector='haar', haar_cascades=('frontalface_default',))
  out = prepare.prepare_video(_clip(clips, 'carphone_pristine.mp4'), 'c', cfg,
                              prepare.Workers(cfg))
  v = out.video
  with_face = [b for b in v.boxes if len(b)]
  assert len(with_face) >= 3, v.boxes
  assert out.label_names == {0: 'frontalface_default'}
  assert all(len(b) <= 5 for b in v.boxes)


@pytest.mark.slow
def test_vivi_tiny_trains_on_records_prepared_from_the_clips(clips, tmp_path):
  """The README-style main command, pointed at records made by data/prepare_videos.py."""
  import subprocess
  import sys
  root = helpers.ROOT
  inputs = _input_folder(clips, tmp_path / 'in')
  out = str(tmp_path / 'records')
  prep = subprocess.run([sys.executable, os.path.join(root, 'data/prepare_videos.py'),
                         '--input', inputs, '--output', out, '--preset', 'vivi', '--fps', '4',
                         '--max_short_side', '64', '--workers', '2'],
                        capture_output=True, text=True, timeout=600)
  assert prep.returncode == 0, prep.stderr[-3000:]
  assert 'videos=3' in prep.stdout and '2 skipped' in prep.stdout, prep.stdout
  workdir = str(tmp_path / 'work')
  train = subprocess.run(
      [sys.executable, os.path.join(root, 'main.py'), '--config',
       os.path.join(root, 'configs/vivi.py') + ':tiny', '--workdir', workdir,
       f'--config.data.dataset={out}', '--config.num_train_steps=3',
       '--config.schedule.warmup_steps=1',
       '--config.input.batch_videos=2', '--config.input.num_shots=2',
       '--config.input.frames_per_shot=2', '--config.input.image_size=32',
       '--config.data.shuffle_buffer=4', '--config.log_every_steps=1',
       '--config.probe.every_steps=1000', '--config.probe.num_train=50',
       '--config.probe.num_test=20',
       '--config.probe.evaluators.linear_probe.datasets=("synthetic/class",)',
       '--config.probe.evaluators.object_nn.num_videos=2',
       '--config.probe.evaluators.object_discovery.num_videos=2', '--config.probe.image_size=32'],
      env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True, text=True, timeout=900)
  assert train.returncode == 0, train.stderr[-3000:]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '3')), os.listdir(workdir)
