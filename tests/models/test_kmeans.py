"""The on-device k-means (Odin's discovery, the object-discovery evaluation) against
scikit-learn's Lloyd k-means from the same initial centres."""

import jax.numpy as jnp
import numpy as np
from sklearn import cluster

from vivi.models import kmeans


def _blobs(rng, num_images, per_cluster, num_clusters, dim):
  centres = rng.normal(0, 3, (num_images, num_clusters, dim))
  points = centres[:, :, None] + rng.normal(0, 1, (num_images, num_clusters, per_cluster, dim))
  points = points.reshape(num_images, num_clusters * per_cluster, dim)
  order = rng.permutation(points.shape[1])
  return points[:, order].astype(np.float32)


def test_lloyd_equals_scikit_learn_from_the_same_initialisation():
  rng = np.random.default_rng(0)
  points = _blobs(rng, num_images=4, per_cluster=12, num_clusters=5, dim=6)
  init = kmeans.farthest_point_init(jnp.asarray(points), 5)
  ours, centres = kmeans.lloyd(jnp.asarray(points), init, num_iterations=30)
  for b in range(points.shape[0]):
    ref = cluster.KMeans(5, init=np.asarray(init[b]), n_init=1, max_iter=30, tol=0.0,
                         algorithm='lloyd').fit(points[b])
    np.testing.assert_array_equal(np.asarray(ours[b]), ref.labels_)
    np.testing.assert_allclose(np.asarray(centres[b]), ref.cluster_centers_, atol=1e-4)


def test_farthest_point_init_is_deterministic_and_spreads_over_clusters():
  rng = np.random.default_rng(1)
  points = _blobs(rng, num_images=2, per_cluster=10, num_clusters=4, dim=3)
  a = np.asarray(kmeans.farthest_point_init(jnp.asarray(points), 4))
  b = np.asarray(kmeans.farthest_point_init(jnp.asarray(points), 4))
  np.testing.assert_array_equal(a, b)
  # Every seed is one of the points, and the four seeds lie in four different true blobs
  # (labels from scikit-learn's k-means with many restarts).
  for img in range(2):
    truth = cluster.KMeans(4, n_init=10, random_state=0).fit(points[img]).labels_
    index = [int(np.flatnonzero((points[img] == s).all(-1))[0]) for s in a[img]]
    assert len(set(truth[index])) == 4


def test_segment_feature_map_separates_two_regions():
  fmap = np.zeros((1, 4, 4, 8), np.float32)
  fmap[..., 0] = 1.0
  fmap[0, :2, :2] = 0.0
  fmap[0, :2, :2, 1] = 1.0     # the top-left quadrant points elsewhere
  ids = np.asarray(kmeans.segment_feature_map(jnp.asarray(fmap), 2, 5))[0]
  assert len(np.unique(ids[:2, :2])) == 1 and len(np.unique(ids[2:, :])) == 1
  assert ids[0, 0] != ids[3, 3]
