"""VINCE's Multi-Pair NCE with a MoCo memory bank (Gordon et al., ECCV 2020).

The sampler gives each of v videos k anchor images (for the online encoder f) and k
positive images (for the momentum encoder g, the train step's target network). Every anchor
is scored against every positive of its video (k positives: the block-diagonal mask of
Algorithm 1) and against the negatives: the positives of the other videos of the global
batch and the m keys of the memory bank. With cosine similarity s = <f, g> / temperature
(equation 2; the paper's "tau" multiplies, our `temperature` divides), each positive pair
(i, p) contributes

    -log( exp(s_ip) / (exp(s_ip) + sum_{j in negatives(i)} exp(s_ij)) )

(equation 3, Algorithm 1), computed in log-sum-exp form (`losses.info_nce`); the loss is the
mean over the n * k pairs. With k = 1 it is MoCo's InfoNCE (equation 3 with the other keys of
the batch as further negatives, as Algorithm 1 concatenates them).

The memory bank is a ring buffer of the target's embeddings in the train state: each step
writes the batch's n positives' keys over the oldest entries (MoCo; all n keys, since the
paper says nothing of thinning them).

Embedding head (Appendix 1): pooled features -> fc -> LeakyReLU -> fc(64 for ResNet-18,
128 for ResNet-50), L2-normalised. The hidden width is 512 for ResNet-18 (512 x 512); for
ResNet-50 the paper gives no width, we take 2048 (the pooled width, as MoCo v2's head).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivi.models import heads
from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0, hidden=2048, embedding_dim=128, temperature=0.2,
                memory_size=65_536)


class Head(nn.Module):
  hidden: int
  embedding_dim: int

  @nn.compact
  def __call__(self, features, batch, train, target=False):
    mlp = heads.MLP(self.hidden, self.embedding_dim, batch_norm=False,
                    activation='leaky_relu', name='embedding')
    return {'embeddings': heads.l2_normalize(mlp(features['pre_logits'], train))}


def make_head(cfg) -> nn.Module:
  return Head(hidden=cfg.hidden, embedding_dim=cfg.embedding_dim)


def multi_pair_nce(anchors, positives, memory, temperature: float):
  """Algorithm 1. anchors, positives: [v, k, d] (unit norm); memory: [m, d].

  Returns (loss, metrics). `positives` and `memory` carry no gradient (the caller's target).
  """
  v, k, d = anchors.shape
  f = anchors.reshape(v * k, d)
  g = positives.reshape(v * k, d)
  batch_sim = f @ g.T / temperature                                # [n, n]
  memory_sim = f @ memory.T / temperature                          # [n, m]
  video = jnp.arange(v * k) // k
  same_video = video[:, None] == video[None, :]                    # block-diagonal mask
  negatives = jnp.concatenate([jnp.where(same_video, -jnp.inf, batch_sim), memory_sim], axis=1)
  positive = batch_sim.reshape(v * k, v, k)[jnp.arange(v * k), video]   # [n, k]
  per_pair, beats_negatives = losses.info_nce(positive, negatives)
  # Share of pairs whose positive beats every negative.
  accuracy = jnp.mean(beats_negatives)
  return jnp.mean(per_pair), {'accuracy': accuracy,
                              'positive_cosine': jnp.mean(positive) * temperature}


def loss(outputs, batch, cfg):
  anchors = outputs['embeddings']                          # [V, k, D] online f
  positives = outputs['target']['embeddings']              # [V, k, D] momentum encoder g
  return multi_pair_nce(anchors, positives, outputs['memory']['queue'], cfg.temperature)


def init_memory(cfg, rng):
  """A queue of random unit vectors (as MoCo starts) and the write position."""
  queue = heads.l2_normalize(jax.random.normal(rng, (cfg.memory_size, cfg.embedding_dim)))
  return {'queue': queue, 'position': jnp.zeros((), jnp.int32)}


def update_memory(memory, target_outputs, cfg):
  """Writes the batch's keys over the oldest entries of the ring buffer."""
  keys = target_outputs['embeddings']
  keys = keys.reshape(-1, keys.shape[-1])
  n, size = keys.shape[0], memory['queue'].shape[0]
  if n > size:
    raise ValueError(f'objectives.vince.memory_size={size} is smaller than the {n} keys of '
                     'one global batch')
  rows = (memory['position'] + jnp.arange(n)) % size
  return {'queue': memory['queue'].at[rows].set(keys.astype(memory['queue'].dtype)),
          'position': (memory['position'] + n) % size}


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    target=True, init_memory=init_memory, update_memory=update_memory)
