"""bfloat16 as the paper configs run it (`model.dtype='bfloat16'`): convolutions compute in
bfloat16 (resnet_v2.Conv casts kernel and input), while parameters, BatchNorm statistics,
heads, losses, optimiser state and the EMA target stay float32. One step in bfloat16 equals
the float32 step within bfloat16's precision, and everything it produces is finite."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import odin, vivi_obj
from vivi import optim, parallel, testing, train


def _one_step(config, dtype: str):
  config.model.dtype = dtype
  model, tx = train.build_model(config), optim.make_optimizer(config)
  state = train.create_train_state(config, model, tx, jax.random.key(0))
  mesh = parallel.make_mesh()
  step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
  batch = parallel.global_batch(testing.random_batch(config, seed=3), mesh)
  init_params = jax.tree.map(np.asarray, state.params)   # Before the step donates them.
  return init_params, *step(parallel.replicate(state, mesh), batch, jax.random.key(1))


@pytest.mark.parametrize('module', [vivi_obj, odin], ids=['vivi_obj', 'odin'])
def test_a_bfloat16_step_equals_the_float32_step_within_bfloat16_precision(module):
  config = module.get_config('tiny')
  config.input.batch_videos = 2
  init32, state32, metrics32 = _one_step(config.copy_and_resolve_references(), 'float32')
  init16, state16, metrics16 = _one_step(config.copy_and_resolve_references(), 'bfloat16')
  # The same float32 parameters at initialisation: the dtype is the computation's only.
  for a, b in zip(jax.tree.leaves(init32), jax.tree.leaves(init16)):
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
  for name in ('loss', 'grad_norm'):
    assert np.isfinite(float(metrics16[name])), metrics16
    np.testing.assert_allclose(float(metrics16[name]), float(metrics32[name]), rtol=0.05,
                               err_msg=name)
  assert int(metrics16['nonfinite']) == 0
  for tree in (state16.params, state16.batch_stats, state16.opt_state, state16.target):
    for leaf in jax.tree.leaves(tree):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(leaf)))
