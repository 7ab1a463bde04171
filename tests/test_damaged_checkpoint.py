"""A damaged latest checkpoint (files truncated or removed after the commit): resume falls
back to the newest one that restores whole, moves the damaged one aside with a warning, and
loses nothing but the steps since; a checkpoint that does not fit stays a config error."""

import glob
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vivi import checkpoint, errors, loop, train

CONFIG = ml_collections.ConfigDict({'keep_checkpoints': 3, 'seed': 0, 'width': 1})


def _state(step, value, size=1000):
  return train.TrainState(step=jnp.asarray(step, jnp.int32),
                          params={'w': jnp.full((size,), value, jnp.float32)},
                          batch_stats={}, opt_state={})


def _two_steps(workdir):
  with checkpoint.manager(workdir, CONFIG) as mngr:
    for step in (1, 2):
      checkpoint.save(mngr, _state(step, float(step)), CONFIG)
      mngr.wait_until_finished()


def _damage(workdir, step, pattern, how):
  files = [f for f in glob.glob(os.path.join(workdir, 'checkpoints', str(step), pattern),
                                recursive=True) if os.path.isfile(f)]
  assert files, pattern
  for f in files:
    if how == 'truncate':
      os.truncate(f, os.path.getsize(f) // 2)
    else:
      os.remove(f)


@pytest.mark.parametrize('how', ['truncate', 'remove'])
def test_a_damaged_config_falls_back_to_the_step_before(how, tmp_path, caplog):
  workdir = str(tmp_path)
  _two_steps(workdir)
  _damage(workdir, 2, 'config/metadata', how)
  with pytest.raises(checkpoint.DamagedCheckpointError, match='step 2'):
    checkpoint.latest_config(workdir)          # Reading alone changes nothing ...
  with caplog.at_level('WARNING'):
    step, saved = checkpoint.resume_config(workdir)   # ... resuming sets it aside.
  assert step == 1 and saved['width'] == 1
  assert 'The checkpoint at step 2 in' in caplog.text and 'is damaged (' in caplog.text
  assert os.listdir(tmp_path / 'checkpoints') == ['1']
  assert os.listdir(tmp_path / checkpoint.DAMAGED_DIR) == ['2']   # Kept, not deleted.


@pytest.mark.parametrize('pattern,how', [
    ('state/**/d/*', 'truncate'), ('state/**/d/*', 'remove'), ('state/_METADATA', 'remove'),
    ('state/manifest.ocdbt', 'truncate'), ('**/*', 'truncate')])
def test_damaged_arrays_fall_back_to_the_newest_whole_checkpoint(pattern, how, tmp_path,
                                                                 caplog):
  workdir = str(tmp_path)
  _two_steps(workdir)
  _damage(workdir, 2, pattern, how)
  with caplog.at_level('WARNING'), checkpoint.manager(workdir, CONFIG) as mngr:
    if pattern == '**/*':   # The config too: found before anything is built.
      assert checkpoint.resume_config(workdir)[0] == 1
      mngr.reload()
    state, step = checkpoint.restore_whole(mngr, _state(0, 0.0), workdir, CONFIG)
  assert step == 1 and int(state.step) == 1
  np.testing.assert_array_equal(np.asarray(state.params['w']), np.ones(1000, np.float32))
  assert 'step 2' in caplog.text and 'is damaged' in caplog.text
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']
  assert os.listdir(tmp_path / checkpoint.DAMAGED_DIR) == ['2']


def test_a_checkpoint_of_another_structure_is_a_config_error_not_damage(tmp_path):
  workdir = str(tmp_path)
  _two_steps(workdir)
  with checkpoint.manager(workdir, CONFIG) as mngr, pytest.raises(
      errors.ConfigError, match='does not fit the train state'):
    checkpoint.restore_whole(mngr, _state(0, 0.0, size=7), workdir, CONFIG)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']   # Nothing moved.


def test_on_several_processes_a_damaged_step_stops_with_what_to_do(tmp_path):
  workdir = str(tmp_path)
  _two_steps(workdir)
  _damage(workdir, 2, 'config/metadata', 'truncate')
  with pytest.raises(checkpoint.DamagedCheckpointError) as damage:
    checkpoint.latest_config(workdir)
  with pytest.raises(errors.PathError, match=r'step 2 .* is damaged .*Move .*checkpoints/2 to '
                                             r'.*damaged_checkpoints/ and run again'):
    checkpoint.fall_back(workdir, damage.value, process_count=2)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']


def test_evaluating_a_damaged_step_names_it(tmp_path):
  workdir = str(tmp_path)
  _two_steps(workdir)
  _damage(workdir, 2, 'state/**/d/*', 'remove')
  with pytest.raises(errors.PathError, match=r'step 2 .* is damaged .*pick another --step of '
                                             r'\[1, 2\]'):
    checkpoint.restore_training(workdir)


@pytest.mark.slow
def test_a_run_resumed_past_a_damaged_checkpoint_ends_as_the_undamaged_one(tmp_path):
  """Training to step 6 (checkpoints at 2, 4 and 6, the last two kept with their input
  states), then the files of step 6 truncated and the run started again: it resumes from 4
  and recomputes 5 and 6 exactly."""
  from configs import vivi_obj
  config = vivi_obj.get_config('tiny')
  config.num_train_steps, config.checkpoint_every_steps, config.keep_checkpoints = 6, 2, 2
  config.schedule.warmup_steps = 2
  config.data.cache_dir = str(tmp_path / 'cache')
  config.data.synthetic.num_videos, config.data.synthetic.image_size = 24, 32
  config.data.shuffle_buffer, config.input.image_size, config.model.width = 8, 32, 0.25
  config.probe.evaluators.linear_probe.datasets = ()
  config.probe.evaluators.object_nn.num_videos = 0
  config.probe.evaluators.object_discovery.num_videos = 0
  workdir = str(tmp_path / 'work')
  loop.train_and_evaluate(config, workdir)
  kept = lambda folder: sorted(os.listdir(os.path.join(workdir, folder)))
  assert kept('checkpoints') == kept(checkpoint.INPUT_DIR) == ['4', '6']
  whole, _, _ = checkpoint.restore_training(workdir)
  _damage(workdir, 6, '**/*', 'truncate')
  loop.train_and_evaluate(config, workdir)
  again, _, step = checkpoint.restore_training(workdir)
  assert step == 6 and kept(checkpoint.DAMAGED_DIR) == ['6']
  assert kept('checkpoints') == kept(checkpoint.INPUT_DIR) == ['4', '6']
  for x, y in zip(jax.tree.leaves(whole), jax.tree.leaves(again), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
