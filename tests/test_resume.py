"""Exact resume: N steps, a pre-emption, a restart and N more steps give bit-identical
state (parameters, optimiser, BatchNorm statistics, target network, queue) on the CPU to
2N uninterrupted steps, because the input pipelines' positions are checkpointed with the
train state (slow: three short training runs per method)."""

import jax
import numpy as np
import pytest

from configs import vince, vivi_obj
from tests import helpers
from vivi import checkpoint, loop

N = 3


def _config(module, cache):
  config = module.get_config('tiny')
  config.num_train_steps = 2 * N
  config.schedule.warmup_steps = 2
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 1
  config.data.cache_dir = cache
  config.data.synthetic.num_videos = 24
  config.data.synthetic.image_size = 32
  config.data.shuffle_buffer = 8
  config.input.image_size = 32
  config.model.width = 0.25
  config.probe.every_steps = 1000   # No probe: not tested here.
  config.probe.evaluators.linear_probe.datasets = ()
  config.probe.evaluators.object_nn.num_videos = 0
  config.probe.evaluators.object_discovery.num_videos = 0
  return config


@pytest.mark.slow
@pytest.mark.parametrize('module', [vivi_obj, vince], ids=['vivi_obj', 'vince'])
def test_preempted_and_resumed_run_equals_the_uninterrupted_run(module, tmp_path,
                                                               monkeypatch):
  cache = str(tmp_path / 'cache')
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  loop.train_and_evaluate(_config(module, cache), straight)

  with monkeypatch.context() as m:  # Pre-empted right after step N.
    m.setattr(loop.Preemption, 'reached', lambda self, step: step == N)
    assert loop.train_and_evaluate(_config(module, cache), resumed) == {'preempted_at': N}
  loop.train_and_evaluate(_config(module, cache), resumed)

  a, _, step_a = checkpoint.restore_training(straight)
  b, _, step_b = checkpoint.restore_training(resumed)
  assert step_a == step_b == 2 * N
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  assert len(leaves_a) == len(jax.tree.leaves(b))
  for (path, x), y in zip(leaves_a, jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                  err_msg=jax.tree_util.keystr(path))


# Saves step 1 of a state, then saves step 2 and is killed -9 at the worst moment of that
# save: every array written to the temporary directory, the rename that commits it not yet
# done. Killing at a wall-clock moment instead raced the asynchronous save (on a busy
# machine the kill landed before orbax had created the temporary directory), so the kill is
# placed by wrapping the commit itself (orbax's AtomicRenameTemporaryPath.finalize, the
# default on a local file system; pinned orbax-checkpoint <0.13).
KILLED_SAVE = r'''
import os, signal, sys
import jax.numpy as jnp, ml_collections
from orbax.checkpoint._src.path import atomicity
from vivi import checkpoint, train
commit = atomicity.AtomicRenameTemporaryPath.finalize
async def finalize_unless_step_2(self):
  if self.get_final().name == '2':
    os.kill(os.getpid(), signal.SIGKILL)
  await commit(self)
atomicity.AtomicRenameTemporaryPath.finalize = finalize_unless_step_2
workdir = sys.argv[1]
config = ml_collections.ConfigDict({'keep_checkpoints': 3, 'seed': 0})
def state(step, value):
  return train.TrainState(step=jnp.asarray(step, jnp.int32),
                          params={'w': jnp.full((1_000_000,), value, jnp.float32)},
                          batch_stats={}, opt_state={})
mngr = checkpoint.manager(workdir, config)
checkpoint.save(mngr, state(1, 1.0), config)
mngr.wait_until_finished()
checkpoint.save(mngr, state(2, 2.0), config)
mngr.wait_until_finished()
'''


def test_a_save_killed_midway_never_restores(tmp_path):
  """Orbax writes to a temporary directory and renames it when complete: after a kill -9
  between writing step 2 and committing it, the latest checkpoint is step 1 and it
  restores whole."""
  import os
  import subprocess
  import sys
  root = helpers.ROOT
  workdir = str(tmp_path / 'work')
  out = subprocess.run([sys.executable, '-c', KILLED_SAVE, workdir], cwd=root,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == -9, out.stderr[-2000:]
  left = os.listdir(os.path.join(workdir, 'checkpoints'))
  unfinished = [d for d in left if d.startswith('2.orbax-checkpoint-tmp')]
  assert len(unfinished) == 1 and '2' not in left, left  # Killed before the commit...
  written = os.listdir(os.path.join(workdir, 'checkpoints', unfinished[0]))
  assert 'state' in written, written                      # ...with step 2 written.
  state, _, step = checkpoint.restore_training(workdir)
  assert step == 1
  assert float(np.asarray(state['params']['w']).min()) == 1.0 == float(
      np.asarray(state['params']['w']).max())


def test_sigterm_is_noted_for_the_next_step_boundary():
  """One process: SIGTERM does not interrupt the step; `reached` reports it afterwards, and
  `close` gives the signal back to the handler it had."""
  import os
  import signal
  before = signal.getsignal(signal.SIGTERM)
  preemption = loop.Preemption()
  try:
    assert not preemption.reached(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.reached(2)
  finally:
    preemption.close()
  assert signal.getsignal(signal.SIGTERM) is before
