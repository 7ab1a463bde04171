"""Box representations from a feature grid (Romijnders et al., Figure 3).

A box with centre (i, j) in an H x W image is represented by the feature column of the
H' x W' grid at (floor(i H'/H), floor(j W'/W)): with normalised centres (cy, cx) = (i/H,
j/W), that is (floor(cy H'), floor(cx W')). The paper chose it over RoI pooling for its
cost; the effective receptive field of a column is concentrated at its centre.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def centre_cells(boxes: jax.Array, grid_hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
  """Grid row and column [...] of the centres of normalised boxes [..., 4]."""
  h, w = grid_hw
  cy = (boxes[..., 0] + boxes[..., 2]) / 2
  cx = (boxes[..., 1] + boxes[..., 3]) / 2
  rows = jnp.clip(jnp.floor(cy * h).astype(jnp.int32), 0, h - 1)
  cols = jnp.clip(jnp.floor(cx * w).astype(jnp.int32), 0, w - 1)
  return rows, cols


def gather(feature_map: jax.Array, boxes: jax.Array) -> jax.Array:
  """Feature columns [..., B, C] of `feature_map` [..., H', W', C] at `boxes` [..., B, 4].

  One `take_along_axis` over the flattened grid: no Python loop, and the leading (batch)
  dimensions keep their sharding.
  """
  *lead, h, w, c = feature_map.shape
  rows, cols = centre_cells(boxes, (h, w))
  flat = feature_map.reshape(*lead, h * w, c)
  return jnp.take_along_axis(flat, (rows * w + cols)[..., None], axis=-2)
