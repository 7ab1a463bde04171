"""Object discovery (vivi/evaluate/discovery.py and its evaluator in suite.py): the metric on
hand-made masks, the geometry of upsampling, and the evaluator end to end."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from vivi import encoder as encoder_api
from vivi import errors, parallel
from vivi.evaluate import baselines, discovery, retrieval, suite
from vivi.input import synthetic
from vivi.models import video_model


def _box_mask(size, y0, x0, y1, x1):
  mask = np.zeros((size, size), bool)
  mask[y0:y1, x0:x1] = True
  return mask


def test_a_perfect_segmentation_scores_one():
  masks = np.stack([_box_mask(8, 0, 0, 3, 3), _box_mask(8, 4, 2, 8, 7)])
  segments = np.zeros((8, 8), np.int32)          # The background is a segment of its own,
  segments[masks[0]], segments[masks[1]] = 3, 1  # and ids need not be consecutive.
  np.testing.assert_array_equal(discovery.best_overlaps(segments, masks), [1.0, 1.0])
  metrics, n = discovery.scores(segments[None], [masks])
  assert metrics == {'abo': 1.0, 'object_recovery': 1.0} and n == 2


def test_one_cluster_over_the_image_scores_each_object_its_share_of_the_image():
  masks = np.stack([_box_mask(8, 0, 0, 3, 3), _box_mask(8, 2, 4, 8, 8)])   # 9 and 24 px
  metrics, n = discovery.scores(np.zeros((1, 8, 8), np.int32), [masks])
  np.testing.assert_allclose(discovery.best_overlaps(np.zeros((8, 8), int), masks),
                             [9 / 64, 24 / 64])
  assert n == 2 and metrics['abo'] == pytest.approx((9 + 24) / 2 / 64)
  assert metrics['object_recovery'] == 0.0


def test_two_objects_with_known_overlaps():
  # Object A: the top-left 4x4 block (16 px); object B: the bottom-right one (16 px).
  # Segment 0: rows 0-4 of columns 0-3 (20 px) holds all of A, so IoU(A) = 16 / 20 = 0.8;
  # segment 1: everything else (44 px) holds all of B, so IoU(B) = 16 / 44.
  masks = np.stack([_box_mask(8, 0, 0, 4, 4), _box_mask(8, 4, 4, 8, 8)])
  segments = np.ones((8, 8), np.int32)
  segments[0:5, 0:4] = 0
  np.testing.assert_allclose(discovery.best_overlaps(segments, masks), [0.8, 16 / 44])
  metrics, n = discovery.scores(segments[None], [masks])
  assert n == 2 and metrics['abo'] == pytest.approx((0.8 + 16 / 44) / 2)
  assert metrics['object_recovery'] == 0.5
  # Recovery needs an IoU above 0.5: halves of the image give A and B exactly 0.5.
  halves = np.repeat(np.arange(2), 4)[None, :].repeat(8, 0)
  assert discovery.scores(halves[None], [masks])[0] == {'abo': 0.5, 'object_recovery': 0.0}


def test_frames_without_objects_add_nothing():
  masks = [np.zeros((0, 8, 8), bool), np.stack([_box_mask(8, 0, 0, 8, 4)])]
  metrics, n = discovery.scores(np.zeros((2, 8, 8), np.int32), masks)
  assert n == 1 and metrics['abo'] == 0.5
  metrics, n = discovery.scores(np.zeros((1, 8, 8), np.int32), masks[:1])
  assert n == 0 and np.isnan(metrics['abo'])


def test_nearest_neighbour_upsampling_gives_each_cell_its_stride_block():
  cells = np.arange(2 * 3 * 3).reshape(2, 3, 3)
  np.testing.assert_array_equal(discovery.upsample_nearest(cells[:, :2, :2], 8)[0],
                                np.kron(cells[0, :2, :2], np.ones((4, 4), int)))
  up = discovery.upsample_nearest(cells, 12)    # Stride 4: cell (i, j) covers 4x4 pixels.
  np.testing.assert_array_equal(up, np.stack([np.kron(c, np.ones((4, 4), int))
                                              for c in cells]))


def test_the_grid_reference_has_k_blocks_of_about_equal_size():
  for k in (1, 2, 5, 6):
    sizes = np.bincount(discovery.grid_segments(64, k).ravel())
    assert len(sizes) == k and sizes.min() > 0.6 * 64 * 64 / k, (k, sizes)


def test_k_is_the_most_objects_a_frame_shows_plus_the_background():
  assert discovery.DEFAULTS['num_clusters'] == synthetic.MAX_CAST + 1
  assert common.OBJECT_DISCOVERY['num_clusters'] == synthetic.MAX_CAST + 1
  _, truth = synthetic.render_video_with_truth(0, seed=0, image_size=32)
  assert max(len(t['masks']) for t in truth) <= synthetic.MAX_CAST


def test_bad_settings_are_config_errors_that_list_what_is_valid():
  config = lambda **kw: ml_collections.ConfigDict(
      {'evaluators': {'object_discovery': {**common.OBJECT_DISCOVERY, **kw}}})
  suite.check(config())
  with pytest.raises(errors.ConfigError, match=r"object_discovery: unknown key\(s\) \['clusters'\] "
                     r"for the 'object_discovery' evaluator; it takes \['feature', "):
    suite.check(config(clusters=4))
  with pytest.raises(errors.ConfigError, match=r"feature='pre_logits'; valid: \('block1'"):
    suite.check(config(feature='pre_logits'))
  with pytest.raises(errors.ConfigError, match=r'upsample=0: want an integer >= 1'):
    suite.check(config(upsample=0))


def _tiny_encoder():
  module = video_model.build_encoder(common.base('tiny').model)
  variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  return encoder_api.Encoder(module, dict(variables), {'step': 0, 'source': 'random init'})


def test_the_evaluator_end_to_end_on_a_random_tiny_encoder(tmp_path, monkeypatch):
  seeds = []
  render = retrieval.held_out_frames
  monkeypatch.setattr(retrieval, 'held_out_frames',
                      lambda *a, seed, **kw: seeds.append(seed) or render(*a, seed=seed, **kw))
  settings = {**common.OBJECT_DISCOVERY, 'num_videos': 3, 'frames_per_video': 4}
  config = ml_collections.ConfigDict({'seed': 1, 'image_size': common.TINY_IMAGE_SIZE,
                                      'evaluators': {'object_discovery': settings}})
  probes, encoder = suite.Suite(config, parallel.make_mesh()), _tiny_encoder()
  # As evaluate.py runs it (suite.run): with an output folder, the picture too.
  metrics, pictures = probes.evaluate(probes.context(encoder, str(tmp_path)), 'object_discovery')
  assert set(metrics) == {'abo', 'object_recovery'}
  assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
  assert os.path.getsize(tmp_path / 'object_discovery.png') > 10_000
  assert pictures['segments'].ndim == 3 and pictures['segments'].dtype == np.uint8
  # As the training probe runs it (no output folder): the same numbers, and the number of
  # objects for the standard errors.
  assert probes(encoder) == {f'object_discovery/{k}': v for k, v in metrics.items()}
  assert probes.counts['object_discovery/abo'] > 3
  assert probes(baselines.ColourHistogram()) == {}     # No feature map to cluster.
  config.split = 'validation'                          # Other held-out videos.
  probes(encoder)
  assert seeds == [1, 2]
