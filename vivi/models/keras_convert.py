"""Loads a Keras `ResNet50V2` (or 101V2 / 152V2) into the BatchNorm `ResNetV2`.

This is how a user starts from ImageNet weights they have on disk:

    keras_model = tf.keras.applications.ResNet50V2(include_top=False, weights='/path/w.h5')
    variables = keras_convert.from_keras(keras_model, depth=50)
    features = ResNetV2(depth=50).apply(variables, images)

Keras expects inputs scaled to [-1, 1] (`resnet_v2.preprocess_input`), as does this
codebase's input pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vivi.models import resnet_v2


def _bn(layer) -> tuple[dict, dict]:
  gamma, beta, mean, var = layer.get_weights()
  return {'scale': gamma, 'bias': beta}, {'mean': mean, 'var': var}


def _conv(layer) -> dict:
  weights = layer.get_weights()
  out = {'kernel': weights[0]}
  if len(weights) > 1:
    out['bias'] = weights[1]
  return out


def from_keras(keras_model: Any, depth: int = 50) -> dict[str, Any]:
  """Returns {'params', 'batch_stats'} for `ResNetV2(depth, width=1, norm='batch')`."""
  if depth not in (50, 101, 152):
    raise ValueError(f'Keras ships ResNet{{50,101,152}}V2; got depth={depth}')
  get = keras_model.get_layer
  params: dict[str, Any] = {'stem_conv': _conv(get('conv1_conv'))}
  stats: dict[str, Any] = {}
  for s, units in enumerate(resnet_v2.STAGE_SIZES[depth]):
    for u in range(units):
      k = f'conv{s + 2}_block{u + 1}'
      unit_p, unit_s = {}, {}
      for ours, theirs in (('preact_norm', 'preact_bn'), ('norm1', '1_bn'), ('norm2', '2_bn')):
        p, st = _bn(get(f'{k}_{theirs}'))
        unit_p[ours] = {'BatchNorm_0': p}
        unit_s[ours] = {'BatchNorm_0': st}
      for ours, theirs in (('conv1', '1_conv'), ('conv2', '2_conv'), ('conv3', '3_conv')):
        unit_p[ours] = _conv(get(f'{k}_{theirs}'))
      if u == 0:
        unit_p['shortcut_conv'] = _conv(get(f'{k}_0_conv'))
      params[f'stage{s + 1}_unit{u + 1}'] = unit_p
      stats[f'stage{s + 1}_unit{u + 1}'] = unit_s
  p, st = _bn(get('post_bn'))
  params['post_norm'] = {'BatchNorm_0': p}
  stats['post_norm'] = {'BatchNorm_0': st}
  to_np = lambda tree: {k: to_np(v) if isinstance(v, dict) else np.asarray(v, np.float32)
                        for k, v in tree.items()}
  return {'params': to_np(params), 'batch_stats': to_np(stats)}
