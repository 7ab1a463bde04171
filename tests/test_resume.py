"""Exact resume: N steps, a pre-emption, a restart and N more steps give bit-identical
state (parameters, optimiser, BatchNorm statistics, target network, queue) on the CPU to
2N uninterrupted steps, because the input pipelines' positions are checkpointed with the
train state (slow: three short training runs per method)."""

import jax
import numpy as np
import pytest

from configs import vince, vivi_obj
from vivi import checkpoint, loop

pytestmark = pytest.mark.slow
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
  config.probe.update(every_steps=1000, tasks=('class',), num_train=20, num_test=10,
                      nn_videos=2, nn_frames_per_video=2, image_size=32)
  return config


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
