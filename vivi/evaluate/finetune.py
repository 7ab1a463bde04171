"""Fine-tuning a whole encoder plus a new linear head for image classification (VTAB-1k).

VTAB's transfer step (Zhai et al. 2019, arXiv:1910.04867; VIVI section 4 evaluates with it):
the pretrained encoder and a freshly initialised linear classifier on its pooled features
('pre_logits') are trained together, end to end, with SGD (momentum 0.9) on the task's
few labelled images; the learning rate is divided by 10 every `decay_every` steps. The head
starts at zero (so the first logits are all zero and the first gradients reach the encoder
only through the head's update). BatchNorm runs in train mode (batch statistics, running
averages updated) while fine-tuning and in inference mode for `accuracy`; GroupNorm
encoders (norm='group_ws') have no statistics and work the same way.

What we chose (and `vtab.py` documents per task):
  * Augmentation `augment`: 'none' is what VTAB's public adaptation code does (its data
    loader only resizes to 224 x 224). The light alternatives are 'flip' (random left-right
    flip), 'crop' (pad S/8 pixels of black on every side, random S x S crop: a random shift
    of up to S/8) and 'crop_flip' (both). They run on the device inside the train step.
    Flips and shifts change the label of some tasks (positions, orientations), so `vtab.py`
    gives each task a default that preserves its labels.
  * Batches: examples are drawn without replacement within an epoch, epochs follow each
    other without a gap (a batch may straddle two epochs), all from a seeded numpy stream.
    The few-shot set is placed on the devices once (replicated, uint8) and each step
    gathers its batch there, so steps move only the batch's indices.
  * No weight decay by default (VTAB's lightweight sweep tunes only learning rate and
    schedule); `weight_decay` adds coupled L2 on kernels if wanted.
  * `recalibrate_batch_stats` (off by default, i.e. VTAB's behaviour): BatchNorm's running
    averages (momentum 0.99 in `resnet_v2`) forget their starting values over a few hundred
    steps, which VTAB's 2,500-10,000 steps give them but a run scaled down to a few dozen
    steps does not: inference would then use statistics of the pretrained (or initial)
    network. With the option on, after the last step every BatchNorm's mean and variance
    are re-estimated as the average of the batch statistics over the (unaugmented) training
    set with the final weights ("precise BN"). It is meant for scaled-down runs.

Sharding follows the train step (`parallel.py`): params replicated, the batch (its indices,
hence its images) sharded over the mesh's 'data' axis, so BatchNorm statistics are over the
global batch. Every process holds the whole (small) task in memory and draws the same
indices. The compiled step and predictor are cached per (encoder, classes, mesh, ...), so
the sweep's runs reuse one compilation: learning rate and decay interval are traced values.

Variables of the fine-tuned classifier:
  {'params': {'encoder': ..., 'head': {'kernel', 'bias'}},
   'batch_stats': {'encoder': ...}}   # 'batch_stats' only when the encoder has BatchNorm
`encoder_variables` returns the encoder's part in the encoder's own layout.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vivi import parallel
from vivi.models import video_model

AUGMENTATIONS = ('none', 'flip', 'crop', 'crop_flip')
DECAY_FACTOR = 0.1  # VTAB: the learning rate drops 10x at every decay point.


class Classifier(nn.Module):
  """uint8 images [N, S, S, 3] -> logits [N, num_classes]: encoder, then a zero-initialised
  linear head on its 'pre_logits'."""
  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    features = self.encoder(video_model.normalize_images(images), train=train)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.zeros, dtype=jnp.float32,
                    name='head')(features['pre_logits'].astype(jnp.float32))


def augment_batch(images: jax.Array, rng: jax.Array, mode: str) -> jax.Array:
  """The light augmentation `mode` (see the module docstring) of uint8 images [B, S, S, 3]."""
  if mode not in AUGMENTATIONS:
    raise ValueError(f'augment must be one of {AUGMENTATIONS}, got {mode!r}')
  batch, height, width, channels = images.shape
  crop_rng, flip_rng = jax.random.split(rng)
  if mode in ('crop', 'crop_flip'):
    ph, pw = max(1, height // 8), max(1, width // 8)
    padded = jnp.pad(images, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    dy = jax.random.randint(crop_rng, (batch,), 0, 2 * ph + 1)
    dx = jax.random.randint(jax.random.fold_in(crop_rng, 1), (batch,), 0, 2 * pw + 1)
    images = jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(
        im, (y, x, 0), (height, width, channels)))(padded, dy, dx)
  if mode in ('flip', 'crop_flip'):
    flip = jax.random.bernoulli(flip_rng, 0.5, (batch,))
    images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
  return images


def classifier_variables(encoder: nn.Module, variables: dict, num_classes: int,
                         image_size: int = 32) -> dict:
  """The classifier's variables: the encoder's `variables` ({'params'} and, with
  BatchNorm, {'batch_stats'}) plus a zero head sized from the encoder's 'pre_logits'."""
  if 'params' not in variables:
    raise ValueError(f"encoder variables need 'params'; got keys {sorted(variables)}")
  enc = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  out = jax.eval_shape(lambda v: encoder.apply(v, jnp.zeros((1, image_size, image_size, 3)),
                                               train=False), enc)
  dim = out['pre_logits'].shape[-1]
  head = {'kernel': jnp.zeros((dim, num_classes), jnp.float32),
          'bias': jnp.zeros((num_classes,), jnp.float32)}
  result = {'params': {'encoder': enc['params'], 'head': head}}
  if enc.get('batch_stats'):
    result['batch_stats'] = {'encoder': enc['batch_stats']}
  return result


def encoder_variables(variables: dict) -> dict:
  """The encoder's part of classifier variables, in the encoder's own layout."""
  out = {'params': variables['params']['encoder']}
  if variables.get('batch_stats'):
    out['batch_stats'] = variables['batch_stats']['encoder']
  return out


def batch_indices(num_examples: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
  """Endless batches of indices: seeded epochs of permutations, read back to back."""
  rng = np.random.default_rng(seed)
  buffer = np.zeros((0,), np.int64)
  while True:
    while len(buffer) < batch_size:
      buffer = np.concatenate([buffer, rng.permutation(num_examples)])
    yield buffer[:batch_size]
    buffer = buffer[batch_size:]


def _kernel_mask(params):
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


def _optimizer(momentum: float, weight_decay: float) -> optax.GradientTransformation:
  # The learning rate is applied in the step (a traced value, so one compilation serves
  # every setting of the sweep).
  parts = [optax.add_decayed_weights(weight_decay, mask=_kernel_mask)] if weight_decay else []
  return optax.chain(*parts, optax.trace(decay=momentum))


@functools.lru_cache(maxsize=16)
def _compiled_step(model: Classifier, mesh, augment: str, momentum: float,
                   weight_decay: float):
  tx = _optimizer(momentum, weight_decay)

  def step(state, data_images, data_labels, indices, rng, learning_rate, decay_every):
    images = augment_batch(data_images[indices], jax.random.fold_in(rng, state['step']),
                           augment)
    labels = data_labels[indices]

    def loss_fn(params):
      variables = {'params': params}
      if state['batch_stats']:
        variables['batch_stats'] = state['batch_stats']
      logits, mutated = model.apply(variables, images, train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, (mutated.get('batch_stats', {}), logits)

    (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    lr = learning_rate * DECAY_FACTOR ** (state['step'] // decay_every).astype(jnp.float32)
    params = jax.tree.map(lambda p, u: p - lr * u, state['params'], updates)
    metrics = {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels),
               'learning_rate': lr}
    new_state = {'step': state['step'] + 1, 'params': params,
                 'batch_stats': batch_stats if state['batch_stats'] else {},
                 'opt_state': opt_state}
    return new_state, metrics

  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  jitted = jax.jit(step, in_shardings=(rep, rep, rep, shard, rep, rep, rep),
                   out_shardings=(rep, rep))
  return jitted, tx


def _check(images, labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  images, labels = np.asarray(images), np.asarray(labels)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f'images must be uint8 [N, S, S, 3], got {images.dtype} {images.shape}')
  if labels.shape != (len(images),):
    raise ValueError(f'labels must be [N={len(images)}], got shape {labels.shape}')
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must lie in [0, {num_classes}), got '
                     f'[{labels.min()}, {labels.max()}]')
  return images, labels.astype(np.int32)


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
  """x with zero rows appended up to a multiple of `multiple` rows: the sweep's 800- and
  1000-example sets then share one shape, hence one compilation."""
  pad = -len(x) % multiple
  return np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x


@functools.lru_cache(maxsize=16)
def _compiled_moments(model: Classifier, mesh):
  """Batch statistics of every BatchNorm on one batch, whatever the layers' momentum m.

  One train-mode pass from running averages R gives m * R + (1 - m) * s for the batch
  statistic s: from R = 0 it is (1 - m) * s, from R = 1 it is m + (1 - m) * s, so the
  difference is m and s follows.
  """
  def moments(params, batch_stats, data_images, indices):
    images = data_images[indices]
    run = lambda init: model.apply({'params': params, 'batch_stats': init}, images,
                                   train=True, mutable=['batch_stats'])[1]['batch_stats']
    from_zeros = run(jax.tree.map(jnp.zeros_like, batch_stats))
    from_ones = run(jax.tree.map(jnp.ones_like, batch_stats))
    return jax.tree.map(lambda a, b: a / (1.0 - (b - a)), from_zeros, from_ones)

  rep = parallel.replicated(mesh)
  return jax.jit(moments, in_shardings=(rep, rep, rep, parallel.batch_sharded(mesh)),
                 out_shardings=rep)


def _recalibrated(model, mesh, params, batch_stats, data_images, num_examples: int,
                  batch_size: int, seed: int):
  """The average batch statistics over the training set (see `recalibrate_batch_stats`)."""
  fn = _compiled_moments(model, mesh)
  order = np.random.default_rng([seed, 1]).permutation(num_examples)
  num_batches = max(1, num_examples // batch_size)
  total = None
  for b in range(num_batches):
    idx = np.resize(order[b * batch_size:(b + 1) * batch_size], batch_size).astype(np.int32)
    stats = fn(params, batch_stats, data_images,
               jax.device_put(idx, parallel.batch_sharded(mesh)))
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
  return jax.tree.map(lambda t: t / num_batches, total)


def finetune(encoder: nn.Module, variables: dict, images, labels, num_classes: int, *,
             learning_rate: float, steps: int, decay_every: int, batch_size: int = 512,
             seed: int = 0, mesh=None, augment: str = 'none', momentum: float = 0.9,
             weight_decay: float = 0.0, recalibrate_batch_stats: bool = False,
             log_every: int = 0) -> dict:
  """Fine-tunes `encoder` (with `variables`) and a new zero head on (images, labels).

  Args:
    encoder: a module mapping float images in [-1, 1] [N, S, S, 3] to a dict with
      'pre_logits' [N, D] (e.g. `resnet_v2.ResNetV2`), called with `train=`.
    variables: the encoder's {'params'[, 'batch_stats']}; or classifier variables (with
      a 'head') to continue training those.
    images, labels: uint8 [N, S, S, 3] and ints [N] in [0, num_classes).
    num_classes: the head's outputs.
    learning_rate, steps, decay_every: SGD's initial rate, number of steps, and the
      interval after which it is multiplied by 0.1 (steps >= 0, decay_every >= 1).
    batch_size: global batch (VTAB: 512); divisible by the mesh's devices.
    seed: batch order and augmentation.
    mesh: `parallel.make_mesh()` by default.
    augment: one of AUGMENTATIONS (module docstring).
    momentum, weight_decay: SGD momentum; coupled L2 on kernels (0: none).
    recalibrate_batch_stats: re-estimate BatchNorm statistics at the end (module
      docstring); no effect on encoders without BatchNorm.
    log_every: print loss / train-batch accuracy every this many steps (0: never).

  Returns:
    The classifier's variables (module docstring), replicated over the mesh.
  """
  if steps < 0 or decay_every < 1:
    raise ValueError(f'need steps >= 0 and decay_every >= 1, got {steps}, {decay_every}')
  mesh = mesh or parallel.make_mesh()
  parallel.check_batch_size(batch_size, mesh, 'batch_size')
  images, labels = _check(images, labels, num_classes)
  if not len(images):
    raise ValueError('finetune needs at least one example')
  model = Classifier(encoder=encoder, num_classes=num_classes)
  if 'head' in variables.get('params', {}):
    init = variables
  else:
    init = classifier_variables(encoder, variables, num_classes, images.shape[1])
  step_fn, tx = _compiled_step(model, mesh, augment, float(momentum), float(weight_decay))
  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = {'step': jnp.zeros((), jnp.int32), 'params': init['params'],
           'batch_stats': init.get('batch_stats', {}),
           'opt_state': tx.init(init['params'])}
  state = jax.device_put(state, rep)
  data_images, data_labels = jax.device_put(
      (_pad_rows(images, 1024), _pad_rows(labels, 1024)), rep)
  rng = jax.device_put(jax.random.key(seed), rep)
  lr = jax.device_put(jnp.float32(learning_rate), rep)
  decay = jax.device_put(jnp.int32(decay_every), rep)
  order = batch_indices(len(images), batch_size, seed)
  for i in range(steps):
    indices = jax.device_put(next(order).astype(np.int32), shard)
    state, metrics = step_fn(state, data_images, data_labels, indices, rng, lr, decay)
    if log_every and ((i + 1) % log_every == 0 or i + 1 == steps):
      m = jax.device_get(metrics)
      print(f'finetune step {i + 1}/{steps}: loss {m["loss"]:.4f} batch accuracy '
            f'{m["accuracy"]:.3f} lr {m["learning_rate"]:.2g}', flush=True)
  out = {'params': state['params']}
  if state['batch_stats']:
    out['batch_stats'] = state['batch_stats']
    if recalibrate_batch_stats:
      out['batch_stats'] = _recalibrated(model, mesh, state['params'], state['batch_stats'],
                                         data_images, len(images), batch_size, seed)
  return out


@functools.lru_cache(maxsize=16)
def _compiled_predict(model: Classifier, mesh):
  def predict(variables, images):
    return jnp.argmax(model.apply(variables, images, train=False), -1).astype(jnp.int32)
  # Predictions gathered whole on every device: every process reads them (jit_encoder).
  return jax.jit(predict, in_shardings=(parallel.replicated(mesh),
                                        parallel.batch_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh))


def predict(encoder: nn.Module, variables: dict, images, mesh=None,
            batch_size: int = 256) -> np.ndarray:
  """Predicted classes [N] of uint8 images [N, S, S, 3] (BatchNorm in inference mode).
  Every batch is padded to `batch_size` (rounded to the devices), so one compilation
  serves any N."""
  mesh = mesh or parallel.make_mesh()
  images = np.asarray(images)
  num_classes = variables['params']['head']['bias'].shape[-1]
  fn = _compiled_predict(Classifier(encoder=encoder, num_classes=num_classes), mesh)
  variables = jax.device_put(variables, parallel.replicated(mesh))
  n_dev = mesh.devices.size
  batch_size = max(n_dev, batch_size // n_dev * n_dev)
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)])
    preds = fn(variables, jax.device_put(padded, parallel.batch_sharded(mesh)))
    out.append(np.asarray(preds)[:len(chunk)])
  return np.concatenate(out) if out else np.zeros((0,), np.int32)


def accuracy(encoder: nn.Module, variables: dict, images, labels, mesh=None,
             batch_size: int = 256) -> float:
  """Top-1 accuracy of the classifier `variables` (as `finetune` returns) on the images."""
  labels = np.asarray(labels).reshape(-1)
  if len(labels) != len(images):
    raise ValueError(f'{len(images)} images but {len(labels)} labels')
  if not len(labels):
    raise ValueError('accuracy of an empty set is undefined')
  return float(np.mean(predict(encoder, variables, images, mesh, batch_size) == labels))
