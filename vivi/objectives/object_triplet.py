"""The object level L_object of Romijnders et al. (section 3, equation 2).

Box representations are the block-4 feature columns at the detector boxes' centres
(`models/box_features.py`); boxes with the same detector class label are positives, boxes
of other classes negatives, over all valid boxes of the global batch, with FaceNet's
semi-hard negative mining ("to scale the triplet loss to a large number of boxes").
Padded boxes take no part. The representations are L2-normalised as for the frame-level
triplet loss, and the margin (not given in the paper) is the exemplar's 0.5.

The weight is the paper's omega = 5 (equation 3, section 4.1). Also logs the diagnostic of
Table 2: the fraction of boxes whose nearest neighbour in the batch has their class.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vivi.models import heads
from vivi.objectives import losses, objective

DEFAULTS = dict(weight=5.0, margin=0.5)


class Head(nn.Module):

  @nn.compact
  def __call__(self, features, batch, train):
    if 'box_features' not in features:
      raise ValueError('objective object_triplet needs boxes in the batch: set input.objects')
    r = features['box_features']
    return {'embeddings': heads.l2_normalize(r)}


def make_head(cfg) -> nn.Module:
  return Head()


def loss(outputs, batch, cfg):
  e = outputs['embeddings']
  e = e.reshape(-1, e.shape[-1])
  labels, valid = batch['box_labels'].reshape(-1), batch['box_valid'].reshape(-1)
  value, metrics = losses.semihard_triplet_loss(e, labels, cfg.margin, valid)
  metrics['nn_same_class'] = losses.nearest_neighbour_agreement(e, labels, valid)
  metrics['valid_boxes'] = jnp.sum(valid)
  return value, metrics


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames', 'boxes', 'box_labels', 'box_valid'),
    inputs_hint='input.max_boxes > 0 gives them (the vivi sampler)')
