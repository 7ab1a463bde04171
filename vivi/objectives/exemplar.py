"""Frame/shot-level exemplar loss of VIVI (section 3.2).

Exemplar SSL (Dosovitskiy et al.) scaled with a triplet loss as in [12, 33]: the L frames
sampled from a shot are M consecutive frames each augmented once, so frames of the same
shot are positives and frames of every other shot in the global batch are negatives;
semi-hard negative mining as FaceNet / TF's `triplet_semihard_loss`.

The embedding is a linear map of the pooled representation to `embedding_dim` units,
L2-normalised per frame; `embedding_dim=1000` and `margin=0.5` are the exemplar settings
of Kolesnikov et al. 2019 ([33] in the paper; its public config), which VIVI follows
"using the same protocol as [33]". (That code normalises over the batch axis, which we
take for a slip: FaceNet and TF's loss assume unit-norm embeddings.)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vivi.models import heads
from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0, margin=0.5, embedding_dim=1000)


class Head(nn.Module):
  embedding_dim: int

  @nn.compact
  def __call__(self, features, batch, train):
    e = nn.Dense(self.embedding_dim, name='embedding')(features['pre_logits'])
    return {'embeddings': heads.l2_normalize(e)}


def make_head(cfg) -> nn.Module:
  return Head(embedding_dim=cfg.embedding_dim)


def loss(outputs, batch, cfg):
  e = outputs['embeddings']                      # [V, K, L, E]
  v, k, l = e.shape[:3]
  shot = jnp.repeat(jnp.arange(v * k), l)        # label = global index of the frame's shot
  return losses.semihard_triplet_loss(e.reshape(v * k * l, -1), shot, cfg.margin)


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames',), inputs_hint='the vivi sampler gives them')
