"""ResNet v2: the real ResNet-50 v2 (Keras parity), its variants, and its outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vivi.models import keras_convert, resnet_v2


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _abstract_vars(model, size=64):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


def test_resnet50_parameter_count_equals_keras_resnet50v2():
  # tf.keras.applications.ResNet50V2(include_top=False): 23,519,360 trainable parameters.
  assert _count(_abstract_vars(resnet_v2.ResNetV2(depth=50))['params']) == 23_519_360


def test_group_norm_variant_has_the_same_parameter_count():
  v = _abstract_vars(resnet_v2.ResNetV2(depth=50, norm='group_ws'))
  assert _count(v['params']) == 23_519_360
  assert 'batch_stats' not in v


def test_width_multiplier_scales_parameters_quadratically():
  base = _count(_abstract_vars(resnet_v2.ResNetV2(depth=26))['params'])
  wide = _count(_abstract_vars(resnet_v2.ResNetV2(depth=26, width=3))['params'])
  assert 8.5 < wide / base < 9.0  # Convolutions scale by 9; norms and biases by 3.


@pytest.mark.parametrize('depth', [14, 26, 50, 101, 152])
def test_feature_maps_of_every_stage(depth):
  out = jax.eval_shape(
      lambda: resnet_v2.ResNetV2(depth=depth).init_with_output(
          jax.random.key(0), jnp.zeros((2, 224, 224, 3)))[0])
  assert out['stem'].shape == (2, 56, 56, 64)
  assert out['block1'].shape == (2, 28, 28, 256)
  assert out['block2'].shape == (2, 14, 14, 512)
  assert out['block3'].shape == (2, 7, 7, 1024)
  assert out['block4'].shape == (2, 7, 7, 2048)
  assert out['pre_logits'].shape == (2, 2048)


# (stem, stem_stride, image size) -> spatial size of 'stem', 'block1', ..., 'block4'.
STEM_SIZES = {
    ('imagenet', 1, 48): (12, 6, 3, 2, 2),
    ('imagenet', 1, 64): (16, 8, 4, 2, 2),
    ('imagenet', 1, 224): (56, 28, 14, 7, 7),
    ('small', 1, 48): (48, 24, 12, 6, 6),
    ('small', 1, 64): (64, 32, 16, 8, 8),
    ('small', 1, 224): (224, 112, 56, 28, 28),
    ('small', 2, 48): (24, 12, 6, 3, 3),
    ('small', 2, 64): (32, 16, 8, 4, 4),
    ('small', 2, 224): (112, 56, 28, 14, 14),
}


@pytest.mark.parametrize('stem,stride,size', list(STEM_SIZES))
def test_feature_maps_of_every_stage_for_each_stem(stem, stride, size):
  model = resnet_v2.ResNetV2(depth=14, width=0.5, stem=stem, stem_stride=stride)
  out = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), jnp.zeros((2, size, size, 3)))[0])
  names = ('stem', 'block1', 'block2', 'block3', 'block4')
  channels = (32, 128, 256, 512, 1024)
  for name, s, c in zip(names, STEM_SIZES[stem, stride, size], channels):
    assert out[name].shape == (2, s, s, c), (name, out[name].shape)
  assert out['pre_logits'].shape == (2, 1024)


def test_imagenet_stem_is_the_default_and_keeps_its_parameters():
  assert resnet_v2.ResNetV2().stem == 'imagenet'
  default = _abstract_vars(resnet_v2.ResNetV2(depth=14))
  explicit = _abstract_vars(resnet_v2.ResNetV2(depth=14, stem='imagenet', stem_stride=2))
  assert jax.tree.structure(default) == jax.tree.structure(explicit)
  assert default['params']['stem_conv']['kernel'].shape == (7, 7, 3, 64)
  assert default['params']['stem_conv']['bias'].shape == (64,)


def test_small_stem_is_one_3x3_convolution_with_bias():
  small = _abstract_vars(resnet_v2.ResNetV2(depth=14, stem='small'))['params']
  imagenet = _abstract_vars(resnet_v2.ResNetV2(depth=14))['params']
  assert small['stem_conv']['kernel'].shape == (3, 3, 3, 64)
  assert small['stem_conv']['bias'].shape == (64,)
  assert _count(imagenet) - _count(small) == (49 - 9) * 3 * 64  # Only the stem differs.


def test_unknown_stem_and_stem_stride_are_clear_errors():
  with pytest.raises(ValueError, match=r"model.stem must be one of \['imagenet', 'small'\]"):
    _abstract_vars(resnet_v2.ResNetV2(depth=14, stem='cifar'))
  with pytest.raises(ValueError, match='model.stem_stride'):
    _abstract_vars(resnet_v2.ResNetV2(depth=14, stem='small', stem_stride=4))
  with pytest.raises(ValueError, match=r"model.downsample must be one of \['stride', 'pool'\]"):
    _abstract_vars(resnet_v2.ResNetV2(depth=14, downsample='blur'))


@pytest.mark.parametrize('stem,stride,size', [('small', 2, 64), ('small', 2, 48),
                                              ('imagenet', 1, 48), ('imagenet', 1, 224)])
def test_pooled_downsampling_keeps_the_parameters_and_feature_map_sizes(stem, stride, size):
  """downsample='pool' changes how units of stride 2 halve the map, not what they own or
  the sizes they give (odd maps included: 3x3 -> 2x2 either way)."""
  shapes = {}
  for downsample in resnet_v2.DOWNSAMPLES:
    model = resnet_v2.ResNetV2(depth=14, width=0.25, stem=stem, stem_stride=stride,
                               downsample=downsample)
    out, variables = jax.eval_shape(lambda model=model: model.init_with_output(
        jax.random.key(0), jnp.zeros((2, size, size, 3))))
    shapes[downsample] = (jax.tree.map(lambda x: x.shape, variables),
                          jax.tree.map(lambda x: x.shape, out))
  assert shapes['pool'] == shapes['stride']


class _Identity(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x


def _np_pool(x, reduce):
  """2x2/2 pooling of [n, h, w, c] whose last window on an odd side holds what it has."""
  n, h, w, c = x.shape
  padded = np.full((n, h + h % 2, w + w % 2, c), np.nan)
  padded[:, :h, :w] = x
  windows = padded.reshape(n, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2, c)
  return reduce(windows, axis=(2, 4))


def _np_conv3x3(x, kernel):
  """Stride 1, zero padding 1:
  out[b, i, j] = sum_{di, dj} x[b, i + di - 1, j + dj - 1] k[di, dj]."""
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  return sum(padded[:, di:di + h, dj:dj + w] @ kernel[di, dj]
             for di in range(3) for dj in range(3))


@pytest.mark.parametrize('size,projection', [(6, True), (5, True), (6, False)])
def test_pooled_unit_equals_a_numpy_reference(size, projection):
  """A stride-2 unit with downsample='pool' (norms as the identity, to see the rest):
  shortcut = [conv1x1](avgpool(relu(x)) or avgpool(x)); residual = conv1x1(maxpool(relu(
  conv3x3(relu(conv1x1(relu(x))))))) -- ResNet-D's downsampling (He et al. 2019, 4.1)."""
  filters, channels = 3, 12 if not projection else 5
  unit = resnet_v2.BottleneckUnit(filters=filters, strides=2, projection=projection,
                                  norm=_Identity, conv=resnet_v2.Conv, downsample='pool')
  x = jax.random.normal(jax.random.key(0), (2, size, size, channels))
  params = unit.init(jax.random.key(1), x)['params']
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape) * 0.1,
                        params)   # Non-zero biases.
  got = np.asarray(unit.apply({'params': params}, x))

  p = jax.tree.map(np.asarray, params)
  x = np.asarray(x, np.float64)
  relu = lambda v: np.maximum(v, 0)
  preact = relu(x)
  if projection:
    shortcut = (_np_pool(preact, np.nanmean) @ p['shortcut_conv']['kernel'][0, 0]
                + p['shortcut_conv']['bias'])
  else:
    shortcut = _np_pool(x, np.nanmean)
  y = relu(preact @ p['conv1']['kernel'][0, 0])
  y = _np_pool(relu(_np_conv3x3(y, p['conv2']['kernel'])), np.nanmax)
  want = shortcut + y @ p['conv3']['kernel'][0, 0] + p['conv3']['bias']
  assert got.shape == want.shape == (2, (size + 1) // 2, (size + 1) // 2, 4 * filters)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_unknown_depth_and_norm_are_clear_errors():
  with pytest.raises(ValueError, match='model.depth'):
    _abstract_vars(resnet_v2.ResNetV2(depth=34))
  with pytest.raises(ValueError, match='model.norm'):
    _abstract_vars(resnet_v2.ResNetV2(depth=14, norm='layer'))
  with pytest.raises(ValueError, match='divisible'):
    _abstract_vars(resnet_v2.ResNetV2(depth=14, width=0.25, norm='group_ws'))


def test_weight_standardisation():
  k = jax.random.normal(jax.random.key(0), (3, 3, 8, 4)) * 5 + 2
  s = resnet_v2.standardize(k)
  np.testing.assert_allclose(s.mean(axis=(0, 1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(s.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_group_norm_forward_and_batch_independence():
  model = resnet_v2.ResNetV2(depth=14, width=0.5, norm='group_ws')
  x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3), minval=-1, maxval=1)
  v = model.init(jax.random.key(1), x)
  full = model.apply(v, x, train=True)['pre_logits']
  alone = model.apply(v, x[:1], train=True)['pre_logits']
  np.testing.assert_allclose(full[:1], alone, rtol=1e-4, atol=1e-5)  # No batch statistics.


def test_keras_resnet50v2_conversion_reproduces_outputs():
  tf = pytest.importorskip('tensorflow')
  keras_model = tf.keras.applications.ResNet50V2(include_top=False, weights=None,
                                                 input_shape=(96, 96, 3))
  rng = np.random.default_rng(0)
  # Randomise the BatchNorm statistics too, so the test covers them.
  for layer in keras_model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      g, b, m, v = layer.get_weights()
      layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                         rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
  images = rng.uniform(-1, 1, (3, 96, 96, 3)).astype(np.float32)
  expected = keras_model(images, training=False).numpy()
  variables = keras_convert.from_keras(keras_model, depth=50)
  got = resnet_v2.ResNetV2(depth=50).apply(variables, images)['block4']
  rel = np.abs(np.asarray(got) - expected).max() / np.abs(expected).max()
  assert rel < 1e-4, rel
