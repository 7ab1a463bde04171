"""Small networks that objectives put on top of the encoder: MLPs, VITO's attention pooling
and DetCon's masked pooling. Pure building blocks; each objective's `Head` wires them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense -> [BatchNorm] -> activation -> Dense: the two-layer projector / predictor of
  MoCo v2, SimCLR and BYOL (BYOL, its section 3.3, normalises the hidden layer)."""
  hidden: int
  out: int
  batch_norm: bool = True
  activation: str = 'relu'    # 'relu' or 'leaky_relu' (VINCE, its Appendix 1)

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    """`mask` (bool, broadcastable to x[..., :1]): the rows that BatchNorm's statistics
    are computed over (e.g. DetCon's valid masks, not its zero padding); all by default."""
    x = nn.Dense(self.hidden, name='hidden')(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.99, name='norm')(
          x, mask=None if mask is None else jnp.broadcast_to(mask, x.shape))
    x = getattr(nn, self.activation)(x)
    return nn.Dense(self.out, name='out')(x)


def l2_normalize(x, axis: int = -1):
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True).clip(1e-12)


class AttentionPool(nn.Module):
  """Contrastive attention pooling (VITO, section 3.1, equation 2).

  A 2-layer MLP maps every spatial feature vector h[i, j] to a logit; the mask is the
  softmax of the logits over all positions, and the pooled vector is sum_ij m[i,j] h[i,j].
  Returns (pooled [..., C], mask [..., H, W]); the mask sums to 1 per image.
  """
  hidden: int

  @nn.compact
  def __call__(self, feature_map):
    *lead, h, w, c = feature_map.shape
    x = feature_map.astype(jnp.float32)
    logits = nn.Dense(1, name='logit')(nn.relu(nn.Dense(self.hidden, name='hidden')(x)))
    mask = jax.nn.softmax(logits.reshape(*lead, h * w), axis=-1)
    pooled = jnp.einsum('...p,...pc->...c', mask, x.reshape(*lead, h * w, c))
    return pooled, mask.reshape(*lead, h, w)


def mask_weights(segments, num_masks: int, grid_hw: tuple[int, int]):
  """Per-mask pooling weights on a feature grid from image-resolution segment maps.

  Args:
    segments: int [..., S, S]; value m in [0, num_masks) marks mask m, -1 marks no mask.
    num_masks: M.
    grid_hw: (h, w) of the feature map; S must be a multiple of both.

  Returns:
    float [..., M, h, w]: the fraction of each feature cell that mask m covers
    (DetCon downsamples its binary masks to the feature grid by average pooling).
  """
  *lead, s_h, s_w = segments.shape
  h, w = grid_hw
  if s_h % h or s_w % w:
    raise ValueError(f'segment maps {s_h}x{s_w} do not tile the {h}x{w} feature grid')
  one_hot = jax.nn.one_hot(segments, num_masks, dtype=jnp.float32)   # -1 -> all zeros
  cells = one_hot.reshape(*lead, h, s_h // h, w, s_w // w, num_masks).mean(axis=(-4, -2))
  return jnp.moveaxis(cells, -1, -3)


def masked_pool(feature_map, weights):
  """Masked average pooling (DetCon): [..., H, W, C] x [..., M, H, W] -> [..., M, C].

  Each mask's vector is the weight-normalised average of the feature columns it covers; a
  mask of zero area gives zeros (it is marked invalid by the sampler anyway).
  """
  total = weights.sum(axis=(-2, -1))
  pooled = jnp.einsum('...mhw,...hwc->...mc', weights, feature_map.astype(jnp.float32))
  return pooled / jnp.maximum(total, 1e-6)[..., None]
