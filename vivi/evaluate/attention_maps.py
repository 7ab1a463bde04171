"""VITO's attention masks for a batch of images (Parthasarathy et al., Figure B.1, A.8).

The masks are those of the objective whose declaration says its head pools with attention
(`Objective.has_attention`: VITO's with `attention=True`). `attention_masks` returns each
scale's softmax mask; `saliency` upsamples the masks of all
scales to the image size and averages them, as the paper does to compare with human
saliency; `overlay` draws a saliency map over the images for inspection.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vivi import objectives, train


def attending_objective(config: ml_collections.ConfigDict) -> str | None:
  """The configured objective whose head returns attention masks, if any."""
  for name, cfg in objectives.resolve(config.objectives).items():
    has_attention = objectives.get(name).has_attention
    if has_attention and has_attention(cfg):
      return name
  return None


def attention_masks(config: ml_collections.ConfigDict, variables: dict,
                    images) -> dict[str, np.ndarray]:
  """{scale: [N, h, w]} masks (each sums to 1) of the online network for uint8 [N, S, S, 3];
  `variables` are the model's {'params', 'batch_stats'} (a train state's, or a checkpoint's)."""
  name = attending_objective(config)
  if name is None:
    raise ValueError('attention masks need an objective that pools with attention (vito with '
                     f'attention=True); config has objectives {sorted(config.objectives)}')
  model = train.build_model(config)
  outputs = model.apply(dict(variables), {'frames': jnp.asarray(images)[:, None]}, train=False)
  return {k: np.asarray(v[:, 0]) for k, v in outputs[name]['attention_masks'].items()}


def saliency(masks: dict[str, np.ndarray], image_size: int) -> np.ndarray:
  """[N, S, S] in [0, 1]: every scale's mask resized to the image, averaged, max-normalised."""
  maps = []
  for m in masks.values():
    m = m / m.max(axis=(1, 2), keepdims=True)
    maps.append(jax.image.resize(m, (m.shape[0], image_size, image_size), 'bilinear'))
  out = np.mean(np.stack(maps), axis=0)
  return np.clip(out / out.max(axis=(1, 2), keepdims=True), 0.0, 1.0)


def overlay(images: np.ndarray, saliency_map: np.ndarray, strength: float = 0.7) -> np.ndarray:
  """uint8 images dimmed where the saliency is low: what the attention keeps."""
  weight = (1 - strength) + strength * saliency_map[..., None]
  return np.round(np.asarray(images, np.float32) * weight).astype(np.uint8)
