"""DetCon's input: FH segments, masks that follow each view's crop and flip, the sampler."""

import os

import numpy as np
import tensorflow as tf

from tests import helpers
from vivi.input import augment, detcon_sampler, pipeline, records, segments

H, W, SIZE = 96, 128, 48
# Five solid regions on JPEG block edges, asymmetric so that a missed flip would show.
PALETTE = np.array([[220, 30, 30], [30, 200, 40], [30, 40, 220], [230, 220, 30],
                    [200, 40, 210]], np.uint8)
# Solid 8x8 blocks of a quality-100 JPEG decode to within 1 level: FH recovers the regions.
FH = segments.FHConfig(scale=100.0, sigma=0.8, min_size=200)
NO_COLOR = dict(image_size=SIZE, flip=True, color=False)


def _regions() -> np.ndarray:
  r = np.zeros((H, W), np.int32)
  r[48:, :40] = 1
  r[:, 40:72] = 2
  r[:32, 72:] = 3
  r[32:, 72:] = 4
  return r


def _jpeg(image: np.ndarray) -> bytes:
  return helpers.jpeg(image, quality=100, subsampling=0)   # As exact as JPEG gets.


def _palette_index(frames: np.ndarray) -> np.ndarray:
  """The nearest palette colour of each pixel [..., 3] -> [...]."""
  d = ((frames[..., None, :].astype(np.int32) - PALETTE.astype(np.int32)) ** 2).sum(-1)
  return d.argmin(-1)


def _render(sampler, image: np.ndarray, seed: int) -> dict:
  out = sampler.render({'jpeg': tf.constant(_jpeg(image))}, tf.constant([seed, 7], tf.int64))
  return {k: v.numpy() for k, v in out.items()}


def _flips(image: np.ndarray, seed: int, cfg) -> tuple[bool, bool]:
  """The two views' flip bits for `render`'s seed (as it splits it)."""
  decoded = tf.io.decode_jpeg(_jpeg(image), channels=3)
  seeds = tf.random.experimental.stateless_split(tf.constant([seed, 7], tf.int64), 3)
  return tuple(bool(augment.augment_decoded(decoded, seeds[v], cfg)[2]) for v in range(2))


def test_fh_segments_recover_solid_regions():
  image = tf.io.decode_jpeg(_jpeg(PALETTE[_regions()]), channels=3)
  image = tf.ensure_shape(image, [H, W, 3])
  labels = segments.fh_segments(image, FH)
  assert labels.dtype == tf.int32 and labels.shape == (H, W)
  labels, regions = labels.numpy(), _regions()
  assert labels.max() + 1 == 5
  for i in range(5):                                # One segment per region, exactly.
    assert len(np.unique(regions[labels == i])) == 1
  assert len({int(regions[labels == i][0]) for i in range(5)}) == 5


def test_transformed_labels_follow_the_views_crop_and_flip():
  image = PALETTE[_regions()]
  cfg = augment.AugmentConfig(crop_area=(0.2, 1.0), **NO_COLOR)
  flips = set()
  for seed in range(10):
    frame, window, flipped, _ = augment.augment_decoded(tf.constant(image),
                                                        tf.constant([seed, 3]), cfg)
    labels = segments.transform_labels(tf.constant(_regions()), window, flipped, SIZE)
    flips.add(bool(flipped))
    assert labels.shape == (SIZE, SIZE)
    # Only pixels where the resize blends two regions may disagree.
    assert np.mean(_palette_index(frame.numpy()) == labels.numpy()) > 0.95
  assert flips == {True, False}


def test_masks_mark_the_same_content_in_both_views():
  cfg = augment.AugmentConfig(crop_area=(0.1, 1.0), **NO_COLOR)
  sampler = detcon_sampler.DetconSampler(augment=(cfg, cfg), num_masks=8, fh=FH)
  image = PALETTE[_regions()]
  flip_differs, one_view_only = 0, 0
  for seed in range(12):
    out = _render(sampler, image, seed)
    assert out['frames'].shape == (2, SIZE, SIZE, 3) and out['frames'].dtype == np.uint8
    assert out['segments'].shape == (2, SIZE, SIZE) and out['segments'].dtype == np.int32
    colour = _palette_index(out['frames'])                           # [2, S, S]
    flip_differs += _flips(image, seed, cfg) in ((True, False), (False, True))
    valid = out['mask_valid']
    n = int(valid.sum())
    assert valid.tolist() == [True] * n + [False] * (8 - n)          # Padding comes last.
    assert out['segments'].min() >= -1 and out['segments'].max() == n - 1
    sampled = []
    for m in range(n):
      majority = []
      for v in range(2):
        under = colour[v][out['segments'][v] == m]
        assert under.size > 0                                        # In both views.
        counts = np.bincount(under, minlength=5)
        assert counts.max() / under.size > 0.9                       # One region's content.
        majority.append(int(counts.argmax()))
      assert majority[0] == majority[1]                              # The same in both views.
      sampled.append(majority[0])
    assert len(set(sampled)) == n
    # Every region clearly visible in both views is sampled (M > regions); the others not.
    area = np.stack([np.bincount(c.ravel(), minlength=5) / c.size for c in colour])
    assert set(np.where(area.min(0) > 0.03)[0]) <= set(sampled)
    one_view_only += np.any((area.max(0) > 0.1) & (area.min(0) == 0))
  assert flip_differs > 0 and one_view_only > 0                      # Both cases were hit.


def test_ids_in_only_one_view_are_never_sampled_and_masks_are_padded():
  view0 = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.int32)
  view1 = np.array([[2, 3, 3, 4], [5, 5, 2, 2]], np.int32)            # Shared: 2 and 3.
  labels = tf.constant(np.stack([view0, view1]))
  seg, valid = segments.sample_shared_segments(labels, 4, tf.constant([0, 0]))
  seg = seg.numpy()
  assert valid.numpy().tolist() == [True, True, False, False]
  for v, view in enumerate((view0, view1)):
    assert np.all(seg[v][(view != 2) & (view != 3)] == -1)
  m2, m3 = seg[0, 1, 0], seg[0, 1, 2]
  assert {m2, m3} == {0, 1}
  np.testing.assert_array_equal(seg[1], np.where(view1 == 2, m2, np.where(view1 == 3, m3, -1)))
  # One mask at a time: uniform over the shared ids only.
  picked = []
  for seed in range(200):
    seg, valid = segments.sample_shared_segments(labels, 1, tf.constant([seed, 1]))
    assert valid.numpy().tolist() == [True]
    picked.append(int(view0[seg.numpy()[0] == 0][0]))
  counts = np.bincount(picked, minlength=6)
  assert counts[[0, 1, 4, 5]].sum() == 0 and 70 < counts[2] < 130


def test_an_image_of_one_colour_gives_one_valid_mask():
  cfg = augment.AugmentConfig(crop_area=(0.1, 1.0), image_size=SIZE)
  sampler = detcon_sampler.DetconSampler(augment=(cfg, cfg), num_masks=16, fh=FH)
  for seed in range(3):
    out = _render(sampler, np.full((H, W, 3), 120, np.uint8), seed)
    assert out['mask_valid'].tolist() == [True] + [False] * 15
    assert np.all(out['segments'] == 0)


def test_sampler_picks_a_uniform_frame_and_runs_through_the_pipeline(tmp_path):
  # Each frame is one solid colour, so the sampled frame shows in the rendered views.
  solid = lambda i: np.full((H, W, 3), PALETTE[i], np.uint8)
  video = helpers.video('v', [_jpeg(solid(i)) for i in range(4)])
  cfg = augment.AugmentConfig(image_size=SIZE, color=False)
  sampler = detcon_sampler.DetconSampler(augment=(cfg, cfg), num_masks=4, fh=FH)
  serialized = tf.constant(records.to_sequence_example(video).SerializeToString())
  parsed = pipeline._parse(serialized, sampler.parse_features)
  picked = set()
  for seed in range(30):
    selected = sampler.select(parsed, tf.constant([seed, 0]))
    assert bool(selected['ok'])
    out = sampler.render(selected, tf.constant([seed, 1]))
    picked.add(int(np.bincount(_palette_index(out['frames'].numpy()).ravel()).argmax()))
  assert picked == {0, 1, 2, 3}

  scenes = [PALETTE[_regions()], PALETTE[(_regions() + 2) % 5]]
  paths = []
  for s in range(2):
    paths.append(os.path.join(tmp_path, f'train-{s:05d}.tfrecord'))
    videos = [helpers.video(f's{s}v{i}', [_jpeg(x) for x in scenes + [solid(i)]])
              for i in range(2)]
    records.write_shard(paths[-1], videos)
  p = pipeline.make_pipeline(paths, sampler, batch_size=2, seed=0, repeat=False,
                             shuffle_buffer=1)
  batches = list(p)
  assert len(batches) == 2 and p.videos_skipped == 0
  for batch in batches:
    assert set(batch) == {'frames', 'segments', 'mask_valid'}
    assert batch['frames'].shape == (2, 2, SIZE, SIZE, 3) and batch['frames'].dtype == np.uint8
    assert batch['segments'].shape == (2, 2, SIZE, SIZE) and batch['segments'].dtype == np.int32
    assert batch['mask_valid'].shape == (2, 4) and batch['mask_valid'].dtype == bool
    for b in range(2):
      n = int(batch['mask_valid'][b].sum())
      assert n >= 1 and batch['segments'][b].max() == n - 1


def test_discovered_cells_point_at_the_same_content_in_the_discovery_view():
  """Odin (masks='discovered'): every view pixel's `cells` entry is the discovery-view pixel
  that shows the same content, through each view's crop and flip, so that segments found
  on the discovery view follow the views as DetCon's FH masks do; -1 only outside the
  discovery crop."""
  cfg = augment.AugmentConfig(crop_area=(0.2, 1.0), **NO_COLOR)
  sampler = detcon_sampler.DetconSampler(augment=(cfg, cfg), masks='discovered',
                                         discovery_crop_area=(0.5, 0.8))
  image, flips, outside, matched, total = PALETTE[_regions()], set(), 0, 0, 0
  for seed in range(8):
    out = _render(sampler, image, seed)
    assert set(out) == {'frames', 'discovery', 'cells'}
    assert out['discovery'].shape == (SIZE, SIZE, 3) and out['cells'].shape == (2, SIZE, SIZE)
    flips.update(_flips(image, seed, cfg))
    disc = _palette_index(out['discovery']).reshape(-1)
    for view in range(2):
      cells, colour = out['cells'][view], _palette_index(out['frames'][view])
      inside = cells >= 0
      outside += int(np.sum(~inside))
      matched += int(np.sum(disc[cells[inside]] == colour[inside]))
      total += int(np.sum(inside))
  # Only pixels where a resize blends two regions may disagree.
  assert matched / total > 0.95 and total > 0.3 * 8 * 2 * SIZE * SIZE
  assert flips == {True, False} and outside > 0


def test_discovery_index_is_minus_one_outside_the_window_and_inverts_the_resize():
  index = segments.discovery_index(tf.constant([6, 8]), tf.constant([1, 2, 4, 4]), 2).numpy()
  expected = -np.ones((6, 8), np.int64)
  expected[1:5, 2:6] = np.kron(np.array([[0, 1], [2, 3]]), np.ones((2, 2)))
  np.testing.assert_array_equal(index, expected)
