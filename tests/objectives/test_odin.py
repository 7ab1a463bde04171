"""Odin: segments discovered by k-means on the EMA target's discovery view, mapped into each
view, pooled by both networks under DetCon_B's loss."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tests import references
from vivi.models import kmeans
from vivi.objectives import odin


def test_discovered_segments_map_each_view_pixel_to_its_discovery_cell():
  # Discovery view of side 4 with a 2x2 feature grid: clusters [[0, 1], [2, 0]].
  clusters = jnp.array([[[0, 1], [2, 0]]])
  side = 4
  cells = -np.ones((1, 2, 2, 2), np.int32)
  cells[0, 0] = [[0, 3], [12, 15]]     # view 0: the four corners of the discovery view
  cells[0, 1] = [[2, -1], [-1, 5]]     # view 1: top-right, outside, outside, top-left
  segments, valid = odin.discovered_segments(clusters, jnp.asarray(cells), side, 3)
  np.testing.assert_array_equal(segments[0, 0], [[0, 1], [2, 0]])
  np.testing.assert_array_equal(segments[0, 1], [[1, -1], [-1, 0]])
  # Cluster 2 is seen in view 0 only: it is no mask.
  np.testing.assert_array_equal(valid, [[True, True, False]])


def _features(rng, v=3, s=8, grid=4, c=16):
  discovery = rng.normal(size=(v, grid, grid, c)).astype(np.float32)
  return {'block4': jnp.asarray(rng.normal(size=(v, 2, grid, grid, c)), jnp.float32),
          'discovery': {'block4': jnp.asarray(discovery)}}, s


def test_target_head_discovers_segments_and_the_online_head_pools_under_them():
  rng = np.random.default_rng(0)
  features, s = _features(rng)
  cells = rng.integers(-1, s * s, size=(3, 2, s, s)).astype(np.int32)
  batch = {'cells': jnp.asarray(cells), 'discovery': jnp.zeros((3, s, s, 3), jnp.uint8)}
  head = odin.Head(num_clusters=3, kmeans_iterations=5, feature='block4',
                   projector_hidden=8, projection_dim=4)
  variables = head.init(jax.random.key(0), features,
                        {'segments': jnp.zeros((3, 2, s, s), jnp.int32),
                         'mask_valid': jnp.ones((3, 3), bool)}, False)
  target, _ = head.apply(variables, features, batch, True, target=True,
                         mutable=['batch_stats'])
  clusters = kmeans.segment_feature_map(features['discovery']['block4'], 3, 5)
  want, valid = odin.discovered_segments(clusters, jnp.asarray(cells), s, 3)
  np.testing.assert_array_equal(target['discovered']['segments'], want)
  np.testing.assert_array_equal(target['discovered']['mask_valid'], valid)
  # The online pass pools under the segments it is given (the train step hands it the
  # target's): other segments, other projections; its predictor exists, the target's not.
  online = lambda b: head.apply(variables, features, b, False, mutable=['batch_stats'])[0]
  given = online(target['discovered'])['projections']
  shuffled = online({'segments': jnp.roll(want, 1, axis=0), 'mask_valid': valid})
  assert given.shape == (3, 2, 3, 4)
  assert not np.allclose(given, shuffled['projections'])
  assert set(flax.core.unfreeze(variables['params'])) == {'projector', 'predictor'}


def test_odin_loss_is_detcon_loss_on_the_discovered_masks():
  rng = np.random.default_rng(1)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  online = unit(rng.normal(size=(3, 2, 4, 8))).astype(np.float32)
  target = unit(rng.normal(size=(3, 2, 4, 8))).astype(np.float32)
  valid = rng.random((3, 4)) < 0.7
  valid[0, 0] = True
  got, metrics = odin.loss({'projections': jnp.asarray(online),
                            'target': {'projections': jnp.asarray(target)}},
                           {'mask_valid': jnp.asarray(valid)},
                           _cfg())
  np.testing.assert_allclose(got, references.detcon(online, target, valid, 0.1), rtol=2e-5)
  assert 0 <= float(metrics['accuracy']) <= 1


def _cfg():
  return ml_collections.FrozenConfigDict(odin.DEFAULTS)


def test_odin_gradient_is_finite_and_loss_falls_when_views_agree():
  rng = np.random.default_rng(2)
  unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  target = unit(jnp.asarray(rng.normal(size=(4, 2, 3, 8)), jnp.float32))
  valid = jnp.ones((4, 3), bool)
  f = lambda o: odin.loss({'projections': unit(o), 'target': {'projections': target}},
                          {'mask_valid': valid}, _cfg())[0]
  start = jnp.asarray(rng.normal(size=(4, 2, 3, 8)), jnp.float32)
  grad = jax.grad(f)(start)
  assert bool(jnp.all(jnp.isfinite(grad)))
  # The loss rewards each mask's online vector matching the other view's target vector.
  aligned = target[:, ::-1]
  assert float(f(aligned)) < float(f(start))
  assert float(f(start - 0.5 * grad)) < float(f(start))
