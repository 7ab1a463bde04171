"""An encoder as a PyTorch Image Models (timm) pre-activation ResNet v2: its weights under
timm's state_dict names, in a .safetensors file that timm's `ResNetV2` loads as it is.

  from vivi import encoder, timm_export
  timm_export.export_timm(encoder.load_encoder('/tmp/encoder'), '/tmp/resnet.safetensors')

and in PyTorch (`pip install -e '.[timm]'`):

  import json, safetensors.torch, timm
  spec = json.load(open('/tmp/resnet.json'))
  model = timm.create_model(spec['model_name'], pretrained=False, num_classes=0)
  model.load_state_dict(safetensors.torch.load_file('/tmp/resnet.safetensors'))
  model.eval()   # images: RGB NCHW float in [0, 1], normalised by spec['pretrained_cfg']

in a PyTorch process: PyPI's torch (the build timm's torchvision needs) loads triton, whose
native libraries crash a process that has imported TensorFlow (as vivi's input pipeline
does), so the tests, too, run timm in a process of its own (tests/timm_features.py).

Only an encoder trained with `model.layout='timm'` (vivi/models/resnet_v2.py) exports: the
Keras layout puts each stage's stride in its last unit, whose shortcut subsamples the
identity, a unit that timm's models/resnetv2.py (`PreActBottleneck`, `DownsampleConv`)
cannot express; the 'timm' layout is exactly the network timm builds.

The file. Tensors are timm's `ResNetV2(num_classes=0).state_dict()` (no head): float32
convolution weights in PyTorch's [out, in, kh, kw] layout (our kernels are [kh, kw, in,
out]), BatchNorm's weight, bias, running_mean, running_var (our scale, bias and running
statistics as they are: inference reads them the same way) and num_batches_tracked (int64
0; timm's BatchNorm momentum does not use it), or GroupNorm's weight and bias. It is
written directly in the safetensors format (an 8-byte little-endian header length, a JSON
header of each tensor's dtype, shape and data_offsets, then the raw little-endian bytes), so
the project needs no safetensors package; the tests read it back with safetensors' own
loader. How to build the model it fits, and its input preprocessing, is in the header's
`__metadata__` (key 'vivi_timm', JSON text: the file alone is enough) and, the same, in a
sidecar `<path without .safetensors>.json` to read by eye; both hold `spec` (see
`timm_spec`):
  model_name: timm's registered model where one matches ('resnetv2_50', '_101', '_152' for
    width 1 with BatchNorm; 'resnetv2_50x1_bit', '_50x3_bit', '_101x1_bit', '_101x3_bit',
    '_152x2_bit', '_152x4_bit' for GroupNorm with 32 groups and weight standardisation),
    else null;
  timm_kwargs: the `timm.models.resnetv2.ResNetV2` arguments that build it in any case
    (layers, width_factor, stem_type, conv_layer and norm_layer by name and arguments);
  create_model: the line of Python that builds it;
  pretrained_cfg: mean and std (0.5, 0.5, 0.5): our encoders take uint8 and map it to
    [-1, 1] (vivi/encoder.py INPUT), which is (x / 255 - 0.5) / 0.5;
  features: which timm module gives each of our features.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from vivi import encoder as encoder_api
from vivi import errors
from vivi.models import resnet_v2, video_model

# Marks a sidecar JSON this module wrote (one it may overwrite) and the header metadata.
FORMAT = 'timm ResNetV2 state_dict, safetensors (vivi/timm_export.py)'
METADATA_KEY = 'vivi_timm'
# The timm release the export is tested against (pyproject.toml's 'timm' extra).
TIMM_VERSION = '1.0.31'
# timm's registered pre-activation ResNets (timm's models/resnetv2.py): (depth, width) ->
# name, with BatchNorm (`resnetv2_50` ...: create_conv2d, BatchNormAct2d, stem_type '') and
# with GroupNorm + weight standardisation (BiT: StdConv2d(eps=1e-8), GroupNormAct with 32
# groups, stem_type 'fixed').
TIMM_BN_MODELS = {(50, 1): 'resnetv2_50', (101, 1): 'resnetv2_101', (152, 1): 'resnetv2_152'}
TIMM_BIT_MODELS = {(50, 1): 'resnetv2_50x1_bit', (50, 3): 'resnetv2_50x3_bit',
                   (101, 1): 'resnetv2_101x1_bit', (101, 3): 'resnetv2_101x3_bit',
                   (152, 2): 'resnetv2_152x2_bit', (152, 4): 'resnetv2_152x4_bit'}
# Our feature names -> the timm module whose output each is.
TIMM_FEATURES = {'stem': 'stem (after its max-pool)', 'block1': 'stages[0]',
                 'block2': 'stages[1]', 'block3': 'stages[2]',
                 'block4': 'norm (after stages[3]): forward_features',
                 'pre_logits': 'forward (num_classes=0): the global average of norm'}
# safetensors' dtype names of the dtypes written.
_DTYPES = {np.dtype(np.float32): 'F32', np.dtype(np.int64): 'I64'}
# Our unit's norms and convolutions -> timm's PreActBottleneck's (timm's norm1 is the
# pre-activation; its norm2 and norm3 follow conv1 and conv2).
_UNIT_NAMES = {'preact_norm': 'norm1', 'conv1': 'conv1', 'norm1': 'norm2', 'conv2': 'conv2',
               'norm2': 'norm3', 'conv3': 'conv3', 'shortcut_conv': 'downsample.conv'}


def check_exportable(model: Mapping[str, Any]) -> None:
  """A ConfigError (a ValueError) unless `model` (a `config.model`, or the 'model' of an
  encoder's info) is a network timm's ResNet v2 represents: layout 'timm'."""
  m = {**video_model.MODEL_KEY_DEFAULTS, **dict(model)}
  if m['layout'] != 'timm':
    raise errors.ConfigError(
        f"timm's ResNet v2 cannot represent this encoder (model.layout={m['layout']!r}, "
        f"model.stem={m['stem']!r}, model.downsample={m['downsample']!r}): the Keras layout "
        'downsamples in the last unit of a stage, whose shortcut subsamples the identity, and '
        "no timm unit does that; model.layout='timm' (stem 'imagenet', downsample 'stride') "
        'trains an encoder that it can represent')


def timm_spec(model: Mapping[str, Any]) -> dict:
  """How timm builds the network of `model` (a layout-'timm' `config.model`): its
  registered model name (or None), the `ResNetV2` arguments, and the preprocessing."""
  check_exportable(model)
  m = {**video_model.MODEL_KEY_DEFAULTS, **dict(model)}
  depth, width = m['depth'], float(m['width'])
  width_factor = int(width) if width.is_integer() else width
  if m['norm'] == 'batch':
    name = TIMM_BN_MODELS.get((depth, width_factor))
    conv = {'name': 'timm.layers.create_conv2d'}
    norm = {'name': 'timm.layers.BatchNormAct2d', 'eps': resnet_v2.TIMM_BN_EPSILON}
    stem_type = ''
  else:
    name = TIMM_BIT_MODELS.get((depth, width_factor)) if m['num_groups'] == 32 else None
    conv = {'name': 'timm.layers.StdConv2d', 'eps': resnet_v2.TIMM_WS_EPSILON}
    norm = {'name': 'timm.layers.GroupNormAct', 'num_groups': m['num_groups'], 'eps': 1e-5}
    stem_type = 'fixed'
  kwargs = {'layers': list(resnet_v2.STAGE_SIZES[depth]), 'width_factor': width_factor,
            'stem_type': stem_type, 'conv_layer': conv, 'norm_layer': norm, 'num_classes': 0}
  if name:
    create = f'timm.create_model({name!r}, pretrained=False, num_classes=0)'
  else:
    create = (f"timm.models.resnetv2.ResNetV2(layers={kwargs['layers']}, "
              f'width_factor={width_factor!r}, stem_type={stem_type!r}, '
              f'conv_layer={_python(conv)}, norm_layer={_python(norm)}, num_classes=0)')
  return {
      'format': FORMAT, 'timm_version_tested': TIMM_VERSION, 'model_name': name,
      'timm_kwargs': kwargs, 'create_model': create,
      'pretrained_cfg': {'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5], 'num_classes': 0},
      'input': ('RGB NCHW float32 in [0, 1] normalised with pretrained_cfg mean and std, i.e. '
                f'uint8 / 127.5 - 1, as our encoder takes it ({encoder_api.INPUT})'),
      'features': dict(TIMM_FEATURES),
  }


def _python(layer: Mapping[str, Any]) -> str:
  """{'name': N, k: v, ...} as the Python that makes that layer: N or partial(N, k=v)."""
  args = ', '.join(f'{k}={v!r}' for k, v in layer.items() if k != 'name')
  return f"functools.partial({layer['name']}, {args})" if args else layer['name']


def model_of(module: resnet_v2.ResNetV2) -> dict:
  """The `config.model` keys of the network `module` is (the module, not a record of it,
  decides what is exported)."""
  keys = ('depth', 'width', 'norm', 'num_groups', 'stem', 'stem_stride', 'downsample',
          'layout')
  return {k: getattr(module, k) for k in keys}


def state_dict(variables: Mapping[str, Any], model: Mapping[str, Any]) -> dict:
  """{timm state_dict name: numpy array} of an encoder's variables ({'params'[,
  'batch_stats']}, host or device arrays) of the layout-'timm' network `model`."""
  check_exportable(model)
  params = jax.tree.map(_host, dict(variables['params']))
  stats = jax.tree.map(_host, dict(variables.get('batch_stats') or {}))
  out = {'stem.conv.weight': _conv(params['stem_conv'])}
  for s, units in enumerate(resnet_v2.STAGE_SIZES[model['depth']]):
    for u in range(units):
      ours, theirs = f'stage{s + 1}_unit{u + 1}', f'stages.{s}.blocks.{u}'
      for name, timm_name in _UNIT_NAMES.items():
        if name not in params[ours]:   # Only a stage's first unit has a shortcut conv.
          continue
        if 'conv' in name:
          out[f'{theirs}.{timm_name}.weight'] = _conv(params[ours][name])
        else:
          out.update(_norm(f'{theirs}.{timm_name}', params[ours][name],
                           stats.get(ours, {}).get(name)))
  out.update(_norm('norm', params['post_norm'], stats.get('post_norm')))
  return out


def _host(x) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))


def _conv(p: Mapping[str, np.ndarray]) -> np.ndarray:
  if 'bias' in p:   # Never in the 'timm' layout; a guard against a mislabelled encoder.
    raise ValueError("a convolution with a bias: not a model.layout='timm' encoder")
  return np.ascontiguousarray(np.transpose(p['kernel'], (3, 2, 0, 1)), np.float32)


def _norm(prefix: str, p: Mapping[str, Any], stats: Mapping[str, Any] | None) -> dict:
  (kind, p), = p.items()   # {'BatchNorm_0': ...} or {'GroupNorm_0': ...}
  out = {f'{prefix}.weight': np.asarray(p['scale'], np.float32),
         f'{prefix}.bias': np.asarray(p['bias'], np.float32)}
  if kind.startswith('BatchNorm'):
    s = stats[kind]
    out[f'{prefix}.running_mean'] = np.asarray(s['mean'], np.float32)
    out[f'{prefix}.running_var'] = np.asarray(s['var'], np.float32)
    out[f'{prefix}.num_batches_tracked'] = np.zeros((), np.int64)
  return out


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
  """`tensors` (float32 or int64 numpy arrays) as a .safetensors file at `path`.

  The format (the safetensors project's specification): an unsigned 64-bit little-endian
  length N, N bytes of UTF-8 JSON {name: {'dtype', 'shape', 'data_offsets': [begin, end]},
  '__metadata__': {str: str}} (padded with spaces to a multiple of 8), then the tensors'
  little-endian bytes back to back, offsets counted from the end of the header. Tensors go
  by item size, largest first (then by name), so each starts aligned to its item size.
  """
  arrays = {k: np.asarray(v, order='C') for k, v in tensors.items()}   # 0-d stays 0-d.
  header, chunks, offset = {}, [], 0
  for name in sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k)):
    a = arrays[name]
    if a.dtype not in _DTYPES:
      raise TypeError(f'{name}: dtype {a.dtype} is not one of {sorted(map(str, _DTYPES))}')
    data = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
    header[name] = {'dtype': _DTYPES[a.dtype], 'shape': list(a.shape),
                    'data_offsets': [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
  if metadata:
    header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
  raw = json.dumps(header, separators=(',', ':')).encode()
  raw += b' ' * (-len(raw) % 8)
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(struct.pack('<Q', len(raw)))
    f.write(raw)
    for chunk in chunks:
      f.write(chunk)
  os.replace(tmp, path)


def sidecar_path(path: str) -> str:
  """The JSON written beside `path`: `<path without .safetensors>.json`."""
  return path[:-len('.safetensors')] + '.json'


def check_path(path: str) -> str:
  """`path` as an absolute .safetensors path whose sidecar JSON may be written (it is not a
  JSON that this module did not write, e.g. an exported encoder's encoder.json); a
  PathError otherwise."""
  full = os.path.abspath(os.path.expanduser(path))
  if not full.endswith('.safetensors') or os.path.basename(full) == '.safetensors':
    raise errors.PathError(f'{path}: the timm export is a file named <name>.safetensors')
  if os.path.isdir(full):
    raise errors.PathError(f'{path} is a folder; name the .safetensors file to write')
  side = sidecar_path(full)
  if os.path.exists(side):
    try:
      with open(side) as f:
        ours = json.load(f).get('format') == FORMAT
    except (OSError, ValueError, AttributeError):
      ours = False
    if not ours:
      raise errors.PathError(f'{path}: its sidecar {side} exists and is not a timm export '
                             "of this project's; name the .safetensors file otherwise")
  return full


def export_timm(encoder, path: str) -> dict:
  """Writes `encoder` (a vivi.encoder.Encoder of layout 'timm') as timm's state_dict in the
  .safetensors file `path` and its spec (see the module docstring) in the header and in
  `<path without .safetensors>.json`; returns the spec. A ConfigError (a ValueError) if
  timm's ResNet v2 cannot represent the encoder: model.layout='timm' trains one it can."""
  model = model_of(encoder.module)
  check_exportable(model)
  full = check_path(path)
  spec = timm_spec(model)
  spec['weights'] = os.path.basename(full)
  spec['encoder'] = {k: encoder.info.get(k) for k in ('model', 'source', 'step', 'objectives')}
  tensors = state_dict(encoder.variables, model)   # Every process (a multi-host gather).
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(full), exist_ok=True)
    write_safetensors(full, tensors, {'format': 'pt', METADATA_KEY: json.dumps(spec)})
    with open(sidecar_path(full), 'w') as f:
      json.dump(spec, f, indent=1)
  return spec
