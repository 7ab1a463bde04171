"""Co-training with labelled images (VIVI, section 3.1; Romijnders et al., "Headroom
analysis"): a linear classifier on the pooled representation of the labelled images of the
batch, softmax cross-entropy; the total loss is L + gamma * L_supervised,
gamma being this objective's weight (swept by the papers, value not reported).
"""

from __future__ import annotations

import flax.linen as nn

from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0, num_classes=1000)


class Head(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, features, batch, train):
    if 'labelled' not in features:
      raise ValueError("objective 'supervised' needs labelled images: set config.labelled")
    return {'logits': nn.Dense(self.num_classes, name='classifier')(
        features['labelled']['pre_logits'])}


def make_head(cfg) -> nn.Module:
  return Head(num_classes=cfg.num_classes)


def loss(outputs, batch, cfg):
  return losses.classification(outputs['logits'], batch['labels'])


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('images', 'labels'),
    inputs_hint='config.labelled.dataset gives them (co-training, configs/vivi_cotrain.py)')
