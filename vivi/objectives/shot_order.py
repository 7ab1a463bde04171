"""Video-level shot-order prediction (VIVI, section 3.3): the order of a video's shot
embeddings is reversed with probability 1/2 and an MLP with one hidden layer of 512 units
(section 4) predicts from the concatenated embeddings whether it was; cross-entropy loss.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0, hidden=512)


class Head(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, features, batch, train):
    e = features['shot_embeddings']                                     # [V, K, D]
    reversed_ = jax.random.bernoulli(self.make_rng('objective'), 0.5, (e.shape[0],))
    e = jnp.where(reversed_[:, None, None], e[:, ::-1], e)
    x = nn.relu(nn.Dense(self.hidden, name='hidden')(e.reshape(e.shape[0], -1)))
    return {'logits': nn.Dense(2, name='classifier')(x), 'labels': reversed_.astype(jnp.int32)}


def make_head(cfg) -> nn.Module:
  return Head(hidden=cfg.hidden)


def loss(outputs, batch, cfg):
  return losses.classification(outputs['logits'], outputs['labels'])


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames',), inputs_hint='the vivi sampler gives them')
