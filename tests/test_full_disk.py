"""A disk that fills up during a save stops the run with one line naming the path; what was
saved before still resumes."""

import errno
import os
import subprocess

import pytest

from vivi import checkpoint, errors, loop


def test_a_full_disk_is_recognised_through_its_causes(tmp_path):
  (tmp_path / 'checkpoints' / '10').mkdir(parents=True)
  workdir = str(tmp_path)
  full = OSError(errno.ENOSPC, 'No space left on device', '/w/input_state/20/videos.json')
  assert checkpoint.no_space_message(full, workdir) == (
      'no space left on the device while writing /w/input_state/20/videos.json; the '
      'checkpoints already saved (steps [10]) still resume: free space and run the same command')
  tensorstore = ValueError('RESOURCE_EXHAUSTED: Error writing "params.w/0" in OCDBT database at '
                           'local file "/w/checkpoints/20.orbax-checkpoint-tmp/state/": Failed '
                           'to write 74833 bytes')
  try:
    try:
      raise tensorstore
    except ValueError as e:
      raise RuntimeError('save finalize thread failed') from e
  except RuntimeError as wrapped:
    message = checkpoint.no_space_message(wrapped, workdir)
  assert message.startswith('no space left on the device while writing '
                            '/w/checkpoints/20.orbax-checkpoint-tmp/state/; ')
  assert checkpoint.no_space_message(ValueError('RESOURCE_EXHAUSTED: out of memory'),
                                     workdir) is None
  assert checkpoint.no_space_message(KeyError('x'), workdir) is None


def _config(cache, steps):
  from configs import vivi_obj
  config = vivi_obj.get_config('tiny')
  config.num_train_steps, config.checkpoint_every_steps = steps, 2
  config.schedule.warmup_steps = 1
  config.data.cache_dir = cache
  config.data.synthetic.num_videos, config.data.synthetic.image_size = 24, 32
  config.data.shuffle_buffer, config.input.image_size, config.model.width = 8, 32, 0.25
  config.probe.evaluators.linear_probe.datasets = ()
  config.probe.evaluators.object_nn.num_videos = 0
  config.probe.evaluators.object_discovery.num_videos = 0
  return config


@pytest.mark.slow
def test_a_save_that_fills_the_disk_stops_with_one_line_and_the_earlier_save_resumes(
    tmp_path, caplog):
  disk = tmp_path / 'disk'
  disk.mkdir()
  # One checkpoint of this model is ~19 MB: the first fits in 30 MB, the second does not.
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=30m', 'tmpfs', str(disk)],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f'cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}')
  try:
    workdir, cache = str(disk / 'work'), str(tmp_path / 'cache')
    with pytest.raises(errors.PathError, match=r'^no space left on the device while writing '
                                               rf'{disk}/work/.*; the checkpoints already saved '
                                               r'\(steps \[2\]\) still resume'):
      loop.train_and_evaluate(_config(cache, 6), workdir)
    assert not os.path.exists(os.path.join(workdir, 'lock.json'))
    subprocess.run(['mount', '-o', 'remount,size=200m', str(disk)], check=True)
    with caplog.at_level('INFO'):
      loop.train_and_evaluate(_config(cache, 6), workdir)
    assert 'Resumed from the checkpoint at step 2' in caplog.text
    assert 'No input state saved' not in caplog.text
    assert checkpoint.restore_training(workdir)[2] == 6
  finally:
    subprocess.run(['umount', '-l', str(disk)], check=False)
