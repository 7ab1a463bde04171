"""The train state and the one sharded train step every method uses (the optimiser: optim.py).

The step: encoder on all frames of the global batch -> each configured objective's head and
pure loss -> total = sum_o weight_o * loss_o -> gradients -> optax update. Methods with a
target network (VINCE's momentum encoder, VITO's and DetCon's EMA target) also run the
target on the batch (on `batch['target_frames']` when the sampler provides them) before the
update, and move it towards the online network after (Odin's target also discovers the
segments that both passes pool under); objectives with a memory (VINCE's
queue) update it from the target's outputs. It is `jax.jit`-compiled with explicit
shardings (`parallel.py`): batch sharded on 'data', state replicated and donated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivi import errors, optim, parallel
from vivi import objectives as objectives_lib
from vivi.input import samplers
from vivi.models import video_model


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (sharded, checkpointed whole),
  so that sharding, checkpointing and resume cover every method's state alike.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  target: Any = flax.struct.field(default_factory=dict)  # {'params', 'batch_stats'} or {}
  memory: Any = flax.struct.field(default_factory=dict)  # {objective name: its memory}


def build_model(config: ml_collections.ConfigDict) -> video_model.VideoModel:
  encoder = video_model.build_encoder(config.model)
  objectives = objectives_lib.resolve(config.objectives)
  heads = {name: objectives_lib.get(name).make_head(cfg) for name, cfg in objectives.items()}
  target_encodes = tuple(k for name in objectives for k in objectives_lib.get(name).target_encodes)
  return video_model.VideoModel(encoder=encoder, heads=heads,
                                target_heads=tuple(target_objectives(config)),
                                target_encodes=target_encodes)


def target_objectives(config: ml_collections.ConfigDict) -> list[str]:
  """The objectives that compare against a target network; checks `config.target_network`."""
  names = [n for n in config.objectives if objectives_lib.get(n).target]
  has = bool(config.get('target_network'))
  if bool(names) != has:
    raise errors.ConfigError(
        f'config.target_network (set: {has}) configures the EMA target network that '
        f'objectives {names or "(none here)"} use: set it exactly when one of '
        f'config.objectives {sorted(config.objectives)} needs it')
  return names


def init_batch(config: ml_collections.ConfigDict, batch_videos: int | None = None) -> dict:
  """A zero batch with the shapes of the input pipeline's (for init and eval_shape)."""
  v = batch_videos or config.input.batch_videos
  batch = {k: jnp.zeros((v,) + shape, dtype)
           for k, (shape, dtype) in samplers.example_spec(config).items()}
  if config.labelled.dataset:
    l = config.labelled
    n = l.batch_size if batch_videos is None else max(batch_videos, 1)
    size = config.input.image_size
    batch['images'] = jnp.zeros((n, size, size, 3), jnp.uint8)
    batch['labels'] = jnp.zeros((n,), jnp.int32)
  return batch


def create_train_state(config, model, tx, rng) -> TrainState:
  # Initialise on a small batch with the real per-example shapes: parameters don't depend
  # on the batch size, and this keeps init cheap at the paper's batch. Compiled: op by op,
  # Flax's init of the tiny model takes ~25 s on the CPU.
  init = jax.jit(lambda rngs, batch: model.init(rngs, batch, train=False))
  batch = init_batch(config, 2)
  for name, cfg in objectives_lib.resolve(config.objectives).items():
    # What a target pass would add to the online pass's batch (Odin's segments).
    spec_of = objectives_lib.get(name).target_inputs_spec
    spec = spec_of(cfg, config) if spec_of else {}
    batch.update({k: jnp.zeros((2,) + shape, dtype) for k, (shape, dtype) in spec.items()})
  variables = init({'params': rng, 'objective': rng}, batch)
  memory_rng = jax.random.fold_in(rng, 1)
  params = variables['params']
  batch_stats = variables.get('batch_stats', {})
  # The target starts as a copy of the online network (MoCo, BYOL).
  target = {'params': params, 'batch_stats': batch_stats} if model.target_heads else {}
  memory = {}
  for name, cfg in objectives_lib.resolve(config.objectives).items():
    init_memory = objectives_lib.get(name).init_memory
    if init_memory:
      memory[name] = init_memory(cfg, jax.random.fold_in(memory_rng, len(memory)))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), target=jax.tree.map(jnp.copy, target),
                    memory=memory)


ARCHITECTURE_KEYS = ('depth', 'width', 'norm', 'num_groups', *video_model.MODEL_KEY_DEFAULTS)


def with_pretrained_encoder(state: TrainState, encoder, config: ml_collections.ConfigDict
                            ) -> TrainState:
  """`state` with its encoder (and the target's copy of it) replaced by `encoder`'s weights
  and BatchNorm statistics: fine-tuning from a pretrained encoder (`config.init_encoder`)
  through the same loop and step as pretraining. Heads stay as initialised."""
  theirs = {**video_model.MODEL_KEY_DEFAULTS, **encoder.info['model']}
  ours = {**video_model.MODEL_KEY_DEFAULTS, **config.model.to_dict()}
  differ = [k for k in ARCHITECTURE_KEYS if theirs.get(k) != ours.get(k)]
  if differ:
    raise errors.ConfigError(
        f'config.init_encoder={config.init_encoder!r} is a different network: '
        + ', '.join(f'model.{k}={theirs.get(k)!r} there, {ours.get(k)!r} here' for k in differ)
        + '; set config.model to match it')
  params = {**state.params, 'encoder': encoder.variables['params']}
  batch_stats = dict(state.batch_stats)
  if 'encoder' in batch_stats:
    batch_stats['encoder'] = encoder.variables['batch_stats']
  shapes = lambda tree: jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)
  if shapes(params) != shapes(state.params) or shapes(batch_stats) != shapes(state.batch_stats):
    raise errors.ConfigError(f'config.init_encoder={config.init_encoder!r}: its variables do '
                             'not fit this model (another width or depth)')
  target = state.target
  if target:
    target = {'params': {**target['params'], 'encoder': params['encoder']},
              'batch_stats': {**target['batch_stats'], **(
                  {'encoder': batch_stats['encoder']} if 'encoder' in batch_stats else {})}}
    target = jax.tree.map(jnp.copy, target)
  return state.replace(params=params, batch_stats=batch_stats, target=target)


def target_batch(batch: dict) -> dict:
  """What the target network sees: the sampler's 'target_frames' (VINCE's positives) when
  there are any, else the same frames as the online network."""
  out = {k: v for k, v in batch.items() if k not in ('images', 'labels', 'target_frames')}
  if 'target_frames' in batch:
    out['frames'] = batch['target_frames']
  return out


def make_train_step(config, model, tx) -> Callable:
  """Returns step(state, batch, rng) -> (state, metrics), not yet jitted."""
  objectives = objectives_lib.resolve(config.objectives)
  schedule = optim.learning_rate_schedule(config)

  def step(state: TrainState, batch: dict, rng: jax.Array):
    rng = jax.random.fold_in(rng, state.step)
    target_outputs, target_stats = {}, {}
    if model.target_heads:
      target_outputs, mutated = model.apply(
          state.target, target_batch(batch), train=True, target=True,
          mutable=['batch_stats'], rngs={'objective': rng})
      target_outputs = jax.lax.stop_gradient(target_outputs)
      target_stats = mutated.get('batch_stats', {})
      # Inputs of the online pass that the target computes (Odin's discovered segments).
      for out in target_outputs.values():
        batch = {**batch, **out.get('discovered', {})}

    def loss_fn(params):
      outputs, mutated = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch, train=True,
          mutable=['batch_stats'], rngs={'objective': rng})
      total, metrics = 0.0, {}
      for name, cfg in objectives.items():
        out = outputs[name]
        if name in target_outputs:
          out = {**out, 'target': target_outputs[name]}
        if name in state.memory:
          out = {**out, 'memory': state.memory[name]}
        loss, extra = objectives_lib.get(name).loss(out, batch, cfg)
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
    target = state.target
    if model.target_heads:
      m = optim.target_momentum(config, state.step)
      metrics['target_momentum'] = m
      target = {'params': jax.tree.map(lambda t, p: m * t + (1 - m) * p,
                                       state.target['params'], params),
                'batch_stats': target_stats}
    memory = {name: objectives_lib.get(name).update_memory(mem, target_outputs[name],
                                                           objectives[name])
              for name, mem in state.memory.items()}
    # A non-finite loss or gradient leaves every part of the state as it was (the step is
    # skipped and counted), so no NaN reaches the parameters, statistics, target or queue,
    # nor a checkpoint. The loop stops the run after `max_nonfinite_steps` in a row.
    finite = (jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm'])
              & jnp.isfinite(optax.tree.norm(updates)))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(
        step=state.step + 1, params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state), target=keep(target, state.target),
        memory=keep(memory, state.memory))
    metrics['nonfinite'] = 1 - finite.astype(jnp.int32)
    return new_state, metrics

  return step


def jit_train_step(step: Callable, mesh, state_shardings: Any = None) -> Callable:
  """Compiles the step for `mesh`: batch on 'data', the state donated and replicated (or
  sharded as `state_shardings` says: `parallel.state_shardings`, config.model.fsdp)."""
  rep = parallel.replicated(mesh)
  state = rep if state_shardings is None else state_shardings
  return jax.jit(step, in_shardings=(state, parallel.batch_sharded(mesh), rep),
                 out_shardings=(state, rep), donate_argnums=(0,))
