"""What the benchmarks share: alternating timing, a plain-Flax ResNet v2 and a PyTorch peer.

  python benchmarks/common.py [--depth 50]

prints the parameter counts of the three pre-activation ResNet v2 encoders (ours,
`vivi.models.resnet_v2.ResNetV2`; plain Flax, built from `nn.Conv` everywhere; the PyTorch
peer), checks that they are equal (ResNet-50 v2: 23,519,360), and prints how far plain
Flax's and PyTorch's pooled features are from ours with our weights loaded (64 px images,
BatchNorm in inference and in train mode): the three compute the same function.

* `alternate` times two or more sides in one run, A, B, A, B, ... (the order rotated each
  round) after a warm-up; `rates` gives each side's median images/s and `ratio` the median
  of the per-round ratios with their min-max spread.
* `PlainResNetV2`: the layout of ours (Keras' ResNet50V2, see resnet_v2.py) with every
  convolution, 1x1 included, an `nn.Conv`: a straightforward Flax port.
* `torch_resnet_v2`: the same network in PyTorch eager (channels-last when the benchmark
  asks for it), BatchNorm momentum 0.01 (= Flax's 0.99) and epsilon 1.001e-5.
* `flax_train_step` / `torch_train_step`: one SGD-momentum (0.9) step of encoder + linear
  classifier with softmax cross-entropy on random labels, BatchNorm in train mode, on uint8
  images scaled to [-1, 1] by `video_model.normalize_images` (or its PyTorch equivalent).
  `*_features`: pooled features (BatchNorm in inference mode), for feature extraction.

PyTorch is imported only by the functions that need it (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from vivi.models import resnet_v2, video_model  # noqa: E402

NUM_CLASSES = 1000
LEARNING_RATE = 0.01
MOMENTUM = 0.9


# ---------------------------------------------------------------------------------------------
# Timing.


def alternate(sides: dict[str, Callable[[], Any]], iters: int,
              warmup: int = 2) -> dict[str, list[float]]:
  """Seconds per call of each side, measured in rounds that alternate the sides.

  Each side is a callable that runs one step and returns once its result is ready. After
  `warmup` calls of every side, `iters` rounds call every side once, the starting side
  rotated each round (A B C, B C A, ...) so no side always follows the same one.
  """
  names = list(sides)
  for _ in range(warmup):
    for name in names:
      sides[name]()
  times = {name: [] for name in names}
  for r in range(iters):
    for i in range(len(names)):
      name = names[(r + i) % len(names)]
      start = time.perf_counter()
      sides[name]()
      times[name].append(time.perf_counter() - start)
  return times


def rates(times: dict[str, list[float]], batch: int) -> dict[str, float]:
  """Median images/s of each side."""
  return {name: batch / statistics.median(t) for name, t in times.items()}


def ratio(times: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
  """Throughput of `a` over `b`: median, min and max of the per-round ratios t_b / t_a."""
  per_round = [tb / ta for ta, tb in zip(times[a], times[b])]
  return statistics.median(per_round), min(per_round), max(per_round)


def format_ratio(r: tuple[float, float, float]) -> str:
  return f'{r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f})'


def table(header: list[str], rows: list[list[Any]]) -> str:
  """A Markdown table with columns padded to their widest cell."""
  cells = [header] + [[str(c) for c in row] for row in rows]
  widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
  line = lambda row: '| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'
  return '\n'.join([line(cells[0]), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
                   + [line(row) for row in cells[1:]])


def machine() -> str:
  import platform
  return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
          f'jax {jax.__version__}, devices {jax.devices()}')


def random_batch(batch: int, image_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [batch, size, size, 3] and integer labels [batch]."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, (batch,)).astype(np.int64)
  return images, labels


# ---------------------------------------------------------------------------------------------
# Plain Flax: the same network with nn.Conv everywhere.


class PlainBottleneckUnit(nn.Module):
  filters: int
  strides: int
  projection: bool

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.99,
                                     epsilon=resnet_v2.BN_EPSILON, name=name)
    s = (self.strides, self.strides)
    preact = nn.relu(norm('preact_norm')(x))
    if self.projection:
      shortcut = nn.Conv(4 * self.filters, (1, 1), s, padding='VALID',
                         name='shortcut_conv')(preact)
    else:
      shortcut = x[:, ::self.strides, ::self.strides, :]
    y = nn.Conv(self.filters, (1, 1), padding='VALID', use_bias=False, name='conv1')(preact)
    y = nn.relu(norm('norm1')(y))
    y = nn.Conv(self.filters, (3, 3), s, padding=((1, 1), (1, 1)), use_bias=False,
                name='conv2')(y)
    y = nn.relu(norm('norm2')(y))
    y = nn.Conv(4 * self.filters, (1, 1), padding='VALID', name='conv3')(y)
    return shortcut + y


class PlainResNetV2(nn.Module):
  """Our ResNet v2 (BatchNorm, width 1) written the straightforward way; returns
  {'pre_logits': [batch, 2048]} like ours."""
  depth: int = 50

  @nn.compact
  def __call__(self, images, train: bool = False):
    x = nn.Conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name='stem_conv')(images)
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')
    for s, units in enumerate(resnet_v2.STAGE_SIZES[self.depth]):
      stride = 1 if s == 3 else 2
      for u in range(units):
        x = PlainBottleneckUnit(64 * 2**s, stride if u == units - 1 else 1, u == 0,
                                name=f'stage{s + 1}_unit{u + 1}')(x, train)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.99,
                             epsilon=resnet_v2.BN_EPSILON, name='post_norm')(x))
    return {'pre_logits': jnp.mean(x, axis=(1, 2))}


def ours(depth: int) -> nn.Module:
  return resnet_v2.ResNetV2(depth=depth, width=1.0, norm='batch')


class Classifier(nn.Module):
  """Encoder on uint8 images (scaled as the project does) + a linear classifier."""
  encoder: nn.Module

  @nn.compact
  def __call__(self, images, train: bool = False):
    features = self.encoder(video_model.normalize_images(images), train)['pre_logits']
    return nn.Dense(NUM_CLASSES, name='head')(features)


def flax_param_count(encoder: nn.Module, image_size: int = 64) -> int:
  shapes = jax.eval_shape(encoder.init, jax.random.key(0),
                          jnp.zeros((1, image_size, image_size, 3), jnp.float32))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


def flax_train_step(encoder: nn.Module, images: np.ndarray, labels: np.ndarray):
  """(run, compiled): `run()` does one step of the compiled, jitted `compiled` (whose
  `cost_analysis()` counts its FLOPs) on the state it keeps, and blocks."""
  model = Classifier(encoder)
  variables = jax.jit(model.init, static_argnames='train')(jax.random.key(0), images[:1])
  tx = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
  params = variables['params']
  state = (params, variables['batch_stats'], tx.init(params))

  def step(state, images, labels):
    params, batch_stats, opt_state = state

    def loss_fn(p):
      logits, mutated = model.apply({'params': p, 'batch_stats': batch_stats}, images,
                                    train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, mutated['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  images, labels = jax.device_put(images), jax.device_put(labels.astype(np.int32))
  jitted = jax.jit(step, donate_argnums=0)
  compiled = jitted.lower(state, images, labels).compile()
  box = [state]

  def run():
    box[0], loss = compiled(box[0], images, labels)
    jax.block_until_ready((box[0], loss))
    return loss

  return run, compiled


def flax_features(encoder: nn.Module, images: np.ndarray):
  """(run, compiled): `run()` computes the pooled features of the batch (BatchNorm in
  inference mode) with the compiled function `compiled`, and blocks."""
  variables = jax.jit(encoder.init)(jax.random.key(0), jnp.zeros((1,) + images.shape[1:]))
  fn = jax.jit(lambda v, x: encoder.apply(v, video_model.normalize_images(x))['pre_logits'])
  images = jax.device_put(images)
  compiled = fn.lower(variables, images).compile()
  return (lambda: compiled(variables, images).block_until_ready()), compiled


def flops(compiled) -> float:
  """FLOPs of a compiled computation by XLA's cost analysis."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):   # Older JAX: one dict per computation.
    cost = cost[0]
  return float(cost['flops'])


# ---------------------------------------------------------------------------------------------
# The PyTorch peer.


def torch_resnet_v2(depth: int = 50, classes: int = 0):
  """Pre-activation bottleneck ResNet v2 in PyTorch, the layout of ours; returns pooled
  features [batch, 2048], or logits with `classes` > 0."""
  import torch
  from torch import nn as tnn
  from torch.nn import functional as F

  bn = lambda c: tnn.BatchNorm2d(c, eps=resnet_v2.BN_EPSILON, momentum=0.01)

  class Unit(tnn.Module):

    def __init__(self, cin, filters, stride, projection):
      super().__init__()
      self.stride = stride
      self.preact_norm = bn(cin)
      self.shortcut_conv = tnn.Conv2d(cin, 4 * filters, 1, stride) if projection else None
      self.conv1 = tnn.Conv2d(cin, filters, 1, bias=False)
      self.norm1 = bn(filters)
      self.conv2 = tnn.Conv2d(filters, filters, 3, stride, padding=1, bias=False)
      self.norm2 = bn(filters)
      self.conv3 = tnn.Conv2d(filters, 4 * filters, 1)

    def forward(self, x):
      preact = F.relu(self.preact_norm(x))
      if self.shortcut_conv is not None:
        shortcut = self.shortcut_conv(preact)
      else:
        shortcut = x[:, :, ::self.stride, ::self.stride]
      y = F.relu(self.norm1(self.conv1(preact)))
      y = F.relu(self.norm2(self.conv2(y)))
      return shortcut + self.conv3(y)

  class Net(tnn.Module):

    def __init__(self):
      super().__init__()
      self.stem_conv = tnn.Conv2d(3, 64, 7, 2, padding=3)
      units, cin = [], 64
      for s, n in enumerate(resnet_v2.STAGE_SIZES[depth]):
        stride = 1 if s == 3 else 2
        for u in range(n):
          units.append(Unit(cin, 64 * 2**s, stride if u == n - 1 else 1, u == 0))
          cin = 4 * 64 * 2**s
      self.units = tnn.Sequential(*units)
      self.post_norm = bn(cin)
      self.head = tnn.Linear(cin, classes) if classes else None

    def forward(self, x):
      x = F.max_pool2d(F.pad(self.stem_conv(x), (1, 1, 1, 1)), 3, 2)
      x = F.relu(self.post_norm(self.units(x)))
      x = torch.mean(x, dim=(2, 3))
      return self.head(x) if self.head is not None else x

  return Net()


def torch_param_count(depth: int) -> int:
  return sum(p.numel() for p in torch_resnet_v2(depth).parameters())


def _torch_setup():
  import torch
  torch.manual_seed(0)
  # XLA:CPU flushes denormals to zero; so does the peer.
  torch.set_flush_denormal(True)
  return torch


def _torch_images(images: np.ndarray, channels_last: bool):
  """uint8 NHWC -> float NCHW in [-1, 1] (as `normalize_images`), channels-last if asked."""
  torch = _torch_setup()
  x = torch.from_numpy(images).permute(0, 3, 1, 2)
  x = x.contiguous(memory_format=torch.channels_last if channels_last
                   else torch.contiguous_format)
  return x


def torch_train_step(depth: int, images: np.ndarray, labels: np.ndarray,
                     channels_last: bool = True) -> Callable[[], Any]:
  """`run()`: one eager SGD-momentum step of the peer (encoder + linear classifier)."""
  torch = _torch_setup()
  from torch.nn import functional as F
  model = torch_resnet_v2(depth, NUM_CLASSES).train()
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=fmt)
  opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
  x_uint8 = _torch_images(images, channels_last)
  y = torch.from_numpy(labels)

  def run():
    opt.zero_grad(set_to_none=True)
    x = x_uint8.float() / 127.5 - 1.0
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

  return run


def torch_features(depth: int, images: np.ndarray,
                   channels_last: bool = True) -> Callable[[], Any]:
  """`run()`: the peer's pooled features, eval mode, under `torch.inference_mode()`."""
  torch = _torch_setup()
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = torch_resnet_v2(depth).eval().to(memory_format=fmt)
  x_uint8 = _torch_images(images, channels_last)

  def run():
    with torch.inference_mode():
      return model(x_uint8.float() / 127.5 - 1.0)

  return run


def param_counts(depth: int, with_torch: bool = True) -> dict[str, int]:
  """Encoder parameter counts (BatchNorm scale and offset included, statistics not); raises
  if they differ."""
  counts = {'ours': flax_param_count(ours(depth)),
            'plain Flax': flax_param_count(PlainResNetV2(depth))}
  if with_torch:
    counts['PyTorch'] = torch_param_count(depth)
  if len(set(counts.values())) != 1:
    raise AssertionError(f'parameter counts differ: {counts}')
  return counts


def _strip_norm(variables):
  """Our variables in plain Flax's layout (ours nests each BatchNorm in a `Norm` module)."""
  from flax import traverse_util
  return {col: traverse_util.unflatten_dict(
      {tuple(k for k in path if k != 'BatchNorm_0'): v
       for path, v in traverse_util.flatten_dict(tree).items()})
          for col, tree in variables.items()}


def load_into_torch(net, variables) -> None:
  """Copies plain-Flax-layout variables into `torch_resnet_v2` (kernels HWIO -> OIHW)."""
  import torch
  from flax import traverse_util
  names = [n for n in variables['params'] if n.startswith('stage')]
  rename = {f'{n}.': f'units.{i}.' for i, n in enumerate(names)}
  state = {}
  for col in ('params', 'batch_stats'):
    for path, v in traverse_util.flatten_dict(variables[col]).items():
      key = '.'.join(path)
      for old, new in rename.items():
        key = key.replace(old, new) if key.startswith(old) else key
      v = np.array(v)
      key = (key.replace('.kernel', '.weight').replace('.scale', '.weight')
             .replace('.mean', '.running_mean').replace('.var', '.running_var'))
      state[key] = torch.from_numpy(v.transpose(3, 2, 0, 1).copy() if v.ndim == 4 else v)
  missing = set(net.state_dict()) - set(state) - {
      k for k in net.state_dict() if k.endswith('num_batches_tracked')}
  if missing:
    raise AssertionError(f'not loaded: {sorted(missing)[:5]}')
  net.load_state_dict(state, strict=False)


def check_same_function(depth: int, image_size: int = 64, batch: int = 2) -> dict[str, float]:
  """Max |difference| of the pooled features of plain Flax and PyTorch against ours, with
  our (randomly initialised) weights, BatchNorm in inference and in train mode."""
  import torch
  images, _ = random_batch(batch, image_size)
  x = video_model.normalize_images(jnp.asarray(images))
  variables = jax.jit(ours(depth).init)(jax.random.key(0), x)
  # Non-trivial statistics, so that inference mode checks them too.
  variables = dict(variables, batch_stats=jax.tree.map(
      lambda v: v + 0.1 * jnp.abs(jax.random.normal(jax.random.key(1), v.shape)),
      variables['batch_stats']))
  plain_vars = _strip_norm(variables)
  net = torch_resnet_v2(depth)
  load_into_torch(net, plain_vars)
  out = {}
  for train in (False, True):
    kw = {'mutable': ['batch_stats']} if train else {}
    ref = ours(depth).apply(variables, x, train, **kw)
    plain = PlainResNetV2(depth).apply(plain_vars, x, train, **kw)
    ref, plain = (ref[0], plain[0]) if train else (ref, plain)
    with torch.no_grad():
      peer = net.train(train)(_torch_images(images, True).float() / 127.5 - 1.0).numpy()
    mode = 'train' if train else 'inference'
    scale = float(jnp.max(jnp.abs(ref['pre_logits'])))
    out[f'plain Flax, {mode}'] = float(jnp.max(jnp.abs(plain['pre_logits'] -
                                                       ref['pre_logits']))) / scale
    out[f'PyTorch, {mode}'] = float(np.max(np.abs(peer - np.asarray(ref['pre_logits'])))) / scale
  return out


def main():
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--depth', type=int, default=50)
  args = parser.parse_args()
  counts = param_counts(args.depth)
  print(table(['encoder (ResNet-%d v2)' % args.depth, 'parameters'],
              [[k, f'{v:,}'] for k, v in counts.items()]))
  print('\nSame function: max |features - ours| / max |ours|, our weights, 64 px:\n')
  print(table(['side, BatchNorm mode', 'relative difference'],
              [[k, f'{v:.1e}'] for k, v in check_same_function(args.depth).items()]))


if __name__ == '__main__':
  main()
