"""Odin: object discovery and representation networks (Hénaff et al., ECCV 2022, arXiv
2203.08777, section 3; the slides' "k-means segmentation of CNN features").

Two networks in a cycle. The *discovery* network is the EMA target: on each training frame
it encodes a discovery view (a large crop, not otherwise augmented; the sampler's
`masks='discovered'`), and k-means clusters each image's feature columns into K segments
(vivi/models/kmeans.py: on the device, inside the jitted step, batched over images, a fixed
number of Lloyd iterations from a deterministic seeding). Those segments, carried through
each training view's crop and flip (the sampler's `cells`), replace the
Felzenszwalb-Huttenlocher masks of DetCon: the *representation* network (online, projector
and predictor) is trained with DetCon_B's loss (vivi/objectives/detcon.py) on them, the
target's projections of the same segments in the other view as positives. As the online
network learns, its moving average, and so the segments, improve: they are recomputed at
every step from the current target (the slides' "virtuous cycle").

The target pass hands the segments to the online pass (outputs['discovered'], merged into
the batch by the train step), so both networks pool under the same masks.

Chosen where the paper is not quoted here (docs: configs/odin.py): the clustered feature is
the discovery view's block-4 map (the map DetCon pools from), L2-normalised per position
(cosine k-means); every one of the K clusters that covers pixels in both views is a mask
(Odin's masks are the clusters; DetCon's sampling of M among more segments is not needed).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vivi.models import kmeans
from vivi.objectives import detcon, objective

DEFAULTS = dict(weight=1.0, num_clusters=8, kmeans_iterations=10, feature='block4',
                projector_hidden=4096, projection_dim=256, temperature=0.1)


def discovered_segments(clusters, cells, side: int, num_clusters: int):
  """The discovery view's clusters seen through each training view.

  Args:
    clusters: int [V, g, g'] cluster id of every feature cell of the discovery view.
    cells: int [V, 2, S, S] discovery-view pixel (row * D + column) under each view
      pixel, -1 outside the discovery crop (the sampler's 'cells').
    side: D, the discovery view's side in pixels.
    num_clusters: K.

  Returns:
    (segments int32 [V, 2, S, S]: the cluster of each view pixel, -1 where none;
    mask_valid bool [V, K]: the cluster covers pixels of both views).
  """
  v, gh, gw = clusters.shape
  row, col = cells // side, cells % side
  cell = (row * gh // side) * gw + col * gw // side         # the feature cell over the pixel
  flat = cell.reshape(v, -1).clip(0)
  ids = jnp.take_along_axis(clusters.reshape(v, gh * gw), flat, axis=1).reshape(cells.shape)
  segments = jnp.where(cells >= 0, ids, -1).astype(jnp.int32)
  present = jnp.any(jax.nn.one_hot(segments, num_clusters, dtype=bool), axis=(-3, -2))
  return segments, jnp.all(present, axis=1)                                 # [V, K]


class Head(nn.Module):
  num_clusters: int
  kmeans_iterations: int
  feature: str
  projector_hidden: int
  projection_dim: int

  @nn.compact
  def __call__(self, features, batch, train, target=False):
    out = {}
    if target:
      clusters = kmeans.segment_feature_map(features['discovery'][self.feature],
                                            self.num_clusters, self.kmeans_iterations)
      segments, valid = discovered_segments(clusters, batch['cells'],
                                            batch['discovery'].shape[-2], self.num_clusters)
      out['discovered'] = {'segments': segments, 'mask_valid': valid}
    else:
      segments, valid = batch['segments'], batch['mask_valid']
    out['projections'] = detcon.mask_projections(
        features['block4'], segments, valid, train, target, self.projector_hidden,
        self.projection_dim)
    return out


def make_head(cfg) -> nn.Module:
  return Head(num_clusters=cfg.num_clusters, kmeans_iterations=cfg.kmeans_iterations,
              feature=cfg.feature, projector_hidden=cfg.projector_hidden,
              projection_dim=cfg.projection_dim)


def target_inputs_spec(cfg, config) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} per video of what the target pass adds to the online batch."""
  s = config.input.image_size
  return {'segments': ((2, s, s), np.int32), 'mask_valid': ((cfg.num_clusters,), bool)}


def loss(outputs, batch, cfg):
  return detcon.detcon_loss(outputs['projections'], outputs['target']['projections'],
                            batch['mask_valid'], cfg.temperature)


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames', 'discovery', 'cells'),
    inputs_hint="input.masks='discovered' gives them (configs/odin.py)", target=True,
    target_encodes=('discovery',), target_inputs_spec=target_inputs_spec)
