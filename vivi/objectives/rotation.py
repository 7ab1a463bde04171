"""Frame-level rotation prediction (Gidaris et al. 2018), VIVI's alternative L_S (VIVI,
section 3.2, approach (i): no explicit shot-level loss).

The input pipeline rotates each frame by a multiple of 90 degrees and stores the multiple in
`batch['rotation']` (see `input.augment`; frame l of a shot gets rotation (l + r) mod 4 for
a random r per shot, so the paper's 4 frames per shot cover all four rotations); a linear
classifier on the pooled representation predicts it with a softmax cross-entropy.
"""

from __future__ import annotations

import flax.linen as nn

from vivi.objectives import losses, objective

DEFAULTS = dict(weight=1.0)


class Head(nn.Module):

  @nn.compact
  def __call__(self, features, batch, train):
    return {'logits': nn.Dense(4, name='classifier')(features['pre_logits'])}


def make_head(cfg) -> nn.Module:
  return Head()


def loss(outputs, batch, cfg):
  if 'rotation' not in batch:
    raise ValueError("objective 'rotation' needs rotated frames: set input.rotate=True")
  return losses.classification(outputs['logits'], batch['rotation'])


OBJECTIVE = objective.Objective(
    defaults=DEFAULTS, make_head=make_head, loss=loss,
    inputs=('frames', 'rotation'), inputs_hint='input.rotate=True gives them (the vivi sampler)')
