"""Orbax checkpoints of the train state (plus the run's config as JSON), the input pipelines'
states beside them, and resume: which checkpoint restores, and whether a config may resume it.
The encoder alone, for downstream use, is `vivi/encoder.py`.

Saves are asynchronous; the loop saves every `config.checkpoint_every_steps` and at the
end, and the last `config.keep_checkpoints` are kept. Orbax writes each checkpoint to a
temporary directory and renames it when complete, so a save interrupted midway is never
restored.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from vivi import errors, parallel
from vivi.models import video_model


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


# The input pipelines' states: one file per pipeline, process and step, next to the orbax
# checkpoint of the same step, so that a resumed run reads exactly the batches the
# uninterrupted run would have read. A video pipeline's is its position in the host's
# record order (vivi/input/record_order.py: a few integers); the labelled images' is
# tf.data's iterator checkpoint.
INPUT_DIR = 'input_state'


def _process_dir() -> str:
  # The process count is part of the name: a host's input state describes its own slice
  # of the shards (pipeline.host_shards), which another layout splits differently.
  return f'process_{jax.process_index()}_of_{jax.process_count()}'


def _input_prefix(workdir: str, step: int, name: str) -> str:
  return os.path.join(os.path.abspath(workdir), INPUT_DIR, str(step), _process_dir(), name)


def save_input(mngr: ocp.CheckpointManager, workdir: str, step: int,
               pipelines: dict[str, Any], keep: int) -> None:
  """Writes this process's input states for `step` (call before the train state's save of
  `step`) and deletes those of the steps the manager will not keep once it has saved `step`,
  the newest `keep` (`config.keep_checkpoints`), and their folders once empty."""
  import tensorflow as tf
  for name, p in pipelines.items():
    if p is not None:
      prefix = _input_prefix(workdir, step, name)
      tf.io.gfile.makedirs(os.path.dirname(prefix))
      p.save_state(prefix)
  root = os.path.join(os.path.abspath(workdir), INPUT_DIR)
  keep = set(sorted(set(mngr.all_steps()) | {step})[-keep:])
  for name in tf.io.gfile.listdir(root):
    name = name.rstrip('/')
    if name.isdigit() and int(name) not in keep:
      mine = os.path.join(root, name, _process_dir())
      if tf.io.gfile.exists(mine):
        tf.io.gfile.rmtree(mine)
      with contextlib.suppress(OSError):   # Other processes' states may still be there.
        os.rmdir(os.path.join(root, name))


def restore_input(workdir: str, step: int, pipelines: dict[str, Any]) -> bool:
  """Moves the pipelines to where they were at `step`; False (and they start afresh) when
  that step has no saved input state for this process (e.g. another process count)."""
  restored = [p.restore_state(_input_prefix(workdir, step, name))
              for name, p in pipelines.items() if p is not None]
  return all(restored)


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


# ---------------------------------------------------------------------------------------
# Resuming with a changed config. Every checkpoint holds the config that wrote it; a run
# that resumes compares its own with the latest one's. Keys matching these patterns may
# change (with a warning): they change neither the train state's structure nor the input
# pipeline's state. Any other change (model, objectives and their heads, sampler, batch,
# image size, dataset, seed, optimiser kind, ...) is refused before anything is built.

RESUMABLE_CHANGES = (
    'num_train_steps', 'log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
    'max_nonfinite_steps', 'probe.*', 'schedule.*', 'optimizer.weight_decay',
    'optimizer.momentum', 'optimizer.nesterov', 'objectives.*.weight',
    'objectives.*.temperature', 'objectives.*.margin', 'target_network.*', 'model.fsdp',
    'model.dtype', 'data.cache_dir', 'labelled.data_dir', 'profile.*',
    'init_encoder')


# Config keys added after checkpoints were written, with the value those runs implicitly had.
IMPLICIT_KEYS = {**{f'model.{k}': v for k, v in video_model.MODEL_KEY_DEFAULTS.items()},
                 'input.masks': 'fh', 'init_encoder': ''}


def _as_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _flat(d: Any, prefix: str = '') -> dict[str, Any]:
  if not isinstance(d, dict):
    return {prefix: d}
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f'{prefix}.{k}' if prefix else k))
  return out


def config_changes(saved: dict, config: ml_collections.ConfigDict
                   ) -> dict[str, tuple[Any, Any]]:
  """{dotted key: (value in the checkpoint, value now)} of every key that differs ('<absent>'
  for a key only one side has)."""
  old, new = _flat(saved), _flat(_as_json(config))
  # A key added to the configs after the checkpoint was written had its implicit value.
  old.update({k: v for k, v in IMPLICIT_KEYS.items() if k in new and k not in old})
  absent = '<absent>'
  return {k: (old.get(k, absent), new.get(k, absent)) for k in sorted(set(old) | set(new))
          if old.get(k, absent) != new.get(k, absent)}


def latest_config(workdir: str) -> tuple[int, dict] | None:
  """(step, config as saved) of the workdir's latest checkpoint, or None when it has none.
  Creates nothing; a checkpoint whose config cannot be read raises DamagedCheckpointError."""
  root = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(root):
    return None
  with _training_manager(workdir) as mngr:
    step = mngr.latest_step()
    if step is None:
      return None
    return step, _saved_config(mngr, step)


def _saved_config(mngr: ocp.CheckpointManager, step: int) -> dict:
  try:
    return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
  except Exception as e:  # Any failure to read a committed step's JSON is damage.
    raise DamagedCheckpointError(mngr.directory, step, e) from None


# ---------------------------------------------------------------------------------------
# Damaged checkpoints. Orbax commits a step by renaming its temporary folder, so a save cut
# short is never seen; a committed step can still be damaged later (a disk that filled up,
# a copy cut short, files removed). Resuming falls back to the newest checkpoint that
# restores whole and moves each damaged one aside, to `damaged_checkpoints/<step>` in the
# workdir (kept for a look, never deleted), with a warning naming the step and the error.
# That loses only the steps since the older checkpoint: resume is exact, the input state
# is saved per step, so the run recomputes them as they were. (Orbax and big_vision have
# no fallback; they stop.) On several processes, which could see different damage, the
# run stops instead with one line naming the step and what to do.

DAMAGED_DIR = 'damaged_checkpoints'


class DamagedCheckpointError(errors.PathError):
  """A committed checkpoint that cannot be read whole; the message names step and error."""

  def __init__(self, directory, step: int, cause: Exception):
    self.step = step
    self.reason = f'{type(cause).__name__}: {" ".join(str(cause).split())[:300]}'
    super().__init__(f'the checkpoint at step {step} in {directory} is damaged ({self.reason})')


def set_aside(workdir: str, step: int) -> str:
  """Moves `checkpoints/<step>` to `damaged_checkpoints/<step>[.k]`; returns the new path."""
  workdir = os.path.abspath(workdir)
  os.makedirs(os.path.join(workdir, DAMAGED_DIR), exist_ok=True)
  target, k = os.path.join(workdir, DAMAGED_DIR, str(step)), 0
  while os.path.exists(target):
    k += 1
    target = os.path.join(workdir, DAMAGED_DIR, f'{step}.{k}')
  os.replace(os.path.join(workdir, 'checkpoints', str(step)), target)
  return target


def fall_back(workdir: str, damage: DamagedCheckpointError, process_count: int) -> None:
  """Sets the damaged step aside (one process), or stops naming it and what to do."""
  if process_count > 1:
    raise errors.PathError(
        f'{damage}. Move {os.path.join(os.path.abspath(workdir), "checkpoints", str(damage.step))}'
        f' to {os.path.join(os.path.abspath(workdir), DAMAGED_DIR)}/ and run again to resume '
        f'from the checkpoint before it') from None
  moved = set_aside(workdir, damage.step)
  logging.warning('%s%s: moved it to %s; resuming from the newest checkpoint before it.',
                  str(damage)[0].upper(), str(damage)[1:], moved)


def no_space_message(error: BaseException, workdir: str) -> str | None:
  """The one line for an error (or its causes) that is a full disk, naming the file being
  written and what still resumes; None for any other error."""
  seen = error
  while seen is not None:
    text = str(seen)
    if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or 'No space left' in text or (
        'RESOURCE_EXHAUSTED' in text and 'writ' in text.lower()):
      path = getattr(seen, 'filename', None) or next(iter(re.findall(r'"(/[^"]+)"', text)),
                                                     None) or workdir
      root = os.path.join(os.path.abspath(workdir), 'checkpoints')
      steps = sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) \
          else []
      kept = (f'the checkpoints already saved (steps {steps}) still resume: free space and run '
              f'the same command') if steps else 'no checkpoint was saved yet'
      return f'no space left on the device while writing {path}; {kept}'
    seen = seen.__cause__ or seen.__context__
  return None


def resume_config(workdir: str) -> tuple[int, dict] | None:
  """`latest_config` of the newest checkpoint whose config reads, damaged newer ones set
  aside (see above)."""
  while True:
    try:
      return latest_config(workdir)
    except DamagedCheckpointError as damage:
      fall_back(workdir, damage, jax.process_count())


def check_resume_config(saved: dict, config: ml_collections.ConfigDict, step: int,
                        workdir: str) -> None:
  """Refuses (ConfigError) a resume whose config changes a key outside RESUMABLE_CHANGES,
  naming every changed key; warns with the list when only resumable keys changed."""
  changes = config_changes(saved, config)
  if not changes:
    return
  show = lambda keys: '; '.join(f'{k}: {changes[k][0]!r} -> {changes[k][1]!r}' for k in keys)
  refused = [k for k in changes if not any(fnmatch.fnmatchcase(k, p)
                                           for p in RESUMABLE_CHANGES)]
  if refused:
    raise errors.ConfigError(
        f'{workdir} holds a checkpoint at step {step} written with another config, and these '
        f'keys change the train state or the input pipeline, so it cannot resume with them: '
        f'{show(refused)}. Use a new --workdir, or set them back.')
  logging.warning('Resuming step %d of %s with a changed config: %s', step, workdir,
                  show(changes))


def restore_checked(mngr: ocp.CheckpointManager, state: Any, step: int) -> Any:
  """`restore_latest` that tells a checkpoint whose structure does not fit `state` (a
  ConfigError: a config change `check_resume_config` could not see) from one that cannot be
  read whole (DamagedCheckpointError): the latter does not restore by its own metadata
  either."""
  try:
    restored, _ = restore_latest(mngr, state)
  except Exception as e:  # Tensorstore and orbax raise many kinds; the check below sorts them.
    try:
      _restore_by_metadata(mngr, step, jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    except Exception:
      raise DamagedCheckpointError(mngr.directory, step, e) from None
    raise errors.ConfigError(
        f'the checkpoint at step {step} in {mngr.directory} does not fit the train state '
        f'this config builds ({type(e).__name__}: {str(e)[:300]}...); start a new --workdir'
    ) from None
  return restored


def restore_whole(mngr: ocp.CheckpointManager, state: Any, workdir: str,
                  config: ml_collections.ConfigDict) -> tuple[Any, int | None]:
  """(state, step) of the newest checkpoint that restores whole into `state`'s structure,
  damaged newer ones set aside (their fallback's config checked again); (state, None) when
  none is left."""
  while (step := mngr.latest_step()) is not None:
    try:
      return restore_checked(mngr, state, step), step
    except DamagedCheckpointError as damage:
      fall_back(workdir, damage, jax.process_count())
      mngr.reload()
      saved = resume_config(workdir)
      if saved is not None:
        check_resume_config(saved[1], config, saved[0], workdir)
  return state, None


def _restore_by_metadata(mngr: ocp.CheckpointManager, step: int, sharding) -> Any:
  """The state of `step` as its own metadata describes it (not as a config would build it)."""
  tree = mngr.item_metadata(step).state
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                          getattr(tree, 'tree', tree))
  return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))


def _training_manager(workdir: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'config': ocp.JsonCheckpointHandler()})


def restore_training(workdir: str, step: int | None = None, mesh=None
                     ) -> tuple[dict, ml_collections.ConfigDict, int]:
  """(train state as a dict, config, step) of a training workdir's checkpoint (latest, or
  `step`), replicated over `mesh` (default: all devices), whatever mesh wrote it.

  The state's structure comes from the checkpoint's own metadata, not from rebuilding the
  train state from the config, so checkpoints of older code versions restore too.
  """
  with _training_manager(workdir) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None or step not in mngr.all_steps():
      raise errors.MissingPathError(f'{workdir}: no checkpoint at step {step}; '
                              f'have {list(mngr.all_steps())}')
    try:
      state = _restore_by_metadata(mngr, step,
                                   parallel.replicated(mesh or parallel.make_mesh())).state
      config = _saved_config(mngr, step)
    except DamagedCheckpointError as damage:
      raise errors.PathError(f'{damage}; pick another --step of {list(mngr.all_steps())}'
                             ) from None
    except Exception as e:
      raise errors.PathError(f'{DamagedCheckpointError(mngr.directory, step, e)}; pick another '
                             f'--step of {list(mngr.all_steps())}') from None
  return state, ml_collections.ConfigDict(config), int(step)
