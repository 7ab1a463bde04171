"""Distillation from a classifier's soft labels stored in the records (Romijnders et al.,
Table 1 "Distilling from ImageNet"; weight 1.0 from their Figure 8): a linear
classifier on each frame's pooled representation is trained with the cross-entropy
against the frame's soft labels, -sum_c p_c log q_c, averaged over frames.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivi import errors
from vivi.objectives import objective

DEFAULTS = dict(weight=1.0, num_classes=1000)  # 1000: the ImageNet classifier's labels.


class Head(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, features, batch, train):
    return {'logits': nn.Dense(self.num_classes, name='classifier')(features['pre_logits'])}


def make_head(cfg) -> nn.Module:
  return Head(num_classes=cfg.num_classes)


def loss(outputs, batch, cfg):
  if 'soft_labels' not in batch:
    raise ValueError("objective 'distillation' needs soft labels in the records: the "
                     "dataset's manifest must list a soft_label_map")
  logq = jax.nn.log_softmax(outputs['logits'].astype(jnp.float32), axis=-1)
  p = batch['soft_labels']
  agree = jnp.mean(jnp.argmax(logq, -1) == jnp.argmax(p, -1))
  return jnp.mean(-jnp.sum(p * logq, axis=-1)), {'top1_agreement': agree}


def check_dataset(cfg, manifest, folder: str) -> None:
  """The classifier's soft labels are the dataset's: as many classes as its soft-label map."""
  if cfg.num_classes != len(manifest.soft_label_map):
    raise errors.ConfigError(
        f'objectives.distillation.num_classes={cfg.num_classes} but the soft labels of '
        f'{folder} have {len(manifest.soft_label_map)} classes')


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames', 'soft_labels'),
    inputs_hint='input.soft_labels=True gives them (the vivi sampler)',
    check_dataset=check_dataset)
