"""`config.profile`: a jax.profiler trace of a window of steps into <workdir>/profile, in the
layout TensorBoard's profile plugin reads (plugins/profile/<run>/*.xplane.pb)."""

from __future__ import annotations

import glob

import jax
import jax.numpy as jnp
import ml_collections

from vivi import loop


def test_the_configured_steps_are_traced_into_the_workdir(tmp_path):
  profile = loop.Profile(ml_collections.ConfigDict({'first_step': 2, 'num_steps': 2}),
                         str(tmp_path))
  step = jax.jit(lambda x: jnp.tanh(x @ x))
  x = jnp.ones((64, 64))
  for n in range(1, 6):
    profile.before(n)
    assert profile.active == (2 <= n <= 3)
    x = step(x)
    profile.after(n, x)
  profile.close()
  assert glob.glob(str(tmp_path / 'profile' / 'plugins' / 'profile' / '*' / '*.xplane.pb'))


def test_no_trace_when_num_steps_is_zero(tmp_path):
  profile = loop.Profile(ml_collections.ConfigDict({'first_step': 1, 'num_steps': 0}),
                         str(tmp_path))
  profile.before(1)
  profile.after(1, jnp.zeros(()))
  profile.close()
  assert not (tmp_path / 'profile').exists()
