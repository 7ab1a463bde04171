"""Linear evaluation on ImageNet (and any TFDS image classification set, e.g. SUN397): a
linear head trained on the frozen encoder, one head per swept learning rate.

The protocol (VITO, appendix A.6): the ResNet-50 encoder is frozen (BatchNorm in inference
mode) and a linear layer on its 2048-d pooled representation ('pre_logits') is trained on
the 1,000 classes of ImageNet's training set with SGD, Nesterov momentum 0.9 and no weight
decay, sweeping the learning rate over {0.4, 0.3, 0.2, 0.1, 0.05}; the training images are
random-resized crops (Inception crops, 8-100% of the area) with random flips. VITO picks the
best classifier on ImageNet's validation set, which is also what it reports; here the
learning rate is chosen on `held_out` training images set aside from the start
(`select_on='held_out'`, the default) and the chosen head is scored on `eval_split`
('validation': the 50,000 images everyone reports), so the reported number is not the
maximum of five noisy readings of it. `select_on='validation'` reproduces the paper's rule.
VINCE (section 4.1, Table 2: ImageNet and SUN scenes) trains the same single linear layer
with Adam (`optimizer='adam'`).

What the papers leave open, our choice: 90 epochs over the training split (SimCLR's and
BYOL's linear protocol length), batch 1024, a cosine decay of the learning rate to zero, a
zero-initialised head. Evaluation images are resized (shorter side to S / 0.875) and
centre-cropped to S (datasets.resize_center_crop).

One forward pass serves every learning rate: the encoder runs once per batch and the L
heads ([L, C, K], each with its own momentum) are updated together, so a sweep of five costs
little more than one head. The chosen head and the encoder make the classifier
(vivi/classifier.py) that the robustness and shape-bias evaluators listed after this one
score; with an output folder it is saved to <out>/imagenet_linear/classifier.

With `split='validation'` (suite.py: the test data are never read) the held-out images both
choose the learning rate and are reported.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vivi import classifier as classifier_lib
from vivi import errors, parallel
from vivi.evaluate import datasets, linear_probe
from vivi.evaluate.evaluators import Evaluator, Result

OPTIMIZERS = ('sgd_nesterov', 'adam')
SELECT_ON = ('held_out', 'validation')
DEFAULTS = dict(
    dataset=classifier_lib.IMAGENET,  # A TFDS name under config.data_dir ('sun397/tfds').
    train_split='train',
    eval_split='validation',          # What is reported ('test' for SUN397's TFDS splits).
    held_out=10_000,                  # Training images set aside to choose the learning rate.
    learning_rates=(0.4, 0.3, 0.2, 0.1, 0.05),   # VITO A.6.
    optimizer='sgd_nesterov',         # VITO A.6; 'adam': VINCE section 4.1.
    momentum=0.9,                     # VITO A.6.
    weight_decay=0.0,                 # VITO A.6.
    epochs=90.0,                      # Our choice (SimCLR's and BYOL's linear protocol).
    num_steps=0,                      # > 0: this many steps instead of `epochs`.
    batch_size=1024,
    crop_area=(0.08, 1.0),            # Inception crops (Szegedy et al. 2015).
    select_on='held_out',
    eval_limit=0,                     # > 0: only the first N evaluation images (smoke runs).
    eval_batch_size=256,
    shuffle_buffer=10_000,
)


def check(options) -> None:
  if options.optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={options.optimizer!r}: one of {OPTIMIZERS}')
  if options.select_on not in SELECT_ON:
    raise ValueError(f'select_on={options.select_on!r}: one of {SELECT_ON}')
  if not options.learning_rates or min(options.learning_rates) <= 0:
    raise ValueError(f'learning_rates={tuple(options.learning_rates)}: one or more, each > 0')
  if options.held_out < 1 and options.select_on == 'held_out':
    raise ValueError(f"held_out={options.held_out}: at least 1 image when select_on='held_out'")
  for key in ('batch_size', 'eval_batch_size'):
    if options[key] < 1:
      raise ValueError(f'{key}={options[key]}: must be >= 1')
  if options.epochs <= 0 and options.num_steps <= 0:
    raise ValueError('epochs or num_steps must be > 0')
  low, high = options.crop_area
  if not 0 < low <= high <= 1:
    raise ValueError(f'crop_area={tuple(options.crop_area)}: 0 < low <= high <= 1')


# ---------------------------------------------------------------------------------------
# The heads: L linear layers trained together on one frozen forward pass.

def _base_optimizer(options) -> optax.GradientTransformation:
  """The update direction before the learning rate (elementwise, so one transformation
  serves the stacked heads): Nesterov momentum, or Adam's moments."""
  if options.optimizer == 'adam':
    return optax.scale_by_adam()
  return optax.trace(decay=options.momentum, nesterov=True)


def init_heads(num_heads: int, dim: int, num_classes: int) -> dict:
  return {'kernel': jnp.zeros((num_heads, dim, num_classes), jnp.float32),
          'bias': jnp.zeros((num_heads, num_classes), jnp.float32)}


def head_logits(heads: dict, features: jax.Array) -> jax.Array:
  """[L, B, K] logits of every head on features [B, C]."""
  return jnp.einsum('bc,lck->lbk', features.astype(jnp.float32), heads['kernel']) + \
      heads['bias'][:, None]


def heads_loss(heads: dict, features: jax.Array, labels: jax.Array) -> jax.Array:
  """The sum over heads of each head's mean softmax cross-entropy: each head's gradient is
  its own loss's, as the heads share no parameters and the features are constants."""
  logits = head_logits(heads, features)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels[None])
  return ce.mean(axis=1).sum()


def make_train_step(encode, options, learning_rates: np.ndarray, num_steps: int):
  """(heads, opt_state, step, encoder variables, images, labels) -> (heads, opt_state,
  losses [L]): SGD-Nesterov (or Adam) with head l's learning rate learning_rates[l] times a
  cosine decay to zero over `num_steps`, plus `weight_decay` x kernel (L2, SGD style)."""
  base = _base_optimizer(options)
  rates = jnp.asarray(learning_rates, jnp.float32)
  schedule = optax.cosine_decay_schedule(1.0, max(num_steps, 1))

  def step_fn(heads, opt_state, step, variables, images, labels):
    features = jax.lax.stop_gradient(encode(variables, images))
    grads = jax.grad(heads_loss)(heads, features, labels)
    if options.weight_decay:
      grads = {**grads, 'kernel': grads['kernel'] + options.weight_decay * heads['kernel']}
    updates, opt_state = base.update(grads, opt_state, heads)
    scale = -rates * schedule(step)
    updates = {'kernel': updates['kernel'] * scale[:, None, None],
               'bias': updates['bias'] * scale[:, None]}
    logits = head_logits(heads, features)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels[None]).mean(1)
    return optax.apply_updates(heads, updates), opt_state, losses

  return step_fn, base


@jax.jit
def _correct(heads: dict, features: jax.Array, labels: jax.Array) -> jax.Array:
  """[L, 2]: top-1 and top-5 correct counts of each head on one batch (ties in the top 5
  broken by class index, as lax.top_k does)."""
  logits = head_logits(heads, features)
  top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  hits = top5 == labels[None, :, None]
  return jnp.stack([hits[..., 0].sum(-1), hits.any(-1).sum(-1)], axis=-1)


# ---------------------------------------------------------------------------------------
# Data.

def _splits(builder, options) -> tuple[str, str | None]:
  """The training split and the held-out split (TFDS slices of `train_split`)."""
  name = options.train_split
  total = builder.info.splits[name].num_examples
  if options.select_on != 'held_out' and options.held_out < 1:
    return name, None
  if options.held_out >= total:
    raise errors.ConfigError(
        f'evaluator imagenet_linear: held_out={options.held_out} leaves no training images in '
        f'{builder.name} {name!r} ({total} examples)')
  return f'{name}[:{total - options.held_out}]', f'{name}[{total - options.held_out}:]'


def _eval_batches(builder, split: str, image_size: int, options):
  """(uint8 images, labels) batches of `split`, resized and centre-cropped."""
  prepare = lambda ex: (datasets.resize_center_crop(ex['image'], image_size), ex['label'])
  return datasets.tfds_examples(builder, split, prepare, options.eval_batch_size,
                                options.eval_limit or None)


def _train_stream(ctx, builder, split: str, image_size: int, options):
  """This process's infinite stream of augmented training batches (labelled.py: the one
  Inception-crop-and-flip pipeline of the co-training images)."""
  from vivi.input import augment, labelled
  source = labelled.LabelledSource(dataset=options.dataset, split=split,
                                   data_dir=ctx.config.get('data_dir') or None)
  augment_cfg = augment.AugmentConfig(image_size=image_size, crop_area=tuple(options.crop_area),
                                      color=False)
  return labelled.make_labelled_pipeline(
      source, augment_cfg, batch_size=options.batch_size // jax.process_count(),
      seed=ctx.config.seed, process_index=jax.process_index(),
      process_count=jax.process_count(), shuffle_buffer=options.shuffle_buffer)


# ---------------------------------------------------------------------------------------
# The evaluator.

def _pooled(encoder_module):
  def encode(variables, images):
    from vivi.models import video_model
    out = encoder_module.apply(variables, video_model.normalize_images(images), train=False)
    return out['pre_logits'].astype(jnp.float32)
  return encode


def _accuracies(encode_fn, variables, heads, batches, mesh) -> tuple[np.ndarray, int]:
  """[L, 2] top-1 / top-5 accuracies of every head over `batches`, and the image count."""
  correct, n = np.zeros((heads['kernel'].shape[0], 2), np.int64), 0
  for images, labels in batches:
    features = linear_probe.extract_features(encode_fn, variables, images, mesh, len(images))
    correct += np.asarray(_correct(heads, jnp.asarray(features), jnp.asarray(labels)))
    n += len(labels)
  if not n:
    raise errors.DatasetError('evaluator imagenet_linear: an evaluation split has no images')
  return correct / n, n


def linear_eval(ctx, options) -> Result:
  """Trains the swept heads, chooses one, reports it; keeps the classifier for the
  evaluators after this one (`ctx.trained_classifier`)."""
  if ctx.is_histogram:
    return {}, {}   # The colour-histogram baseline has no encoder to put a head on.
  builder = datasets.tfds_builder(options.dataset, ctx.config.get('data_dir'),
                                  'imagenet_linear')
  label = builder.info.features['label']
  num_classes, image_size, mesh = int(label.num_classes), int(ctx.config.image_size), ctx.mesh
  parallel.check_batch_size(options.batch_size, mesh, 'evaluators.imagenet_linear.batch_size')
  train_split, held_out_split = _splits(builder, options)
  num_train = builder.info.splits[train_split].num_examples
  num_steps = options.num_steps or max(1, math.ceil(options.epochs * num_train /
                                                    options.batch_size))
  rates = np.asarray(options.learning_rates, np.float32)
  ctx.log(f'{options.dataset}: {len(rates)} linear heads (learning rates {tuple(rates)}) on '
          f'{num_train} training images, {num_steps} steps of {options.batch_size}')

  encode = _pooled(ctx.encoder.module)
  variables = parallel.replicate(ctx.encoder.variables, mesh)
  dim = jax.eval_shape(encode, variables, jnp.zeros((1, image_size, image_size, 3),
                                                    jnp.uint8)).shape[-1]
  step_fn, base = make_train_step(encode, options, rates, num_steps)
  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  step_fn = jax.jit(step_fn, donate_argnums=(0, 1),
                    in_shardings=(replicated, replicated, replicated, replicated, sharded,
                                  sharded),
                    out_shardings=(replicated, replicated, replicated))
  heads = jax.device_put(init_heads(len(rates), dim, num_classes), replicated)
  opt_state = jax.device_put(base.init(heads), replicated)
  stream = _train_stream(ctx, builder, train_split, image_size, options)
  losses = None
  for step in range(num_steps):
    batch = parallel.global_batch(next(stream), mesh)
    heads, opt_state, losses = step_fn(heads, opt_state, jnp.asarray(step, jnp.int32),
                                       variables, batch['images'], batch['labels'])
    if (step + 1) % max(1, num_steps // 10) == 0 or step + 1 == num_steps:
      ctx.log(f'step {step + 1}/{num_steps}: loss per head '
              f'{np.array2string(np.asarray(losses), precision=3)}')
  heads = jax.device_get(heads)

  encode_fn = linear_probe.jit_encoder(encode, mesh)
  name = options.dataset.split(':')[0]
  score = lambda split: _accuracies(encode_fn, variables, heads,
                                    _eval_batches(builder, split, image_size, options), mesh)
  metrics = {}
  if held_out_split:
    held, n_held = score(held_out_split)
    for lr, acc in zip(options.learning_rates, held[:, 0]):
      metrics[f'{name}/held_out_top1/lr{lr:g}'] = float(acc)
      ctx.count(f'{name}/held_out_top1/lr{lr:g}', n_held)
  if ctx.split == 'validation':   # Never the evaluation split: the held-out images only.
    if not held_out_split:
      raise errors.ConfigError("evaluator imagenet_linear: split='validation' needs held_out "
                               '>= 1 training images to choose and report on')
    reported_split, acc, n = held_out_split, held, n_held
  else:
    reported_split = options.eval_split
    acc, n = score(reported_split)
  # Ties: the first (largest) learning rate.
  chosen = int(np.argmax((held if options.select_on == 'held_out' else acc)[:, 0]))
  metrics[f'{name}/top1'] = float(acc[chosen, 0])
  metrics[f'{name}/top5'] = float(acc[chosen, 1])
  metrics[f'{name}/learning_rate'] = float(options.learning_rates[chosen])
  for key in (f'{name}/top1', f'{name}/top5'):
    ctx.count(key, n)
  ctx.log(f'{name}: learning rate {options.learning_rates[chosen]:g} chosen on '
          f'{options.select_on}; '
          f'{reported_split} top-1 {acc[chosen, 0]:.4f}, top-5 {acc[chosen, 1]:.4f} ({n} images)')

  clf = classifier_lib.make_classifier(
      ctx.encoder, {'kernel': heads['kernel'][chosen], 'bias': heads['bias'][chosen]},
      {'label_space': name, 'image_size': image_size,
       'trained_by': f'linear evaluation of the frozen encoder ({options.optimizer}, '
                     f'{num_steps} steps of {options.batch_size})',
       'learning_rate': float(options.learning_rates[chosen]), 'selected_on': options.select_on,
       f'{reported_split}_top1': float(acc[chosen, 0])})
  ctx.trained_classifier = clf
  if ctx.out_dir:
    path = classifier_lib.save_classifier(clf, os.path.join(ctx.out_dir, 'imagenet_linear',
                                                            'classifier'))
    ctx.log(f'classifier written to {path}')
  return metrics, {}


LINEAR = Evaluator(linear_eval, DEFAULTS, check, first=True)
