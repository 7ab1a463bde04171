"""DetCon_B: contrastive detection with BYOL's architecture (Hénaff et al., ICCV 2021;
the slides' "DetCon objective").

The sampler gives two augmented views of a frame and, per view, a map of up to M
Felzenszwalb-Huttenlocher segments that follow the view's crop and flip (value m marks
mask m in both views; -1 no mask). Each mask is pooled from the final feature map (masked
average pooling over the feature cells, weighted by how much of each cell the mask covers),
projected (online: projector then predictor; target: projector only, the EMA network), and
L2-normalised. For mask m of image b seen in view a (the slide's loss)

    L = -sum_m log( exp(v_m . v'_m) / (exp(v_m . v'_m) + sum_n exp(v_m . v_n)) )

with v_m the online prediction from view a, v'_m the target projection of the same mask in
the other view, and v_n the target projections (other view) of every other valid mask of
the global batch, of this image and of the others; dot products are divided by a
temperature (0.1 in DetCon). The loss is averaged over valid masks and symmetrised over
the two views. Masks absent from either view take no part.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vivi.models import heads
from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0, projector_hidden=4096, projection_dim=256,
                temperature=0.1)


def mask_projections(fmap, segments, mask_valid, train: bool, target: bool,
                     projector_hidden: int, projection_dim: int):
  """DetCon_B's head given the masks, called inside a compact module (its MLPs are that
  module's 'projector' and 'predictor'): fmap [V, 2, h, w, c], segments [V, 2, S, S],
  mask_valid [V, M] -> unit projections [V, 2, M, d]. Shared with Odin, whose masks are
  discovered by the model instead of given by the sampler."""
  num_masks = mask_valid.shape[-1]
  pooled = heads.masked_pool(fmap, heads.mask_weights(segments, num_masks, fmap.shape[-3:-1]))
  # Padding slots (masks that do not exist in this image) stay out of the projector's and
  # predictor's BatchNorm statistics: they would pull the mean towards the zero vector.
  valid = jnp.broadcast_to(mask_valid[:, None, :, None], pooled.shape[:-1] + (1,))
  mlp = lambda name: heads.MLP(projector_hidden, projection_dim, name=name)
  z = mlp('projector')(pooled, train, mask=valid)
  if not target:   # BYOL's predictor exists on the online side only.
    z = mlp('predictor')(z, train, mask=valid)
  return heads.l2_normalize(z)


class Head(nn.Module):
  projector_hidden: int
  projection_dim: int

  @nn.compact
  def __call__(self, features, batch, train, target=False):
    return {'projections': mask_projections(
        features['block4'], batch['segments'], batch['mask_valid'], train, target,
        self.projector_hidden, self.projection_dim)}


def make_head(cfg) -> nn.Module:
  return Head(projector_hidden=cfg.projector_hidden,
              projection_dim=cfg.projection_dim)


def detcon_loss(online, target, valid, temperature: float):
  """online, target: [V, 2, M, d] (unit norm); valid: [V, M] -> (loss, metrics)."""
  v, _, m, d = online.shape
  terms, hits = [], []
  flat_valid = valid.reshape(v * m)
  for view in (0, 1):
    q = online[:, view].reshape(v * m, d)
    k = target[:, 1 - view].reshape(v * m, d)
    sim = q @ k.T / temperature                                         # [VM, VM]
    positive = jnp.diagonal(sim)[:, None]
    others = ~jnp.eye(v * m, dtype=bool) & flat_valid[None, :]
    term, hit = losses.info_nce(positive, jnp.where(others, sim, -jnp.inf))
    terms.append(term[:, 0])
    hits.append(hit[:, 0])
  count = jnp.maximum(jnp.sum(flat_valid), 1)
  per_mask = (terms[0] + terms[1]) / 2
  loss = jnp.sum(jnp.where(flat_valid, per_mask, 0.0)) / count
  accuracy = jnp.sum(jnp.where(flat_valid, (hits[0] & hits[1]), False)) / count
  return loss, {'accuracy': accuracy, 'valid_masks': jnp.sum(flat_valid) / v}


def loss(outputs, batch, cfg):
  return detcon_loss(outputs['projections'], outputs['target']['projections'],
                     batch['mask_valid'], cfg.temperature)


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames', 'segments', 'mask_valid'),
    inputs_hint="input.masks='fh' or 'whole_image' gives them (input/detcon_sampler.py)",
    target=True)
