"""Downstream use of the checkpoints (vivi/encoder.py): the encoder of a training
checkpoint written on 1 device restores on 8, and the exported encoder reloads to the same
features."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers

ROOT = helpers.ROOT

# Writes a training checkpoint of a small VIVI config (1 device) and the features its
# encoder gives on fixed images.
WRITE = r'''
import sys
import jax, numpy as np
from configs import vivi
from vivi import checkpoint, optim, parallel, testing, train
from vivi import encoder as encoder_api
workdir = sys.argv[1]
config = vivi.get_config('tiny')
config.model.width = 0.25
model, tx = train.build_model(config), optim.make_optimizer(config)
mesh = parallel.make_mesh()
state = parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(3)), mesh)
state = state.replace(step=state.step + 7)
mngr = checkpoint.manager(workdir, config)
checkpoint.save(mngr, state, config)
mngr.wait_until_finished()
images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
feats = jax.jit(lambda v, x: model.apply(v, x, method=model.encode))(
    {'params': state.params, 'batch_stats': state.batch_stats}, images)
np.save(workdir + '/features.npy', np.asarray(feats['pre_logits']))
'''

def _run(script, args, devices):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', script, *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


@pytest.mark.slow  # Two subprocesses (1 and 8 devices): about a minute.
def test_restore_on_8_devices_of_a_checkpoint_written_on_1_and_export_reload(tmp_path):
  workdir = str(tmp_path / 'work')
  _run(WRITE, [workdir], devices=1)
  read = r'''
import sys
import jax, numpy as np
from vivi import checkpoint, parallel
from vivi import encoder as encoder_api
workdir, export = sys.argv[1], sys.argv[2]
assert jax.device_count() == 8
encoder = encoder_api.restore_encoder(workdir)
leaf = jax.tree.leaves(encoder.variables)[0]
assert len(leaf.sharding.device_set) == 8, leaf.sharding
assert encoder.info['step'] == 7 and encoder.info['model']['width'] == 0.25
images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
np.save(workdir + '/restored.npy', np.asarray(encoder.features(images)['pre_logits']))
encoder_api.export_encoder(encoder, export)
again = encoder_api.load_encoder(export)
np.save(workdir + '/reloaded.npy', np.asarray(again.features(images)['pre_logits']))
'''
  _run(read, [workdir, str(tmp_path / 'export')], devices=8)
  written = np.load(f'{workdir}/features.npy')
  np.testing.assert_allclose(np.load(f'{workdir}/restored.npy'), written, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.load(f'{workdir}/reloaded.npy'),
                                np.load(f'{workdir}/restored.npy'))


def test_load_encoder_names_a_folder_that_is_not_an_export(tmp_path):
  from vivi import encoder as encoder_api
  with pytest.raises(FileNotFoundError, match='is not an exported encoder'):
    encoder_api.load_encoder(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    encoder_api.restore_encoder(str(tmp_path))
