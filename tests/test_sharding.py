"""The sharded train step: 8 devices compute what 1 device computes (global BatchNorm
statistics and global triplet / InfoNCE comparisons), and the paper-scale graph is
consistent."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP_SCRIPT = r'''
import sys
import jax, numpy as np
from configs import vivi
from vivi import parallel, train

config = vivi.get_config('tiny')
config.input.image_size = 32
config.input.batch_videos = 8
config.objectives.shot_order = dict(weight=0.5)   # Exercise a head with its own rng too.
config.schedule.warmup_steps = 0                   # The step moves the parameters.
model, tx = train.build_model(config), train.make_optimizer(config)
mesh = parallel.make_mesh()
state = parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(0)), mesh)
init = jax.device_get((state.params, state.batch_stats))
step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (8, 4, 4, 32, 32, 3), dtype=np.uint8)
state, metrics = step(state, parallel.global_batch({'frames': frames}, mesh), jax.random.key(1))
losses = [float(metrics['loss'])]
# What the step changed, per parameter and BatchNorm statistic.
updates = jax.tree.map(lambda a, b: a - b, jax.device_get((state.params, state.batch_stats)), init)
leaves = jax.tree_util.tree_leaves_with_path(updates)
np.savez(sys.argv[1], losses=np.array(losses), devices=len(jax.devices()),
         **{jax.tree_util.keystr(p): v for p, v in leaves})
'''


def _run(tmp_path, devices):
  out = os.path.join(tmp_path, f'{devices}.npz')
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, '-c', STEP_SCRIPT, out], check=True, env=env, cwd=ROOT,
                 capture_output=True)
  return dict(np.load(out))


def test_one_device_and_eight_devices_give_the_same_step(tmp_path):
  one, eight = _run(tmp_path, 1), _run(tmp_path, 8)
  assert one.pop('devices') == 1 and eight.pop('devices') == 8
  np.testing.assert_allclose(eight.pop('losses'), one.pop('losses'), rtol=1e-5)
  assert one.keys() == eight.keys()
  # Float tolerance, judged against the size of the update: reductions over the global
  # batch are summed in another order on 8 devices (measured: <= 4e-5 relative per leaf).
  # Later steps amplify such differences (BatchNorm's backward pass cancels large terms):
  # after a second step at this learning rate they reach ~0.3%, so one step is compared.
  changed = 0
  for key in one:
    size = np.linalg.norm(one[key])
    if size > 1e-6:
      changed += 1
      assert np.linalg.norm(eight[key] - one[key]) <= 2e-4 * size, key
    else:  # Biases in front of a normalisation barely move.
      np.testing.assert_allclose(eight[key], one[key], atol=1e-8, err_msg=key)
  assert changed > 0.8 * len(one)


def test_paper_config_train_step_shapes_at_paper_batch():
  """jax.eval_shape of the full-size step: 512 videos x 4 shots x 8 frames at 224 px."""
  sys.path.insert(0, ROOT)
  from configs import vivi
  from vivi import train
  config = vivi.get_config()
  model, tx = train.build_model(config), train.make_optimizer(config)
  state = jax.eval_shape(lambda: train.create_train_state(config, model, tx, jax.random.key(0)))
  batch = jax.eval_shape(lambda: train.init_batch(config))
  assert batch['frames'].shape == (512, 4, 8, 224, 224, 3)
  new_state, metrics = jax.eval_shape(train.make_train_step(config, model, tx), state, batch,
                                      jax.random.key(0))
  assert jax.tree.map(lambda x: (x.shape, x.dtype), new_state) == jax.tree.map(
      lambda x: (x.shape, x.dtype), state)
  assert metrics['loss'].shape == ()
  assert {'exemplar/loss', 'shot_infonce/loss', 'learning_rate'} <= set(metrics)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params['encoder']))
  assert n == 23_519_360


COTRAIN_SCRIPT = r'''
import json, sys
import jax, numpy as np
from configs import vivi_obj_cotrain
from vivi import loop, parallel, train

config = vivi_obj_cotrain.get_config('tiny')
config.data.cache_dir = sys.argv[1]
config.data.synthetic = dict(num_videos=16, image_size=32, seed=0, fps=1.0)
config.data.shuffle_buffer = 8
config.input.image_size = 32
config.labelled.num_examples = 64
config.labelled.batch_size = 16
mesh = parallel.make_mesh()
assert mesh.devices.size == 8
model, tx = train.build_model(config), train.make_optimizer(config)
state = parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(0)), mesh)
step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
local = next(iter(loop.make_input(config)))
local.update(next(loop.make_labelled_input(config, mesh)))
batch = parallel.global_batch(local, mesh)
assert batch['images'].sharding.spec[0] == 'data' and batch['boxes'].shape[-2:] == (5, 4)
state, metrics = step(state, batch, jax.random.key(1))
print(json.dumps({k: float(v) for k, v in metrics.items()}))
'''


@pytest.mark.slow
def test_cotraining_step_with_both_pipelines_on_eight_devices(tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', COTRAIN_SCRIPT, str(tmp_path)], env=env,
                       cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.loads(out.stdout.strip().splitlines()[-1])
  for key in ('loss', 'supervised/loss', 'object_triplet/loss', 'exemplar/loss',
              'shot_infonce/loss'):
    assert np.isfinite(metrics[key]), key
  assert metrics['object_triplet/valid_boxes'] > 0
