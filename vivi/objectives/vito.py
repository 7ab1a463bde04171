"""VITO: multi-scale contrastive attention pooling and multi-view InfoNCE against an EMA
target (Parthasarathy et al. 2023, section 3.1).

Each view l of a video is encoded; at each scale s (the outputs of the last two ResNet
blocks, S=2) a 2-layer attention MLP turns every spatial feature into a logit, the softmax
over positions is the mask m^{l,s}, and h^{l,s} = sum_ij m[i,j] h[i,j] (equation 2). The
pooled vectors of all scales are concatenated and projected by a 2-layer MLP g to z^l.
The target network (f_xi, g_xi) is the train step's EMA of the online one. For every
ordered pair of views i != j of a video (equation 3):

    L^ij = -log( exp(z_on^i . z_tg^j) / (exp(z_on^i . z_tg^j) + sum_n exp(z_on^i . z_tg^n)) )

with the negatives z_tg^n the target projections of every view of the *other* videos of
the global batch; L = sum_{i != j} L^ij, averaged over videos.

Chosen where the paper is silent (it defers to MoCLR [68] and BYOL [61]): projections are
L2-normalised and the dot products divided by a temperature of 0.1 (MoCLR); projector
4096 -> 256 with BatchNorm (BYOL); the attention MLP's hidden width is 512.
`attention=False` replaces attention pooling by global average pooling (VITO's ablation,
Figure B.2), keeping everything else.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vivi.models import heads
from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0, scales=('block3', 'block4'), attention=True, attention_hidden=512,
                projector_hidden=4096, projection_dim=256, temperature=0.1)


class Head(nn.Module):
  scales: tuple[str, ...]
  attention: bool
  attention_hidden: int
  projector_hidden: int
  projection_dim: int

  @nn.compact
  def __call__(self, features, batch, train, target=False):
    pooled, masks = [], {}
    for scale in self.scales:
      fmap = features[scale]                                    # [V, n, h, w, c]
      if self.attention:
        p, masks[scale] = heads.AttentionPool(self.attention_hidden,
                                              name=f'attention_{scale}')(fmap)
      else:
        p = jnp.mean(fmap.astype(jnp.float32), axis=(-3, -2))
      pooled.append(p)
    z = heads.MLP(self.projector_hidden, self.projection_dim, name='projector')(
        jnp.concatenate(pooled, axis=-1), train)
    return {'projections': heads.l2_normalize(z), 'attention_masks': masks}


def make_head(cfg) -> nn.Module:
  return Head(scales=tuple(cfg.scales), attention=cfg.attention,
              attention_hidden=cfg.attention_hidden, projector_hidden=cfg.projector_hidden,
              projection_dim=cfg.projection_dim)


def multi_view_info_nce(online, target, temperature: float):
  """Equation 3 summed over ordered view pairs. online, target: [V, n, d] -> (loss, metrics)."""
  v, n, d = online.shape
  # sim[a, i, b, j] = z_on(video a, view i) . z_tg(video b, view j) / temperature
  sim = jnp.einsum('aid,bjd->aibj', online, target) / temperature
  other_video = ~jnp.eye(v, dtype=bool)[:, None, :, None]                 # [V, 1, V, 1]
  negatives = jnp.where(other_video, sim, -jnp.inf).reshape(v, n, v * n)
  positive = jnp.einsum('aid,ajd->aij', online, target) / temperature     # [V, n(i), n(j)]
  per_pair, beats_negatives = losses.info_nce(positive, negatives)
  off_diagonal = ~jnp.eye(n, dtype=bool)
  loss = jnp.sum(jnp.where(off_diagonal, per_pair, 0.0), axis=(1, 2)).mean()
  top1 = jnp.mean(jnp.where(off_diagonal, beats_negatives, 0.0)) * n / (n - 1)
  return loss, {'accuracy': top1}


def loss(outputs, batch, cfg):
  return multi_view_info_nce(outputs['projections'], outputs['target']['projections'],
                             cfg.temperature)


def has_attention(cfg) -> bool:
  """Attention pooling (section 3.2) is on: the head returns its masks (Figure B.1)."""
  return bool(cfg.attention)


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    target=True, has_attention=has_attention)
