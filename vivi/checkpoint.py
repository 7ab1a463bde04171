"""Orbax checkpoints of the train state (plus the run's config as JSON).

Saves are asynchronous; the loop saves every `config.checkpoint_every_steps` and at the
end, and the last `config.keep_checkpoints` are kept. Orbax writes each checkpoint to a
temporary directory and renames it when complete, so a save interrupted midway is never
restored.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp


def manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def save(mngr: ocp.CheckpointManager, state: Any, config: ml_collections.ConfigDict) -> None:
  """Starts an asynchronous save of `state` (returns once it is safe to modify `state`)."""
  step = int(jax.device_get(state.step))
  mngr.save(step, force=True, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      config=ocp.args.JsonSave(json.loads(config.to_json_best_effort()))))


def abstract_like(state: Any) -> Any:
  """Shapes, dtypes and shardings of `state`: what restore should produce."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def restore_latest(mngr: ocp.CheckpointManager, state: Any) -> tuple[Any, int | None]:
  """Restores the latest checkpoint into the structure and shardings of `state`.

  Returns (state, step restored) or (state unchanged, None) when there is none.
  """
  step = mngr.latest_step()
  if step is None:
    return state, None
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_like(state))))
  return restored.state, step
