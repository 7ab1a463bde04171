"""The PyTorch peer of the benchmarks: the same pre-activation ResNet v2 in PyTorch eager.

  python -m benchmarks.torch_resnet [--depth 50]

prints the parameter counts of the three encoders (ours, plain Flax, this peer), checks
that they are equal (ResNet-50 v2: 23,519,360), and prints how far plain Flax's and
PyTorch's pooled features are from ours with our weights loaded (64 px images, BatchNorm in
inference and in train mode): the three compute the same function.

* `torch_resnet_v2`: channels-last when the benchmark asks for it, BatchNorm momentum 0.01
  (= Flax's 0.99) and epsilon 1.001e-5.
* `torch_train_step` / `torch_features`: the peer's versions of `timing.flax_train_step`
  and `timing.flax_features`.

PyTorch is imported only by the functions that need it (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import (
  LEARNING_RATE,
  MOMENTUM,
  NUM_CLASSES,
  PlainResNetV2,
  flax_param_count,
  ours,
  random_batch,
  table,
)
from vivi.models import resnet_v2, video_model


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
  print(table([f'encoder (ResNet-{args.depth} v2)', 'parameters'],
              [[k, f'{v:,}'] for k, v in counts.items()]))
  print('\nSame function: max |features - ours| / max |ours|, our weights, 64 px:\n')
  print(table(['side, BatchNorm mode', 'relative difference'],
              [[k, f'{v:.1e}'] for k, v in check_same_function(args.depth).items()]))


if __name__ == '__main__':
  main()
