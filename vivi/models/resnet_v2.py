"""Pre-activation (v2) bottleneck ResNet (He et al. 2016, "Identity mappings ...").

The default layout ('keras'; see "Layouts" below for timm's) follows
`tf.keras.applications.ResNet50V2` exactly (so that Keras weights load, see
`keras_convert.py`): a 7x7/2 stem convolution with bias and no activation, a 3x3/2
max-pool on the zero-padded stem output, then four stages of bottleneck units. Each unit is

    preact = relu(norm(x))
    shortcut = conv1x1(preact, stride)   for the first unit of a stage (with bias)
             = x[::stride, ::stride]     otherwise
    y = conv1x1(preact) -> norm, relu -> conv3x3(stride) -> norm, relu -> conv1x1 (with bias)
    out = shortcut + y

with the stride on the *last* unit of stages 1-3 (Keras' convention; stage 4 keeps its
resolution, so the output stride is 32). A final norm + relu follows the last stage
(Keras' `post_bn`).

Stems (`ResNetV2.stem`):
  'imagenet' (the default) is the Keras stem above: output stride 4 before the stages, 32
    overall. At 224 px block1..block4 are 28, 14, 7, 7; at 48 px they are 6, 3, 2, 2 and
    at 64 px 8, 4, 2, 2, so on small images blocks 3 and 4 are 2x2 maps.
  'small' is the stem of CIFAR ResNets (He et al. 2016, section 4.2): one 3x3 convolution
    of stride `stem_stride` with bias and no activation (like the Keras stem; the first
    unit's pre-activation follows) and no max-pool, so the output stride is 8 *
    stem_stride. Stride 1: block1..block4 24, 12, 6, 6 at 48 px and 32, 16, 8, 8 at 64 px;
    stride 2: 12, 6, 3, 3 at 48 px and 16, 8, 4, 4 at 64 px.
  Both name their convolution 'stem_conv' (7x7 or 3x3 kernel), so checkpoints and the Keras
  converter see the imagenet stem's parameters unchanged.
Why two stems and two ways to downsample: the tiny configs (configs/common.py) train on
64-px images, where the imagenet stem leaves blocks 3 and 4 as 2x2 maps, too coarse for the
object level's box columns and for object discovery. 'small' with stride 2 gives 4x4 maps
there at about the cost of the imagenet stem at 48 px (stride 1 costs several times more).
The stages' strided downsampling (the stride-2 3x3 convolution and the subsampling 1x1
shortcut) skips pixels, and on the small synthetic shapes an encoder trained with labels
then stays far below a plain CNN; `downsample='pool'` downsamples by pooling instead
(max-pool after the 3x3 convolution, average-pooled shortcut), which closes that gap. The
measurements behind both choices are the tiny-encoder study of projects/synthetic_world/
(tiny_encoder.py).

`norm='batch'` uses BatchNorm over the whole (global, sharded) batch; `norm='group_ws'`
uses GroupNorm with weight-standardised convolutions (Qiao et al. 2019), which VIVI
(VIVI, section 4) and Romijnders et al. (section 4.1) use for co-training.

Layouts (`ResNetV2.layout`):
  'keras' (the default) is everything above. Its stride-2 unit is the last of stages 1-3,
    with an identity shortcut that keeps every other position; timm's ResNetV2 has no such
    unit, so it cannot represent a Keras-layout network.
  'timm' is the pre-activation ResNet v2 that PyTorch Image Models builds (timm's
    models/resnetv2.py: `ResNetV2`, `PreActBottleneck`, `create_resnetv2_stem`,
    `DownsampleConv`), so that a trained encoder exports to timm as it is
    (vivi/timm_export.py). The stride is in the *first* unit of stages 2-4 (its 3x3
    convolution and its 1x1 projection shortcut on the pre-activation), stage 1 keeps the
    stem's resolution, and no convolution has a bias (stem, shortcut, conv3). The stem's
    3x3/2 max-pool pads with -inf for norm='batch' (timm's `resnetv2_50`, PyTorch's
    symmetric MaxPool2d padding) and with zeros for norm='group_ws' (BiT's 'fixed' stem,
    `resnetv2_50x1_bit`). The epsilons are timm's: BatchNorm 1e-5 (`BatchNormAct2d`) and
    weight standardisation 1e-8 (BiT's `StdConv2d(eps=1e-8)`, whose variance is the biased
    one, as `standardize` computes it); GroupNorm keeps 1e-5 (`GroupNormAct`). Channel
    counts must be the ones timm rounds to (multiples of 8: `model.width` a multiple of
    1/8). Only the 'imagenet' stem and downsample='stride' exist in this layout. The
    overall output stride is 32 as in Keras, but block1..block3 are each one stride finer
    (block1 keeps the stem's resolution): at 224 px block1..block4 are 56, 28, 14, 7, at
    64 px 16, 8, 4, 2.
Why two layouts: 'keras' is what every existing checkpoint and the Keras converter rely on
(it stays bit-identical); 'timm' is the one to train for an encoder that PyTorch users load
with `timm.create_model(...)` and `load_state_dict`.

The model returns every stage's feature map: the object level (Romijnders et al.) gathers
feature columns from stage 4, VITO pools the last two stages.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

STAGE_SIZES = {
    14: (1, 1, 1, 1),   # The tiny variant (one unit per stage) for tests and smoke runs.
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
# The stems (`ResNetV2.stem`); see the module docstring.
STEMS = ('imagenet', 'small')
# How units of stride 2 downsample (`BottleneckUnit.downsample`).
DOWNSAMPLES = ('stride', 'pool')
# Normalisations (`Norm.kind`): BatchNorm, or GroupNorm with weight standardisation.
NORMS = ('batch', 'group_ws')
# Keras uses BatchNormalization(epsilon=1.001e-5); the converter relies on matching it.
BN_EPSILON = 1.001e-5
# How units, stem and epsilons are laid out (`ResNetV2.layout`); see the module docstring.
LAYOUTS = ('keras', 'timm')
# timm's epsilons (timm's models/resnetv2.py): BatchNormAct2d's default, and the StdConv2d
# of the BiT models (`_create_resnetv2_bit`: partial(StdConv2d, eps=1e-8)).
TIMM_BN_EPSILON = 1e-5
TIMM_WS_EPSILON = 1e-8
# Weight standardisation's epsilon in the Keras layout (`standardize`'s default).
WS_EPSILON = 1e-5


def timm_channels(value: float, divisor: int = 8) -> int:
  """`value` rounded to a multiple of `divisor` as timm rounds channel counts (timm's
  layers/helpers.py `make_divisible`: to the nearest multiple, at least `divisor`, and one
  multiple up where rounding would lose more than 10%)."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


def standardize(kernel: jax.Array, eps: float = WS_EPSILON) -> jax.Array:
  """Weight standardisation: zero mean, unit variance over each output filter's fan-in.

  The variance is the biased one (divided by the fan-in), as in timm's StdConv2d, which
  normalises the weight with `F.batch_norm(training=True)`; `eps` is added to it.
  """
  axes = tuple(range(kernel.ndim - 1))
  mean = jnp.mean(kernel, axis=axes, keepdims=True)
  var = jnp.var(kernel, axis=axes, keepdims=True)
  return (kernel - mean) * jax.lax.rsqrt(var + eps)


def timm_layout_problem(stem: str, downsample: str, width: float) -> str | None:
  """Why layout='timm' cannot build this network (None if it can): another stem or
  downsampling than timm's ResNetV2 has, or channel counts that timm rounds differently
  (`timm_channels`), so that the network is exactly the one timm builds."""
  if stem != 'imagenet' or downsample != 'stride':
    return (f"model.layout='timm' is timm's ResNetV2, which has the 'imagenet' stem and "
            f"downsample='stride' only; got model.stem={stem!r}, model.downsample="
            f"{downsample!r} (set those, or model.layout='keras', whose stems are "
            f'{list(STEMS)} and downsamplings {list(DOWNSAMPLES)})')
  w = lambda c: int(round(c * width))
  ours = [w(64)] + [c for s in range(4) for c in (w(64 * 2**s), 4 * w(64 * 2**s))]
  theirs = [timm_channels(64 * width)]
  for s in range(4):
    out = timm_channels(256 * 2**s * width)
    theirs += [timm_channels(out * 0.25), out]
  if ours != theirs:
    return (f"model.layout='timm' needs the channel counts timm's ResNetV2 builds "
            f'(multiples of 8); model.width={width!r} gives {ours} where timm has {theirs}: '
            f'use a width that is a multiple of 1/8')
  return None


class Conv(nn.Module):
  """A 2D convolution whose kernel is optionally weight-standardised.

  1x1 convolutions are computed as a matmul over channels (after striding), which is the
  same function with the same parameter shape as `nn.Conv`, but XLA:CPU runs it faster.
  Padding is explicit and symmetric, as Keras' ZeroPadding2D + 'valid' convolution.
  """
  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  use_bias: bool = False
  weight_std: bool = False
  ws_epsilon: float = WS_EPSILON
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    if self.weight_std:
      kernel = standardize(kernel, self.ws_epsilon)
    kernel = kernel.astype(self.dtype)
    x = x.astype(self.dtype)
    if k == 1 and self.padding == 0:
      x = x[:, ::self.strides, ::self.strides, :]
      y = jnp.einsum('bhwc,cd->bhwd', x, kernel[0, 0])
    else:
      p = self.padding
      y = jax.lax.conv_general_dilated(
          x, kernel, window_strides=(self.strides, self.strides),
          padding=((p, p), (p, p)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    return y


class Norm(nn.Module):
  """BatchNorm (statistics over the global batch) or GroupNorm, chosen by name."""
  kind: str = 'batch'
  num_groups: int = 32
  train: bool = False
  zero_init: bool = False
  bn_epsilon: float = BN_EPSILON

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale_init = nn.initializers.zeros if self.zero_init else nn.initializers.ones
    if self.kind == 'batch':
      return nn.BatchNorm(use_running_average=not self.train, momentum=0.99,
                          epsilon=self.bn_epsilon, scale_init=scale_init, dtype=jnp.float32)(x)
    if self.kind == 'group_ws':
      if x.shape[-1] % self.num_groups:
        raise ValueError(f'GroupNorm with {self.num_groups} groups needs channels divisible '
                         f'by it; got {x.shape[-1]} (change model.num_groups or model.width)')
      return nn.GroupNorm(num_groups=self.num_groups, epsilon=1e-5, scale_init=scale_init,
                          dtype=jnp.float32)(x)
    raise ValueError(f'model.norm must be one of {NORMS}, got {self.kind!r}')


class BottleneckUnit(nn.Module):
  """One pre-activation bottleneck unit (see module docstring).

  `downsample` says how a unit of stride 2 halves the resolution: 'stride' (Keras) by the
  3x3 convolution's stride and by keeping every other position in the shortcut; 'pool'
  with the 3x3 convolution at stride 1 followed (after its norm and ReLU) by a 2x2/2
  max-pool, and the shortcut average-pooled 2x2/2 before its 1x1 convolution (ResNet-D, He
  et al. 2019, "Bag of tricks", section 4.1). Same parameters either way.
  `use_bias` gives the shortcut convolution and conv3 biases (Keras) or not (timm).
  """
  filters: int
  strides: int
  projection: bool
  norm: Any
  conv: Any
  downsample: str = 'stride'
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pooled = self.downsample == 'pool' and self.strides > 1
    conv_stride = 1 if pooled else self.strides
    # On an odd-sized map the last window is cut short: it averages (or maxes) the positions
    # it has, not the padding.
    avg_pool = lambda y: nn.avg_pool(y, (2, 2), (2, 2), padding='SAME', count_include_pad=False)
    max_pool = lambda y: nn.max_pool(y, (2, 2), (2, 2), padding='SAME')
    pool = lambda f, y: f(y) if pooled else y
    preact = nn.relu(self.norm(name='preact_norm')(x))
    if self.projection:
      shortcut = self.conv(4 * self.filters, 1, conv_stride, use_bias=self.use_bias,
                           name='shortcut_conv')(pool(avg_pool, preact))
    elif pooled:
      shortcut = avg_pool(x)
    else:
      shortcut = x[:, ::self.strides, ::self.strides, :]
    y = self.conv(self.filters, 1, name='conv1')(preact)
    y = nn.relu(self.norm(name='norm1')(y))
    y = self.conv(self.filters, 3, conv_stride, padding=1, name='conv2')(y)
    y = pool(max_pool, nn.relu(self.norm(name='norm2')(y)))
    y = self.conv(4 * self.filters, 1, use_bias=self.use_bias, name='conv3')(y)
    return shortcut + y


class ResNetV2(nn.Module):
  """Pre-activation bottleneck ResNet returning every stage's feature map.

  Attributes:
    depth: 26, 50, 101, 152, or 14 (one unit per stage: the tiny variant for tests).
    width: width multiplier applied to every convolution (3 for the paper's "3x wider").
    norm: 'batch' or 'group_ws'.
    num_groups: groups of GroupNorm when norm='group_ws'.
    stem: 'imagenet' (7x7/2 convolution + 3x3/2 max-pool, Keras' layout; the default) or
      'small' (one 3x3 convolution of stride `stem_stride`, no max-pool; for small images).
    stem_stride: stride of the 'small' stem's convolution, 1 or 2 (ignored by 'imagenet').
    downsample: 'stride' (Keras; the default) or 'pool' (see `BottleneckUnit`).
    layout: 'keras' (the default) or 'timm' (timm's ResNetV2, which vivi/timm_export.py
      exports; stem 'imagenet' and downsample 'stride' only); see the module docstring.
    dtype: computation dtype (parameters and normalisation stay float32).

  Returns a dict: 'stem' (the stem's output, after the max-pool for 'imagenet'),
  'block1'..'block4' (each stage's output, 'block4' after the final norm + relu, i.e. what
  Keras' ResNet50V2(include_top=False) returns; with layout='timm' timm's stages[0..3]
  outputs, 'block4' after timm's final `norm`), and 'pre_logits' (global average of
  'block4', [batch, 2048 * width]).
  """
  depth: Any = 50
  width: float = 1.0
  norm: str = 'batch'
  num_groups: int = 32
  stem: str = 'imagenet'
  stem_stride: int = 1
  downsample: str = 'stride'
  layout: str = 'keras'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    if self.depth not in STAGE_SIZES:
      raise ValueError(f'model.depth must be one of {list(STAGE_SIZES)}, got {self.depth!r}')
    if self.stem not in STEMS:
      raise ValueError(f'model.stem must be one of {list(STEMS)}, got {self.stem!r}')
    if self.stem == 'small' and self.stem_stride not in (1, 2):
      raise ValueError(f'model.stem_stride must be 1 or 2, got {self.stem_stride!r}')
    if self.downsample not in DOWNSAMPLES:
      raise ValueError(f'model.downsample must be one of {list(DOWNSAMPLES)}, got '
                       f'{self.downsample!r}')
    if self.layout not in LAYOUTS:
      raise ValueError(f'model.layout must be one of {list(LAYOUTS)}, got {self.layout!r}')
    timm = self.layout == 'timm'
    problem = timm and timm_layout_problem(self.stem, self.downsample, self.width)
    if problem:
      raise ValueError(problem)
    w = lambda c: int(round(c * self.width))
    norm = functools.partial(Norm, kind=self.norm, num_groups=self.num_groups, train=train,
                             bn_epsilon=TIMM_BN_EPSILON if timm else BN_EPSILON)
    conv = functools.partial(Conv, weight_std=self.norm == 'group_ws', dtype=self.dtype,
                             ws_epsilon=TIMM_WS_EPSILON if timm else WS_EPSILON)

    if self.stem == 'imagenet':
      x = conv(w(64), 7, 2, padding=3, use_bias=not timm, name='stem_conv')(images)
      if timm and self.norm == 'batch':
        # timm's stem_type '' (resnetv2_50): PyTorch's MaxPool2d(3, 2, padding=1), whose
        # padding is -inf, as Flax's max_pool pads.
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
      else:
        # Keras, and timm's BiT stem_type 'fixed', zero-pad the (un-activated) stem output
        # before max-pooling; so do we.
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')
    else:  # 'small': CIFAR-style, one 3x3 convolution (with bias, no activation), no pool.
      x = conv(w(64), 3, self.stem_stride, padding=1, use_bias=True, name='stem_conv')(images)
    out = {'stem': x}
    for s, units in enumerate(STAGE_SIZES[self.depth]):
      if timm:  # Stride 2 in the first unit of stages 2-4.
        strides = [2 if s > 0 and u == 0 else 1 for u in range(units)]
      else:     # Keras: stride 2 in the last unit of stages 1-3.
        strides = [2 if s < 3 and u == units - 1 else 1 for u in range(units)]
      for u in range(units):
        x = BottleneckUnit(
            filters=w(64 * 2**s), strides=strides[u], projection=u == 0, norm=norm,
            conv=conv, downsample=self.downsample, use_bias=not timm,
            name=f'stage{s + 1}_unit{u + 1}')(x)
      if s == 3:
        x = nn.relu(norm(name='post_norm')(x))
      out[f'block{s + 1}'] = x
    out['pre_logits'] = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return out

