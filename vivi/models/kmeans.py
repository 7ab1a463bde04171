"""Batched k-means on the device: Odin's object discovery (Hénaff et al., ECCV 2022,
section 3) and the object-discovery evaluation (its section 4.4; the slides' "k-means
segmentation of CNN features").

Each image's spatial feature vectors are clustered on their own: points [..., N, D] with the
leading axes as a batch, a fixed number of Lloyd iterations (assign every point to its
nearest centre, move every centre to the mean of its points) so that the whole computation
is one static XLA graph inside the jitted train step, with no host round trip. A centre that
loses all its points stays where it was (scikit-learn would move it to a far point instead;
this never happens with the farthest-point initialisation below until points coincide).

Initialisation is deterministic: farthest-point seeding, the greedy, deterministic relative
of k-means++ (Arthur & Vassilvitskii 2007): the first centre is the point farthest from the
image's mean feature, each next one the point farthest from the centres chosen so far.
Equal points tie to the lowest index, so the result is a function of the features alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def squared_distances(points, centres):
  """[..., N, D] x [..., K, D] -> [..., N, K] squared Euclidean distances."""
  cross = jnp.einsum('...nd,...kd->...nk', points, centres)
  return (jnp.sum(points ** 2, -1)[..., :, None] - 2 * cross
          + jnp.sum(centres ** 2, -1)[..., None, :]).clip(0.0)


def farthest_point_init(points, num_clusters: int):
  """Deterministic seeding: [..., N, D] -> centres [..., K, D] (each one of the points)."""
  mean = jnp.mean(points, axis=-2, keepdims=True)
  first = jnp.argmax(squared_distances(points, mean)[..., 0], axis=-1)       # [...]
  take = lambda i: jnp.take_along_axis(points, i[..., None, None], axis=-2)  # [..., 1, D]
  centres = [take(first)]
  nearest = squared_distances(points, centres[0])[..., 0]                     # [..., N]
  for _ in range(num_clusters - 1):
    nxt = take(jnp.argmax(nearest, axis=-1))
    centres.append(nxt)
    nearest = jnp.minimum(nearest, squared_distances(points, nxt)[..., 0])
  return jnp.concatenate(centres, axis=-2)


def lloyd(points, centres, num_iterations: int):
  """Runs Lloyd's iterations from `centres`; returns (assignments int32 [..., N], centres)."""
  num_clusters = centres.shape[-2]

  def body(_, centres):
    one_hot = jax.nn.one_hot(jnp.argmin(squared_distances(points, centres), -1),
                             num_clusters, dtype=points.dtype)                 # [..., N, K]
    counts = jnp.sum(one_hot, axis=-2)[..., None]                              # [..., K, 1]
    sums = jnp.einsum('...nk,...nd->...kd', one_hot, points)
    return jnp.where(counts > 0, sums / jnp.maximum(counts, 1), centres)

  centres = jax.lax.fori_loop(0, num_iterations, body, centres)
  assignments = jnp.argmin(squared_distances(points, centres), -1).astype(jnp.int32)
  return assignments, centres


def kmeans(points, num_clusters: int, num_iterations: int):
  """k-means of every image's points: [..., N, D] -> (assignments [..., N], centres)."""
  points = points.astype(jnp.float32)
  return lloyd(points, farthest_point_init(points, num_clusters), num_iterations)


def segment_feature_map(feature_map, num_clusters: int, num_iterations: int):
  """Clusters each image's L2-normalised feature columns (cosine k-means, as feature maps
  are clustered for segmentation): [..., h, w, c] -> cluster ids int32 [..., h, w]."""
  *lead, h, w, c = feature_map.shape
  x = feature_map.astype(jnp.float32).reshape(*lead, h * w, c)
  x = x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)
  assignments, _ = kmeans(x, num_clusters, num_iterations)
  return assignments.reshape(*lead, h, w)
