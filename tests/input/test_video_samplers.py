"""Time-based frame lookup, the VINCE and VITO samplers, and the MoCo v2 / BYOL augmentations."""

import functools
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests import helpers
from vivi.input import augment, frame_times, pipeline, records, vince_sampler, vito_sampler

SIZE = 16
_video = functools.partial(helpers.coded_video, size=SIZE)  # Solid frames, coded.
_decode = helpers.decode_coded
NO_AUGMENT = augment.AugmentConfig(image_size=SIZE, crop_area=(1.0, 1.0), crop_aspect=(1, 1),
                                   flip=False, color=False)


def _run(tmp_path, videos, sampler, batch_size, seed=0):
  """One pass over one shard of `videos`: (pipeline, its batches)."""
  path = os.path.join(tmp_path, 'train-00000.tfrecord')
  records.write_shard(path, videos)
  p = pipeline.make_pipeline([path], sampler, batch_size=batch_size, seed=seed, repeat=False,
                             shuffle_buffer=1)
  return p, list(p)


def test_nearest_frame_matches_a_numpy_loop():
  rng = np.random.default_rng(0)
  # Irregular times with repeats (rounded to 0.25 s), queries also before and after them.
  timestamps = np.sort(np.round(rng.uniform(0, 10, 40) * 4) / 4).astype(np.float32)
  queries = np.concatenate([rng.uniform(-2, 12, 200), timestamps, timestamps + 0.125,
                            [timestamps[0] - 1, timestamps[-1] + 1]]).astype(np.float32)
  want = [int(np.argmin(np.abs(timestamps - q))) for q in queries]
  got = frame_times.nearest_frame(tf.constant(timestamps), tf.constant(queries)).numpy()
  np.testing.assert_array_equal(got, want)
  one = frame_times.nearest_frame(tf.constant([3.0]), tf.constant([[0.0, 5.0]])).numpy()
  np.testing.assert_array_equal(one, [[0, 0]])


def test_shot_times():
  ts = np.arange(9, dtype=np.float32) / 2
  first, last, start, end = frame_times.shot_times(tf.constant(ts),
                                                   tf.constant([0, 0, 0, 1, 2, 2, 2, 2, 2]))
  np.testing.assert_array_equal(first, [0, 3, 4])
  np.testing.assert_array_equal(last, [2, 3, 8])
  np.testing.assert_allclose(start, [0.0, 1.5, 2.0])
  np.testing.assert_allclose(end, [1.0, 1.5, 4.0])


def test_vince_takes_t_frames_gap_seconds_apart(tmp_path):
  # 2 fps, 31 frames over 15 s; T=4 frames 4 s (8 stored frames) apart need 12 s.
  videos = [_video(f'v{i}', [31], fps=2.0) for i in range(24)]
  sampler = vince_sampler.VinceSampler(augment=NO_AUGMENT, frames_per_video=8,
                                       gap_seconds=4.0)
  _, batches = _run(tmp_path, videos, sampler, batch_size=24)
  batch = batches[0]
  assert batch['frames'].shape == batch['target_frames'].shape == (24, 8, SIZE, SIZE, 3)
  anchors, _ = _decode(batch['frames'])
  positives, _ = _decode(batch['target_frames'])
  starts, complete = set(), 0
  for frames in np.concatenate([anchors, positives], 1):           # [2k] per video
    seen = np.unique(frames)
    assert len(seen) <= 4
    assert np.all((seen - seen[0]) % 8 == 0) and seen[-1] - seen[0] <= 24
    assert seen[0] >= 0 and seen[-1] <= 30
    if len(seen) == 4:                                             # All T frames drawn.
      complete += 1
      np.testing.assert_array_equal(seen, seen[0] + 8 * np.arange(4))
    starts.add(seen[0] % 8)
  assert complete >= 5
  assert len(starts) >= 3                                          # Random start points.


def test_vince_same_frame_pairs_an_anchor_with_its_own_frame(tmp_path):
  videos = [_video(f'v{i}', [16], fps=1.0) for i in range(16)]
  sampler = vince_sampler.VinceSampler(augment=NO_AUGMENT, frames_per_video=1,
                                       same_frame=True)
  batch = _run(tmp_path, videos, sampler, batch_size=16)[1][0]
  anchors, positives = _decode(batch['frames'])[0], _decode(batch['target_frames'])[0]
  assert anchors.shape == (16, 1)
  np.testing.assert_array_equal(anchors, positives)
  assert len(np.unique(anchors)) > 1


def test_vince_draws_with_replacement_and_augments_each_draw(tmp_path):
  videos = [_video(f'v{i}', [16], fps=1.0) for i in range(16)]
  sampler = vince_sampler.VinceSampler(augment=NO_AUGMENT, frames_per_video=4)
  batch = _run(tmp_path, videos, sampler, batch_size=16)[1][0]
  anchors, positives = _decode(batch['frames'])[0], _decode(batch['target_frames'])[0]
  # With replacement: some video draws one frame twice among its anchors, and some pair is
  # one frame twice; without it, neither would (almost surely) happen in 16 videos.
  assert any(len(np.unique(a)) < 4 for a in anchors)
  assert np.any(anchors == positives) and np.any(anchors != positives)
  # Two draws of one frame (same_frame) get two augmentations: different crops of noise.
  noise = np.random.default_rng(3).integers(0, 256, (48, 48, 3), np.uint8)
  buf = io.BytesIO()
  Image.fromarray(noise).save(buf, format='JPEG', quality=95)
  video = _video('noise', [16], fps=1.0)
  video.frames = [buf.getvalue()] * 16
  cropping = augment.AugmentConfig(image_size=SIZE, crop_area=(0.3, 0.6), color=False)
  sampler = vince_sampler.VinceSampler(augment=cropping, frames_per_video=1, same_frame=True)
  batch = _run(tmp_path, [video], sampler, batch_size=1)[1][0]
  assert not np.array_equal(batch['frames'], batch['target_frames'])


def test_vince_skips_and_counts_videos_too_short_for_the_gaps(tmp_path):
  # T=4, G=5: the stored frames must span 15 s. 16 frames at 1 fps span exactly 15 s.
  good = [_video(f'g{i}', [16], fps=1.0) for i in range(3)] + [_video('g3', [10, 36], fps=3.0)]
  bad = [_video('b0', [15], fps=1.0), _video('b1', [45], fps=3.0)]
  sampler = vince_sampler.VinceSampler(augment=NO_AUGMENT)
  p, batches = _run(tmp_path, [bad[0]] + good[:2] + [bad[1]] + good[2:], sampler,
                    batch_size=1)
  assert len(batches) == 4
  assert p.videos_skipped == 2


def test_vito_views_lie_in_one_clip_of_one_shot(tmp_path):
  # 4 fps; shots of 5, 12, 3, 11 frames span 1.0, 2.75, 0.5 and 2.5 s: with a 2 s clip
  # only shots 1 and 3 are long enough.
  videos = [_video(f'v{i}', [5, 12, 3, 11], fps=4.0) for i in range(32)]
  sampler = vito_sampler.VitoSampler(augment=(NO_AUGMENT,), num_views=3, clip_seconds=2.0)
  batch = _run(tmp_path, videos, sampler, batch_size=32)[1][0]
  assert batch['frames'].shape == (32, 3, SIZE, SIZE, 3)
  frame, shot = _decode(batch['frames'])
  assert np.all(shot == shot[:, :1])                               # One shot per video...
  assert set(shot[:, 0]) == {1, 3}                                 # ...among the long ones.
  spread = frame.max(1) - frame.min(1)
  # Times within 2 s of each other; nearest stored frames within 2 s + one frame (0.25 s).
  assert spread.max() <= 2.0 * 4 + 1
  assert spread.max() >= 5 and spread.min() <= 2                   # Marginal, not fixed.


@pytest.mark.parametrize('temporal,mean_gap', [('marginal', 1 / 3), ('delta', 2 / 3),
                                               ('uniform', 4 / 9)])
def test_vito_temporal_schemes_against_their_definitions(temporal, mean_gap):
  # VITO Figure B.3: marginal = iid uniform times in the clip; delta = fixed spacing; uniform
  # = one uniform time per non-overlapping chunk. Expected mean |t_i - t_j| over the 3 pairs
  # of 3 views, in clip lengths, by hand: marginal E|u - u'| = 1/3; delta (1/2 + 1/2 + 1) / 3;
  # uniform (1/3 + 1/3 + 2/3) / 3 (chunks i, j: E|(j - i + u' - u) / 3| = |j - i| / 3).
  import tensorflow as tf
  u = tf.random.stateless_uniform([20000, 3], [0, 1], dtype=tf.float64)
  offsets = tf.stack([vito_sampler.view_offsets(temporal, row) for row in tf.unstack(u[:200])])
  offsets = offsets.numpy()
  reference = {'marginal': u[:200].numpy(),
               'delta': np.broadcast_to(np.linspace(0, 1, 3), (200, 3)),
               'uniform': (np.arange(3) + u[:200].numpy()) / 3}[temporal]
  np.testing.assert_allclose(offsets, reference, rtol=0, atol=1e-12)
  many = np.stack([vito_sampler.view_offsets(temporal, row) for row in u.numpy()])
  assert many.min() >= 0 and many.max() <= 1
  gaps = np.abs(many[:, [0, 0, 1]] - many[:, [1, 2, 2]])
  assert gaps.mean() == pytest.approx(mean_gap, abs=0.005)
  if temporal == 'marginal':   # The mode of the gaps' density 2 (1 - x) is at 0.
    histogram = np.histogram(gaps[:, 0], bins=5, range=(0, 1))[0]
    assert list(histogram) == sorted(histogram, reverse=True)


def test_vito_delta_and_uniform_place_the_views_in_the_clip(tmp_path):
  # 4 fps, a 2 s clip: delta's views are 1 s = 4 frames apart; uniform's in clip order.
  videos = [_video(f'v{i}', [12, 20], fps=4.0) for i in range(16)]
  (tmp_path / 'd').mkdir()
  (tmp_path / 'u').mkdir()
  delta = vito_sampler.VitoSampler(augment=(NO_AUGMENT,), clip_seconds=2.0, temporal='delta')
  frame, _ = _decode(_run(tmp_path / 'd', videos, delta, batch_size=16)[1][0]['frames'])
  assert np.all(frame[:, 1] - frame[:, 0] == 4) and np.all(frame[:, 2] - frame[:, 1] == 4)
  uniform = vito_sampler.VitoSampler(augment=(NO_AUGMENT,), clip_seconds=2.0,
                                     temporal='uniform')
  frame, _ = _decode(_run(tmp_path / 'u', videos, uniform, batch_size=16)[1][0]['frames'])
  assert np.all(np.diff(frame, axis=1) >= 0) and np.all(frame[:, 2] - frame[:, 0] <= 8)
  assert len({tuple(np.diff(f)) for f in frame}) > 1        # Not a fixed spacing.
  with pytest.raises(ValueError, match=r"input.temporal must be one of \('marginal', "):
    vito_sampler.VitoSampler(augment=(NO_AUGMENT,), temporal='fixed')


def test_vito_skips_videos_without_a_long_enough_shot(tmp_path):
  # Skips are counted up to the last batch's video: the usable video comes last.
  videos = [_video('short', [10, 10], fps=4.0), _video('one_frame_shots', [1] * 20, fps=4.0),
            _video('ok', [4, 12], fps=4.0)]
  sampler = vito_sampler.VitoSampler(augment=(NO_AUGMENT,), clip_seconds=2.56)
  p, batches = _run(tmp_path, videos, sampler, batch_size=1)
  assert len(batches) == 1
  assert p.videos_skipped == 2
  assert np.all(_decode(batches[0]['frames'])[1] == 1)


def test_vito_views_use_their_own_augmentation(tmp_path):
  gray = augment.AugmentConfig(image_size=SIZE, crop_area=(1.0, 1.0), crop_aspect=(1, 1),
                               flip=False, color=False, grayscale_prob=1.0)
  sampler = vito_sampler.VitoSampler(augment=(NO_AUGMENT, gray), num_views=3,
                                     clip_seconds=1.0)
  batch = _run(tmp_path, [_video('v', [2, 20], fps=4.0)], sampler, batch_size=1)[1][0]
  channels = batch['frames'][0].astype(int).mean(axis=(1, 2))      # [views, 3]
  is_gray = np.abs(channels - channels.mean(1, keepdims=True)).max(1) < 1
  assert is_gray.tolist() == [False, True, False]                  # augment[i % 2].


def test_check_frame_rate_names_the_dataset():
  with pytest.raises(ValueError, match=r'^youtube8m_1fps: frames stored at 0.5 fps put 1.28 '
                                       r'frames in a 2.56 s clip'):
    vito_sampler.check_frame_rate(0.5, 2.56, 'youtube8m_1fps')
  vito_sampler.check_frame_rate(1.0, 2.56, 'synthetic')            # 2.56 frames: fine.
  vito_sampler.check_frame_rate(25.0, 2.56, 'videonet')


def _augment_noise(seed=0, **kw):
  """A 32 x 32 noise image through the augmentation with crop, flip and colour off."""
  image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
  cfg = augment.AugmentConfig(image_size=32, crop_area=(1.0, 1.0), crop_aspect=(1, 1),
                              flip=False, color=False, **kw)
  out = augment.augment_image(tf.constant(image), tf.constant([seed, 0], tf.int64), cfg)
  return image, out.numpy()


def test_grayscale_makes_the_channels_equal():
  image, out = _augment_noise(grayscale_prob=1.0)
  assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])
  luma = image.astype(np.float32) @ [0.2989, 0.587, 0.114]
  assert np.abs(out[..., 0] - luma).max() <= 2
  # At p = 0.5 some frames are gray and some are not.
  gray = [np.all(_augment_noise(seed, grayscale_prob=0.5)[1].std(-1) == 0) for seed in range(12)]
  assert any(gray) and not all(gray)


def test_blur_lowers_the_variance_of_noise_and_keeps_flat_images():
  image, out = _augment_noise(blur_prob=1.0, blur_sigma=(1.5, 2.0))
  _, plain = _augment_noise()
  assert np.abs(plain.astype(int) - image).max() <= 1              # Resize to S is ~identity.
  assert out.astype(np.float32).var() < 0.5 * image.astype(np.float32).var()
  assert abs(out.astype(np.float32).mean() - image.mean()) < 3     # Edges mirrored, not black.
  _, sharp = _augment_noise(blur_prob=1.0, blur_sigma=(0.1, 0.1))  # A ~delta kernel.
  assert np.abs(sharp.astype(int) - image).max() <= 1
  flat = tf.fill([32, 32, 3], 0.3)
  np.testing.assert_allclose(augment.gaussian_blur(flat, tf.constant(1.5)), flat, atol=1e-6)


def test_solarize_inverts_bright_pixels_only():
  image, out = _augment_noise(solarize_prob=1.0)
  want = np.where(image < 128, image, 255 - image)
  assert np.abs(out.astype(int) - want).max() <= 1


def test_presets_construct_and_run():
  m = augment.moco_v2(224)
  assert (m.crop_area, m.color_prob, m.grayscale_prob, m.blur_prob, m.solarize_prob) == (
      (0.2, 1.0), 0.8, 0.2, 0.5, 0.0)
  assert m.brightness == 0.4 and m.contrast == m.saturation == (0.6, 1.4) and m.hue == 0.1
  b0, b1, b2 = (augment.byol(224, view) for view in range(3))
  assert (b0.blur_prob, b0.solarize_prob, b1.blur_prob, b1.solarize_prob) == (1.0, 0.0, 0.1, 0.2)
  assert b2 == b1 and b0.crop_area == (0.08, 1.0) and b0.saturation == (0.8, 1.2)
  assert augment.byol(64, 1, crop_area=(0.4, 1.0)).crop_area == (0.4, 1.0)
  # The blur is defined on 224-px views: smaller views get proportionally smaller sigmas.
  assert m.blur_sigma == b0.blur_sigma == (0.1, 2.0)
  np.testing.assert_allclose(augment.byol(56, 0).blur_sigma, (0.025, 0.5))
  np.testing.assert_allclose(augment.moco_v2(112).blur_sigma, (0.05, 1.0))
  image = tf.constant(np.random.default_rng(2).integers(0, 256, (40, 48, 3), np.uint8))
  for cfg in (augment.moco_v2(24), augment.byol(24, 0), augment.byol(24, 1)):
    out = augment.augment_image(image, tf.constant([4, 2], tf.int64), cfg)
    assert out.shape == (24, 24, 3) and out.dtype == tf.uint8
