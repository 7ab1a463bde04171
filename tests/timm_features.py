"""timm's features of an exported encoder, in a process of its own.

  python tests/timm_features.py EXPORT.safetensors IMAGES.npy OUT.npz

Builds timm's ResNetV2 as the export's sidecar JSON says (`model_name` through
timm.create_model, else `timm_kwargs`), loads the file with load_state_dict(strict=True),
and writes the stem's, every stage's (block4 after the final norm) and the pooled features
of the uint8 NHWC images, preprocessed as the sidecar's pretrained_cfg says, as NHWC arrays.
A process of its own because PyTorch's CUDA build (the one timm's torchvision needs) loads
triton, whose native libraries crash a process that already holds TensorFlow's and XLA's;
this script imports torch and timm only.
"""

import functools
import json
import sys

import numpy as np
import safetensors.torch
import timm
import torch


def build(spec: dict):
  if spec['model_name']:
    return timm.create_model(spec['model_name'], pretrained=False, num_classes=0)
  kwargs = spec['timm_kwargs']

  def layer(layer_spec):
    fn = getattr(timm.layers, layer_spec['name'].removeprefix('timm.layers.'))
    args = {k: v for k, v in layer_spec.items() if k != 'name'}
    return functools.partial(fn, **args) if args else fn

  return timm.models.resnetv2.ResNetV2(
      layers=kwargs['layers'], width_factor=kwargs['width_factor'],
      stem_type=kwargs['stem_type'], conv_layer=layer(kwargs['conv_layer']),
      norm_layer=layer(kwargs['norm_layer']), num_classes=kwargs['num_classes'])


def features(model, images: np.ndarray, spec: dict) -> dict:
  cfg = spec['pretrained_cfg']
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
  x = (x - torch.tensor(cfg['mean']).view(1, 3, 1, 1)) / torch.tensor(cfg['std']).view(1, 3, 1, 1)
  out = {}
  with torch.no_grad():
    h = out['stem'] = model.stem(x)
    for i, stage in enumerate(model.stages):
      h = out[f'block{i + 1}'] = stage(h)
    out['block4'] = model.norm(h)
    out['pre_logits'] = model(x)   # The whole forward of num_classes=0: pooled features.
  return {k: (v.permute(0, 2, 3, 1) if v.ndim == 4 else v).numpy() for k, v in out.items()}


def main(path: str, images_path: str, out_path: str) -> None:
  with open(path.removesuffix('.safetensors') + '.json') as f:
    spec = json.load(f)
  model = build(spec)
  model.load_state_dict(safetensors.torch.load_file(path), strict=True)
  model.eval()
  np.savez(out_path, **features(model, np.load(images_path), spec))


if __name__ == '__main__':
  main(*sys.argv[1:])
