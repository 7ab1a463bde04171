"""The train state, the optimiser, and the one sharded train step every method uses.

The step: encoder on all frames of the global batch -> each configured objective's head and
pure loss -> total = sum_o weight_o * loss_o -> gradients -> optax update. It is
`jax.jit`-compiled with explicit shardings (`parallel.py`): batch sharded on 'data', state
replicated and donated.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivi import objectives as objectives_lib
from vivi import parallel
from vivi.models import resnet_v2, video_model


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (sharded, checkpointed whole).

  Methods that need more state (an EMA target, a memory queue) add fields here, so that
  sharding, checkpointing and resume cover them without special cases.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def build_model(config: ml_collections.ConfigDict) -> video_model.VideoModel:
  m = config.model
  encoder = resnet_v2.ResNetV2(depth=m.depth, width=m.width, norm=m.norm,
                               num_groups=m.num_groups, dtype=jnp.dtype(m.dtype))
  heads = {name: objectives_lib.get(name).make_head(cfg)
           for name, cfg in objectives_lib.resolve(config.objectives).items()}
  return video_model.VideoModel(encoder=encoder, heads=heads)


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Piecewise-constant decay (VIVI section 4: x0.1 at 90k and 110k of 120k steps),
  after an optional linear warm-up."""
  s = config.schedule
  if s.name != 'piecewise':
    raise ValueError(f"schedule.name must be 'piecewise', got {s.name!r}")
  decay = optax.piecewise_constant_schedule(
      s.base_learning_rate, {int(b): s.decay_factor for b in s.boundaries})
  if not s.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, s.base_learning_rate, s.warmup_steps)
  return optax.join_schedules([warmup, decay], [s.warmup_steps])


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD with momentum and (coupled) L2 weight decay on convolution and dense kernels."""
  o = config.optimizer
  if o.name != 'sgd':
    raise ValueError(f"optimizer.name must be 'sgd', got {o.name!r}")
  kernels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == 'kernel', params)
  return optax.chain(
      optax.add_decayed_weights(o.weight_decay, mask=kernels),
      optax.sgd(learning_rate_schedule(config), momentum=o.momentum, nesterov=o.nesterov))


def init_batch(config: ml_collections.ConfigDict, batch_videos: int | None = None) -> dict:
  """A zero batch with the shapes of the input pipeline's (for init and eval_shape)."""
  i = config.input
  v = batch_videos or i.batch_videos
  batch = {'frames': jnp.zeros((v, i.num_shots, i.frames_per_shot, i.image_size,
                                i.image_size, 3), jnp.uint8)}
  frames = (v, i.num_shots, i.frames_per_shot)
  if i.rotate:
    batch['rotation'] = jnp.zeros(frames, jnp.int32)
  if i.max_boxes:
    batch['boxes'] = jnp.zeros(frames + (i.max_boxes, 4), jnp.float32)
    batch['box_labels'] = jnp.zeros(frames + (i.max_boxes,), jnp.int32)
    batch['box_valid'] = jnp.zeros(frames + (i.max_boxes,), bool)
  if i.soft_labels:
    if 'distillation' not in config.objectives:
      raise ValueError('input.soft_labels=True is for the distillation objective; add it')
    batch['soft_labels'] = jnp.zeros(frames + (config.objectives.distillation.num_classes,))
  if config.labelled.dataset:
    l = config.labelled
    n = l.batch_size if batch_videos is None else max(batch_videos, 1)
    batch['images'] = jnp.zeros((n, i.image_size, i.image_size, 3), jnp.uint8)
    batch['labels'] = jnp.zeros((n,), jnp.int32)
  return batch


def create_train_state(config, model, tx, rng) -> TrainState:
  # Initialise on a small batch with the real per-example shapes: parameters don't depend
  # on the batch size, and this keeps init cheap at the paper's batch.
  variables = model.init({'params': rng, 'objective': rng}, init_batch(config, 2), train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))


def make_train_step(config, model, tx) -> Callable:
  """Returns step(state, batch, rng) -> (state, metrics), not yet jitted."""
  objectives = objectives_lib.resolve(config.objectives)
  schedule = learning_rate_schedule(config)

  def step(state: TrainState, batch: dict, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
      outputs, mutated = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch, train=True,
          mutable=['batch_stats'], rngs={'objective': rng})
      total, metrics = 0.0, {}
      for name, cfg in objectives.items():
        loss, extra = objectives_lib.get(name).loss(outputs[name], batch, cfg)
        total = total + cfg.weight * loss
        metrics[f'{name}/loss'] = loss
        metrics.update({f'{name}/{k}': v for k, v in extra.items()})
      metrics['loss'] = total
      return total, (metrics, mutated.get('batch_stats', {}))

    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics['learning_rate'] = schedule(state.step)
    metrics['grad_norm'] = optax.tree.norm(grads)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics

  return step


def jit_train_step(step: Callable, mesh) -> Callable:
  """Compiles the step for `mesh`: batch on 'data', state replicated and donated."""
  rep = parallel.replicated(mesh)
  return jax.jit(step, in_shardings=(rep, parallel.batch_sharded(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))
