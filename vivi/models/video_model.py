"""The whole trainable network: the ResNet v2 encoder applied to every frame, plus the heads
of the configured objectives.

Frames arrive as uint8 [V, K, L, H, W, 3] (videos, shots, frames) or any other leading
layout; the encoder sees them as one batch of images and every feature is returned with the
leading layout restored, e.g. features['block4'] is [V, K, L, h, w, c]. With three leading
dims, features['shot_embeddings'] [V, K, D] is the average of each shot's frame
representations (VIVI's parameter-free average pooling p, its section 4).

When the batch carries detector boxes [V, K, L, B, 4], features['box_features']
[V, K, L, B, C] are the block-4 feature columns at the box centres (Romijnders et al.,
Figure 3);
when it carries labelled images (co-training), features['labelled'] holds their features;
the target network also encodes the batch keys in `target_encodes` (the objectives'
declarations: Odin's discovery view) into features of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vivi.models import box_features, resnet_v2

# `config.model` keys added after checkpoints were written, with the value those checkpoints
# implicitly had (an old encoder.json or training config without them means this).
MODEL_KEY_DEFAULTS = {'stem': 'imagenet', 'stem_stride': 1, 'downsample': 'stride',
                      'layout': 'keras'}


def build_encoder(model: Mapping[str, Any]) -> resnet_v2.ResNetV2:
  """The ResNet v2 of `config.model` (or of the 'model' dict an encoder.json holds): the one
  place an encoder is built from a config, for training, restoring and fine-tuning."""
  m = {**MODEL_KEY_DEFAULTS, **dict(model)}
  return resnet_v2.ResNetV2(depth=m['depth'], width=m['width'], norm=m['norm'],
                            num_groups=m['num_groups'], stem=m['stem'],
                            stem_stride=m['stem_stride'], downsample=m['downsample'],
                            layout=m['layout'], dtype=jnp.dtype(m['dtype']))


def normalize_images(images):
  """uint8 [0, 255] -> float [-1, 1], the range Keras' ResNetV2 weights expect."""
  return images.astype(jnp.float32) / 127.5 - 1.0


class VideoModel(nn.Module):
  """Encoder + objective heads.

  Called with `target=True` (by the train step, with the EMA target network's variables)
  only the heads in `target_heads` run, each with `target=True` (e.g. DetCon's target has a
  projector but no predictor).
  """
  encoder: resnet_v2.ResNetV2
  heads: dict[str, Any]
  target_heads: tuple[str, ...] = ()
  target_encodes: tuple[str, ...] = ()

  def __call__(self, batch: dict, train: bool = False, target: bool = False) -> dict:
    # No 'frames' when the run has labelled images only (input.sampler='none').
    features = self.encode(batch['frames'], train) if 'frames' in batch else {}
    if 'boxes' in batch:
      features['box_features'] = box_features.gather(features['block4'], batch['boxes'])
    if 'images' in batch and not target:
      features['labelled'] = self.encode(batch['images'], train)
    for key in self.target_encodes if target else ():
      features[key] = self.encode(batch[key], train)
    outputs = {'features': features}
    for name, head in self.heads.items():
      if target and name in self.target_heads:
        outputs[name] = head(features, batch, train, target=True)
      elif not target:
        outputs[name] = head(features, batch, train)
    return outputs

  def encode(self, frames, train: bool = False) -> dict:
    lead = frames.shape[:-3]
    feats = self.encoder(normalize_images(frames.reshape((-1,) + frames.shape[-3:])), train)
    feats = {k: v.reshape(lead + v.shape[1:]) for k, v in feats.items()}
    if len(lead) == 3:
      feats['shot_embeddings'] = jnp.mean(feats['pre_logits'], axis=2)
    return feats
