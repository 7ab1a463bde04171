"""The optimisers and schedules a config names: SGD, LARS or AdamW; piecewise or cosine
learning rates; and the target network's momentum schedule. Each is a plug-in of a registry
(vivi/registry.py) with its config keys and defaults: `config.optimizer.name`,
`config.schedule.name` and `config.target_network.schedule` choose them, and any other key of
those entries must be one the chosen plug-in takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivi import errors, registry


@dataclasses.dataclass(frozen=True)
class Plugin:
  """`make(options, ...)` builds it from its resolved options."""
  defaults: Mapping[str, Any]
  make: Callable[..., Any]


# ---------------------------------------------------------------------------------------------
# The target network's momentum m: target <- m * target + (1 - m) * online.


def _constant_momentum(options, progress) -> jax.Array:
  """MoCo, VINCE: m fixed (0.999)."""
  return jnp.asarray(options.momentum, jnp.float32)


def _cosine_momentum(options, progress) -> jax.Array:
  """BYOL section 3.2, followed by VITO and DetCon: m rises from its base value to 1 over
  training, 1 - (1 - m0)(cos(pi k/K) + 1)/2."""
  return 1.0 - (1.0 - options.momentum) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


TARGET_SCHEDULES = registry.Registry('target-momentum schedule', 'config.target_network.schedule', {
    'constant': Plugin(dict(momentum=0.999), _constant_momentum),
    'cosine': Plugin(dict(momentum=0.996), _cosine_momentum),
})


def target_schedule_options(config: ml_collections.ConfigDict
                            ) -> ml_collections.FrozenConfigDict:
  """`config.target_network` checked and completed with its schedule's defaults."""
  return TARGET_SCHEDULES.resolve(config.target_network, 'config.target_network',
                                  name_key='schedule')[1]


def target_momentum(config: ml_collections.ConfigDict, step) -> jax.Array:
  """Momentum m of the target update at `step`, by `config.target_network.schedule`."""
  plugin, options = TARGET_SCHEDULES.resolve(config.target_network, 'config.target_network',
                                             name_key='schedule')
  return plugin.make(options, jnp.minimum(step / config.num_train_steps, 1.0))


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules.


def _cosine_schedule(options, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up, then cosine decay to 0 (VINCE's ResNet-50 recipe, MoCo v2; BYOL-style
  methods)."""
  if options.warmup_steps >= num_train_steps:
    raise errors.ConfigError(
        f'schedule.warmup_steps={options.warmup_steps} must be below '
        f'num_train_steps={num_train_steps} for the cosine schedule')
  return optax.warmup_cosine_decay_schedule(
      0.0, options.base_learning_rate, options.warmup_steps, max(num_train_steps, 1))


def _piecewise_schedule(options, num_train_steps: int) -> optax.Schedule:
  """Piecewise-constant decay (VIVI section 4: x0.1 at 90k and 110k of 120k steps), after an
  optional linear warm-up."""
  # join_schedules runs the decay on `step - warmup_steps`: shift the boundaries by the
  # warm-up so that they are the absolute steps the config names (x0.1 *at* 90k and 110k).
  decay = optax.piecewise_constant_schedule(
      options.base_learning_rate,
      {int(b) - options.warmup_steps: options.decay_factor for b in options.boundaries})
  if not options.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, options.base_learning_rate, options.warmup_steps)
  return optax.join_schedules([warmup, decay], [options.warmup_steps])


# The peak learning rate has no default: validation refuses a missing one.
SCHEDULES = registry.Registry('learning-rate schedule', 'config.schedule.name', {
    'cosine': Plugin(dict(base_learning_rate=None, warmup_steps=0), _cosine_schedule),
    'piecewise': Plugin(dict(base_learning_rate=None, warmup_steps=0, boundaries=(),
                             decay_factor=0.1), _piecewise_schedule),
})


def schedule_options(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """`config.schedule` checked and completed with its schedule's defaults."""
  return SCHEDULES.resolve(config.schedule, 'config.schedule')[1]


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  plugin, options = SCHEDULES.resolve(config.schedule, 'config.schedule')
  return plugin.make(options, config.num_train_steps)


# ---------------------------------------------------------------------------------------------
# Optimisers: weight decay on convolution and dense kernels only.


def _kernels(params):
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


def _sgd(options, schedule) -> optax.GradientTransformation:
  """SGD with momentum and (coupled) L2 weight decay on kernels."""
  return optax.chain(optax.add_decayed_weights(options.weight_decay, mask=_kernels),
                     optax.sgd(schedule, momentum=options.momentum, nesterov=options.nesterov))


def _lars(options, schedule) -> optax.GradientTransformation:
  """LARS (You et al. 2017; the optimiser of BYOL and MoCLR, which VITO and DetCon follow)
  with decay and trust ratio on kernels only, biases and normalisation parameters excluded."""
  return optax.lars(schedule, weight_decay=options.weight_decay, weight_decay_mask=_kernels,
                    trust_ratio_mask=_kernels, momentum=options.momentum, nesterov=options.nesterov)


def _adamw(options, schedule) -> optax.GradientTransformation:
  """AdamW (Loshchilov & Hutter 2019; `momentum` is its beta1) with decoupled decay on
  kernels only. No paper here uses it: it is for short runs (configs/common.py, the tiny
  optimiser)."""
  return optax.adamw(schedule, b1=options.momentum, weight_decay=options.weight_decay,
                     mask=_kernels, nesterov=options.nesterov)


_MOMENTUM = dict(momentum=0.9, nesterov=False, weight_decay=0.0)
OPTIMIZERS = registry.Registry('optimiser', 'config.optimizer.name', {
    'sgd': Plugin(_MOMENTUM, _sgd),
    'lars': Plugin(_MOMENTUM, _lars),
    'adamw': Plugin(_MOMENTUM, _adamw),
})


def optimizer_options(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """`config.optimizer` checked and completed with its optimiser's defaults."""
  return OPTIMIZERS.resolve(config.optimizer, 'config.optimizer')[1]


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optimiser of `config.optimizer` on the learning rate of `config.schedule`."""
  plugin, options = OPTIMIZERS.resolve(config.optimizer, 'config.optimizer')
  return plugin.make(options, learning_rate_schedule(config))
