"""A quick linear probe: multinomial logistic regression on frozen, standardised features.

Used by the training loop to report representation quality on the synthetic world's
held-out tasks every N steps, next to the same probe on the encoder at initialisation.
The probe is convex and solved to convergence with L-BFGS (full batch), so differences
between two encoders come from their features, not from the probe's optimiser.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vivi import parallel


def jit_encoder(encode: Callable, mesh) -> Callable:
  """Compiles `encode(variables, inputs) -> [B, ...]` with inputs sharded over the mesh and
  outputs gathered whole on every device, so that every process can read them (with
  several processes a batch-sharded output spans devices a process cannot address)."""
  return jax.jit(encode, in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                 out_shardings=parallel.replicated(mesh))


def extract_features(fn: Callable, variables, inputs, mesh, batch_size: int = 256) -> np.ndarray:
  """Runs a `jit_encoder` function over `inputs` (an array or a pytree of arrays with a
  common leading dimension) in sharded batches; returns the concatenated outputs."""
  n_dev = mesh.devices.size
  batch_size = max(n_dev, batch_size // n_dev * n_dev)
  # Whole on every device (a no-op unless the train state is sharded: config.model.fsdp).
  variables = jax.device_put(variables, parallel.replicated(mesh))
  n = len(jax.tree.leaves(inputs)[0])
  out = []
  for start in range(0, n, batch_size):
    chunk = jax.tree.map(lambda x, start=start: x[start:start + batch_size], inputs)
    size = len(jax.tree.leaves(chunk)[0])
    pad = -size % n_dev
    chunk = jax.tree.map(
        lambda x, pad=pad: np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]), chunk)
    feats = np.asarray(fn(variables, jax.device_put(chunk, parallel.batch_sharded(mesh))))
    out.append(feats[:size])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnames=('num_classes', 'iterations'))
def _fit(x, y, l2, num_classes: int, iterations: int):
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

  def objective(p):
    logits = x @ p[0] + p[1]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + l2 * jnp.sum(p[0] ** 2)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def body(_, carry):
    p, s = carry
    value, grad = value_and_grad(p, state=s)
    updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(p, updates), s

  params, _ = jax.lax.fori_loop(0, iterations, body, (params, opt.init(params)))
  return params


class Probe:
  """A fitted probe: standardisation of the training features + logistic regression."""

  def __init__(self, mean, std, params):
    self.mean, self.std, self.params = mean, std, params

  def logits(self, x: np.ndarray) -> np.ndarray:
    z = jnp.asarray((x - self.mean) / self.std, jnp.float32)
    return np.asarray(z @ self.params[0] + self.params[1])

  def predict(self, x: np.ndarray) -> np.ndarray:
    return np.argmax(self.logits(x), -1)


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, num_classes: int,
              l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
              val_fraction: float = 0.2, iterations: int = 200) -> Probe:
  """Logistic regression on standardised features, solved to convergence with L-BFGS.

  The L2 strength is picked from `l2_grid` on a held-out `val_fraction` of the training
  set (a fixed, seeded split), then the probe is refitted on the whole training set. With
  few examples and wide features, an unregularised probe memorises the training set.
  """
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  x = jnp.asarray((train_x - mean) / std, jnp.float32)
  y = jnp.asarray(train_y)
  order = np.random.default_rng(0).permutation(len(x))
  n_val = max(1, int(len(x) * val_fraction))
  val, fit = order[:n_val], order[n_val:]

  def val_accuracy(l2):
    probe = Probe(mean, std, _fit(x[fit], y[fit], l2, num_classes, iterations))
    return float(np.mean(probe.predict(train_x[val]) == train_y[val]))

  best = max(l2_grid, key=val_accuracy)
  return Probe(mean, std, _fit(x, y, best, num_classes, iterations))


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray, num_classes: int, **kwargs) -> float:
  """Test accuracy of `fit_probe(train_x, train_y, num_classes, **kwargs)`."""
  probe = fit_probe(train_x, train_y, num_classes, **kwargs)
  return float(np.mean(probe.predict(test_x) == test_y))
