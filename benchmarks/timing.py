"""What the speed benchmarks share: alternating timing, tables, and the Flax sides.

* `alternate` times two or more sides in one run, A, B, A, B, ... (the order rotated each
  round) after a warm-up; `rates` gives each side's median images/s and `ratio` the median
  of the per-round ratios with their min-max spread.
* `ours`: `vivi.models.resnet_v2.ResNetV2`; `PlainResNetV2`: the layout of ours (Keras'
  ResNet50V2, see resnet_v2.py) with every convolution, 1x1 included, an `nn.Conv`: a
  straightforward Flax port.
* `flax_train_step`: one SGD-momentum (0.9) step of encoder + linear classifier with softmax
  cross-entropy on random labels, BatchNorm in train mode, on uint8 images scaled to
  [-1, 1] by `video_model.normalize_images`; `flax_features`: pooled features (BatchNorm in
  inference mode), for feature extraction.

The PyTorch peer is in `benchmarks/torch_resnet.py`. Imported as `from benchmarks import timing`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vivi.models import resnet_v2, video_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # The repository.

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
