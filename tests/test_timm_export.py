"""The timm export (vivi/timm_export.py): an encoder of layout 'timm' loads into timm's own
ResNetV2 with load_state_dict(strict=True) and gives the same features on real images; a
Keras-layout encoder is refused; the Keras layout stays what it was."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from tests import helpers, tfds_data
from vivi import encoder as encoder_api
from vivi import errors, timm_export
from vivi.models import resnet_v2, video_model

FEATURES = ('stem', 'block1', 'block2', 'block3', 'block4', 'pre_logits')
# Agreement asked of every feature: max |ours - timm's| <= TOLERANCE * max |timm's|, i.e.
# relative to the feature's scale (the residual stream reaches hundreds in block 3).
TOLERANCE = 1e-5
SIZE = 64


def _model(depth, norm, **changes):
  model = common.base().model
  model.update(depth=depth, width=0.25 if depth == 14 else 1.0, norm=norm, layout='timm',
               num_groups=8 if depth == 14 else 32, dtype='float32', **changes)
  return model


def _randomised(encoder, seed=0):
  """`encoder` with every BatchNorm statistic, norm scale and norm bias moved away from its
  initial value (so that a swapped or dropped tensor shows), and each residual branch's
  last norm scale (timm's norm3, before conv3) shrunk 10x: at unit scales the random
  50-layer GroupNorm network amplifies float32 rounding so much that timm in float32
  differs from timm in float64 by 2.5e-5 of the feature scale, where trained networks
  (and timm's zero_init_last) keep residual branches small."""
  rng = np.random.default_rng(seed)
  rand = lambda f, x: jnp.asarray(f(x.shape), jnp.float32)

  def param(path, x):
    names = [getattr(p, 'key', '') for p in path]
    if names[-1] == 'kernel':
      return x
    x = x + rand(lambda s: rng.normal(0, 0.2, s), x)
    return x * 0.1 if 'norm2' in names and names[-1] == 'scale' else x

  def stat(path, x):
    if path[-1].key == 'mean':
      return rand(lambda s: rng.normal(0, 0.2, s), x)
    return rand(lambda s: rng.uniform(0.5, 1.5, s), x)

  variables = dict(encoder.variables)
  variables['params'] = jax.tree_util.tree_map_with_path(param, variables['params'])
  if 'batch_stats' in variables:
    variables['batch_stats'] = jax.tree_util.tree_map_with_path(stat, variables['batch_stats'])
  return encoder_api.Encoder(encoder.module, variables, encoder.info)


def _timm_features(path: str, images: np.ndarray, tmp_path) -> dict:
  """timm's features of `images` with the export at `path` loaded strictly, computed by
  tests/timm_features.py in a process of its own (it explains why)."""
  np.save(tmp_path / 'images.npy', images)
  out = subprocess.run(
      [sys.executable, os.path.join(helpers.ROOT, 'tests', 'timm_features.py'), path,
       str(tmp_path / 'images.npy'), str(tmp_path / 'timm.npz')],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  with np.load(tmp_path / 'timm.npz') as f:
    return dict(f)


@pytest.mark.parametrize('depth,norm', [(14, 'batch'), (14, 'group_ws'), (50, 'batch'),
                                        (50, 'group_ws')])
def test_timm_loads_the_export_strictly_and_gives_the_same_features(depth, norm, tmp_path):
  import safetensors

  encoder = _randomised(encoder_api.random_encoder(_model(depth, norm), SIZE, seed=0))
  path = str(tmp_path / 'resnet.safetensors')
  spec = timm_export.export_timm(encoder, path)
  with open(tmp_path / 'resnet.json') as f:
    assert json.load(f) == spec
  with safetensors.safe_open(path, 'np') as f:
    assert json.loads(f.metadata()[timm_export.METADATA_KEY]) == spec
  assert spec['pretrained_cfg']['mean'] == spec['pretrained_cfg']['std'] == [0.5] * 3
  want = {'batch': 'resnetv2_50', 'group_ws': 'resnetv2_50x1_bit'}[norm] if depth == 50 \
      else None   # timm_features.py builds the named model, or ResNetV2 from its kwargs.
  assert spec['model_name'] == want

  images = np.stack(tfds_data.sample_images(2, SIZE))
  ours = jax.tree.map(np.asarray, encoder.features(images))
  theirs = _timm_features(path, images, tmp_path)
  for name in FEATURES:
    assert ours[name].shape == theirs[name].shape, name
    scale = np.abs(theirs[name]).max()
    error = np.abs(ours[name] - theirs[name]).max()
    assert error <= TOLERANCE * scale, (name, error, scale)


def test_batch_norm_statistics_and_layouts_in_the_file(tmp_path):
  """The file holds exactly timm's names: OIHW kernels, BatchNorm's five tensors."""
  import safetensors.numpy
  encoder = _randomised(encoder_api.random_encoder(_model(14, 'batch'), 32, seed=1))
  timm_export.export_timm(encoder, str(tmp_path / 'r.safetensors'))
  tensors = safetensors.numpy.load_file(str(tmp_path / 'r.safetensors'))
  params, stats = encoder.variables['params'], encoder.variables['batch_stats']
  np.testing.assert_array_equal(tensors['stem.conv.weight'],
                                np.transpose(params['stem_conv']['kernel'], (3, 2, 0, 1)))
  shortcut = np.asarray(params['stage2_unit1']['shortcut_conv']['kernel'])[0, 0]   # [in, out]
  np.testing.assert_array_equal(tensors['stages.1.blocks.0.downsample.conv.weight'][:, :, 0, 0],
                                shortcut.T)
  np.testing.assert_array_equal(tensors['stages.2.blocks.0.norm3.running_var'],
                                stats['stage3_unit1']['norm2']['BatchNorm_0']['var'])
  np.testing.assert_array_equal(tensors['norm.weight'],
                                params['post_norm']['BatchNorm_0']['scale'])
  assert tensors['norm.num_batches_tracked'].dtype == np.int64
  assert tensors['norm.num_batches_tracked'].shape == ()
  assert not any('bias' in k and 'norm' not in k for k in tensors)   # No convolution biases.


@pytest.mark.parametrize('changes', [{}, {'stem': 'imagenet', 'downsample': 'stride'}])
def test_a_keras_layout_encoder_is_refused_with_what_to_do(changes, tmp_path):
  model = common.base('tiny').model   # Keras layout, small stem, pooled downsampling.
  model.update(width=0.25, **changes)
  # The module decides (no variables needed): refused before anything is read or written.
  encoder = encoder_api.Encoder(video_model.build_encoder(model), {}, {'model': dict(model)})
  with pytest.raises(ValueError, match=r"timm's ResNet v2 cannot represent this encoder "
                     r"\(model.layout='keras'.*model.layout='timm' .* trains an encoder that "
                     r'it can represent'):
    timm_export.export_timm(encoder, str(tmp_path / 'r.safetensors'))
  assert list(tmp_path.iterdir()) == []


def test_an_unrelated_json_beside_the_file_is_not_overwritten(tmp_path):
  (tmp_path / 'encoder.json').write_text('{"model": {}}')
  with pytest.raises(errors.PathError, match='is not a timm export'):
    timm_export.check_path(str(tmp_path / 'encoder.safetensors'))
  with pytest.raises(errors.PathError, match=r'<name>\.safetensors'):
    timm_export.check_path(str(tmp_path / 'encoder.pt'))


def test_the_keras_layout_is_the_default_and_keeps_its_network():
  """layout='keras' is the default, with its parameters (conv biases included) and its
  outputs bit for bit; the 'timm' layout has no conv biases and strides one unit earlier.
  (tests/models/test_resnet.py pins the Keras layout against Keras' own ResNet50V2.)"""
  assert resnet_v2.ResNetV2().layout == 'keras'
  images = jnp.asarray(np.stack(tfds_data.sample_images(2, 32)), jnp.float32) / 127.5 - 1
  default = resnet_v2.ResNetV2(depth=14, width=0.25)
  keras = resnet_v2.ResNetV2(depth=14, width=0.25, layout='keras')
  timm = resnet_v2.ResNetV2(depth=14, width=0.25, layout='timm')
  out, variables = jax.jit(keras.init_with_output)(jax.random.key(0), images)
  shapes = lambda m: jax.eval_shape(lambda: m.init_with_output(jax.random.key(0), images))
  assert jax.tree.structure(shapes(default)) == jax.tree.structure((out, variables))
  jax.tree.map(np.testing.assert_array_equal, jax.jit(default.apply)(variables, images), out)
  for conv in ('stem_conv', 'stage1_unit1/shortcut_conv', 'stage4_unit1/conv3'):
    node = variables['params']
    for key in conv.split('/'):
      node = node[key]
    assert 'bias' in node, conv
  timm_out, timm_variables = shapes(timm)
  assert not any('bias' in jax.tree_util.keystr(p) and 'conv' in jax.tree_util.keystr(p)
                 for p, _ in jax.tree_util.tree_leaves_with_path(timm_variables['params']))
  sizes = lambda out: [out[f'block{i}'].shape[1] for i in range(1, 5)]
  assert sizes(out) == [4, 2, 1, 1] and sizes(timm_out) == [8, 4, 2, 1]   # At 32 px.


@pytest.mark.parametrize('changes,message', [
    ({'layout': 'torch'}, r"model.layout must be one of \['keras', 'timm'\], got 'torch'"),
    ({'layout': 'timm', 'stem': 'small'}, r"model.layout='timm' is timm's ResNetV2, which has "
     r"the 'imagenet' stem and downsample='stride' only; got model.stem='small'"),
    ({'layout': 'timm', 'downsample': 'pool'}, r"model.downsample='pool'"),
    ({'layout': 'timm', 'width': 0.3}, r'model.width=0.3 gives .* multiple of 1/8'),
])
def test_impossible_timm_layouts_are_clear_errors(changes, message):
  model = resnet_v2.ResNetV2(**{'depth': 14, 'width': 0.25, **changes})
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


def test_write_safetensors_is_read_back_by_safetensors(tmp_path):
  import safetensors
  import safetensors.numpy
  tensors = {'a': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.array(7, np.int64),
             'c': np.zeros((0, 4), np.float32), 'd': np.float32([1.5])}
  path = str(tmp_path / 't.safetensors')
  timm_export.write_safetensors(path, tensors, {'k': 'v'})
  back = safetensors.numpy.load_file(path)
  assert sorted(back) == sorted(tensors)
  for k, v in tensors.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape
    np.testing.assert_array_equal(back[k], v)
  with safetensors.safe_open(path, 'np') as f:
    assert f.metadata() == {'k': 'v'}
  with open(path, 'rb') as f:
    assert int.from_bytes(f.read(8), 'little') % 8 == 0


def test_evaluate_py_exports_an_exported_encoder_for_timm(tmp_path):
  """evaluate.py --encoder=E --export_timm=PATH: the file, its sidecar, the printed line,
  and timm's ResNetV2 (from the sidecar's kwargs) loading it strictly."""
  encoder = encoder_api.random_encoder(_model(14, 'group_ws'), 32, seed=0)
  encoder_api.export_encoder(encoder, str(tmp_path / 'encoder'))
  path = tmp_path / 'out' / 'resnet.safetensors'
  out = subprocess.run(
      [sys.executable, 'evaluate.py', f'--encoder={tmp_path / "encoder"}',
       f'--export_timm={path}'], cwd=helpers.ROOT, capture_output=True, text=True,
      timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'encoder of step 0 exported for timm to {path} and {tmp_path}/out/resnet.json' \
      in out.stdout
  with open(tmp_path / 'out' / 'resnet.json') as f:
    spec = json.load(f)
  assert spec['encoder']['source'] == encoder.info['source']
  images = np.stack(tfds_data.sample_images(2, 32))
  theirs = _timm_features(str(path), images, tmp_path)
  ours = np.asarray(encoder.features(images)['pre_logits'])
  assert np.abs(ours - theirs['pre_logits']).max() <= TOLERANCE * np.abs(ours).max()
