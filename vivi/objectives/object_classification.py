"""Cross-entropy on box representations, an ablation of Romijnders et al.
(Table 1 "Also predict cross entropy"; weight 0.1 from their Figure 7; alone, it is the
"cross-entropy instead of the contrastive loss" variant of section 3).

A linear classifier on each valid box's block-4 feature column predicts the detector's
label with a binary (sigmoid) cross-entropy over the detector's label space, summed over
classes and averaged over valid boxes.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vivi import errors
from vivi.objectives import objective

DEFAULTS = dict(weight=0.1, num_classes=600)  # 600: OpenImages V4, the paper's detector.


class Head(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, features, batch, train):
    if 'box_features' not in features:
      raise ValueError('objective object_classification needs boxes in the batch: set '
                       'input.objects')
    return {'logits': nn.Dense(self.num_classes, name='classifier')(features['box_features'])}


def make_head(cfg) -> nn.Module:
  return Head(num_classes=cfg.num_classes)


def loss(outputs, batch, cfg):
  logits, valid = outputs['logits'], batch['box_valid']
  targets = jax.nn.one_hot(batch['box_labels'], cfg.num_classes)
  per_box = jnp.sum(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets), -1)
  n = jnp.maximum(jnp.sum(valid), 1)
  acc = jnp.sum((jnp.argmax(logits, -1) == batch['box_labels']) & valid) / n
  return jnp.sum(jnp.where(valid, per_box, 0.0)) / n, {'accuracy': acc}


def check_dataset(cfg, manifest, folder: str) -> None:
  """The box classifier has a logit for every detector label of the dataset."""
  if cfg.num_classes < len(manifest.label_map):
    raise errors.ConfigError(
        f'objectives.object_classification.num_classes={cfg.num_classes} but {folder} has '
        f'{len(manifest.label_map)} detector labels')


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames', 'boxes', 'box_labels', 'box_valid'),
    inputs_hint='input.max_boxes > 0 gives them (the vivi sampler)',
    check_dataset=check_dataset)
