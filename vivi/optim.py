"""The optimisers and schedules a config names: SGD, LARS or AdamW; piecewise or cosine
learning rates; and the target network's momentum schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivi import errors


def target_momentum(config: ml_collections.ConfigDict, step) -> jax.Array:
  """Momentum m of the target update target <- m * target + (1 - m) * online.

  'constant' (MoCo, VINCE: m = 0.999) or 'cosine' (BYOL section 3.2, followed by VITO and
  DetCon: m rises from its base value to 1 over training, 1 - (1 - m0)(cos(pi k/K) + 1)/2).
  """
  t = config.target_network
  if t.schedule == 'constant':
    return jnp.asarray(t.momentum, jnp.float32)
  if t.schedule == 'cosine':
    progress = jnp.minimum(step / config.num_train_steps, 1.0)
    return 1.0 - (1.0 - t.momentum) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
  raise errors.ConfigError(f"target_network.schedule must be 'constant' or 'cosine', got "
                           f'{t.schedule!r}')


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Piecewise-constant decay (VIVI section 4: x0.1 at 90k and 110k of 120k steps),
  after an optional linear warm-up."""
  s = config.schedule
  if s.name == 'cosine':   # VINCE's ResNet-50 recipe (MoCo v2), BYOL-style methods.
    if s.warmup_steps >= config.num_train_steps:
      raise errors.ConfigError(
          f'schedule.warmup_steps={s.warmup_steps} must be below '
          f'num_train_steps={config.num_train_steps} for the cosine schedule')
    return optax.warmup_cosine_decay_schedule(
        0.0, s.base_learning_rate, s.warmup_steps, max(config.num_train_steps, 1))
  if s.name != 'piecewise':
    raise errors.ConfigError(f"schedule.name must be 'piecewise' or 'cosine', got {s.name!r}")
  # join_schedules runs the decay on `step - warmup_steps`: shift the boundaries by the
  # warm-up so that they are the absolute steps the config names (x0.1 *at* 90k and 110k).
  decay = optax.piecewise_constant_schedule(
      s.base_learning_rate, {int(b) - s.warmup_steps: s.decay_factor for b in s.boundaries})
  if not s.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, s.base_learning_rate, s.warmup_steps)
  return optax.join_schedules([warmup, decay], [s.warmup_steps])


OPTIMIZERS = ('sgd', 'lars', 'adamw')


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD with momentum and (coupled) L2 weight decay on convolution and dense kernels;
  LARS (You et al. 2017; the optimiser of BYOL and MoCLR, which VITO and DetCon follow) with
  decay and trust ratio on kernels only, biases and normalisation parameters excluded; or
  AdamW (Loshchilov & Hutter 2019; `optimizer.momentum` is its beta1) with decoupled decay
  on kernels only, which no paper here uses: it is for short runs (docs/results.md, section 2)."""
  o = config.optimizer
  kernels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == 'kernel', params)
  schedule = learning_rate_schedule(config)
  if o.name == 'lars':
    return optax.lars(schedule, weight_decay=o.weight_decay, weight_decay_mask=kernels,
                      trust_ratio_mask=kernels, momentum=o.momentum, nesterov=o.nesterov)
  if o.name == 'adamw':
    return optax.adamw(schedule, b1=o.momentum, weight_decay=o.weight_decay, mask=kernels)
  if o.name != 'sgd':
    raise errors.ConfigError(f'optimizer.name must be one of {list(OPTIMIZERS)}, got '
                             f'{o.name!r}')
  return optax.chain(optax.add_decayed_weights(o.weight_decay, mask=kernels),
                     optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
