"""optim.make_optimizer: each optimiser decays convolution and dense kernels only (biases
and normalisation parameters excluded, as BYOL does), by the rule it is named after."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import vivi
from vivi import errors, optim

LR, WD = 0.5, 0.1


def _params():
  return {'conv': {'kernel': jnp.full((3, 3, 2, 4), 2.0), 'bias': jnp.ones((4,))},
          'norm': {'scale': jnp.ones((4,)), 'bias': jnp.full((4,), 3.0)}}


def _first_update(name):
  config = vivi.get_config('tiny')
  config.optimizer.update(name=name, weight_decay=WD, momentum=0.9, nesterov=False)
  config.schedule.update(name='cosine', base_learning_rate=LR, warmup_steps=0)
  tx = optim.make_optimizer(config)
  params = _params()
  zero = {k: {n: jnp.zeros_like(v) for n, v in d.items()} for k, d in params.items()}
  updates, _ = tx.update(zero, tx.init(params), params)
  return updates


@pytest.mark.parametrize('name,kernel_update', [
    ('sgd', -LR * WD * 2.0),     # Coupled L2: the decay is a gradient, times the lr.
    ('adamw', -LR * WD * 2.0),   # Decoupled: lr x wd x w, outside Adam's normalisation.
    # LARS: trust ratio eta ||w|| / ||g + wd w|| = eta / wd (eta = 0.001, BYOL's) scales
    # the decayed gradient wd w.
    ('lars', -LR * 0.001 * 2.0),
])
def test_only_kernels_decay(name, kernel_update):
  """With zero gradients the first update is the weight decay alone: kernels move by the
  optimiser's rule, biases and normalisation parameters stay."""
  updates = _first_update(name)
  np.testing.assert_allclose(updates['conv']['kernel'], kernel_update, rtol=1e-5)
  for leaf in (updates['conv']['bias'], updates['norm']['scale'], updates['norm']['bias']):
    np.testing.assert_array_equal(leaf, 0.0)


def test_unknown_optimizer_lists_the_valid_ones():
  config = vivi.get_config('tiny')
  config.optimizer.name = 'adam'
  with pytest.raises(errors.ConfigError, match=r"config.optimizer.name: unknown optimiser "
                     r"'adam'; valid: \['adamw', 'lars', 'sgd'\]"):
    optim.make_optimizer(config)
