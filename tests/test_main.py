"""End to end: the README's main command (`main.py`, configs/vivi_obj.py:tiny, shortened),
as a 2-process job (launch/local.py: each process reads its own shards) and as one process,
writes checkpoints, events and the probe report, saves on SIGTERM on every host at the same
step, and resumes after being pre-empted or killed (slow: run by CI, deselect with
-m "not slow")."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests import helpers

ROOT = helpers.ROOT
pytestmark = pytest.mark.slow


def _command(workdir, cache, steps, processes=1):
  launch = [sys.executable]
  if processes > 1:
    launch += [os.path.join(ROOT, 'launch/local.py'), f'--processes={processes}',
               '--devices_per_process=1', '--']
  return launch + [os.path.join(ROOT, 'main.py'), '--config',
          os.path.join(ROOT, 'configs/vivi_obj.py') + ':tiny', '--workdir', workdir,
          f'--config.num_train_steps={steps}', '--config.schedule.warmup_steps=2',
          '--config.checkpoint_every_steps=3',
          '--config.log_every_steps=3', '--config.probe.every_steps=1000',
          '--config.probe.num_train=100', '--config.probe.num_test=50',
          '--config.probe.evaluators.linear_probe.datasets=("synthetic/class",)',
          '--config.probe.evaluators.object_nn.num_videos=4',
          '--config.probe.evaluators.object_discovery.num_videos=4',
          # 130 videos: 3 shards of at most 64, enough for 2 processes' own shards.
          '--config.data.synthetic.num_videos=130',
          '--config.data.synthetic.image_size=32', '--config.data.shuffle_buffer=16',
          '--config.input.image_size=32', '--config.probe.image_size=32',
          f'--config.data.cache_dir={cache}']


def _steps(workdir):
  return sorted(int(os.path.basename(p)) for p in glob.glob(f'{workdir}/checkpoints/*')
                if os.path.basename(p).isdigit())


def _wait_for_checkpoint_after(workdir, step, proc):
  deadline = time.time() + 600
  while (not _steps(workdir) or _steps(workdir)[-1] <= step) and time.time() < deadline \
      and proc.poll() is None:
    time.sleep(0.5)
  return _steps(workdir)


def test_main_survives_sigterm_and_kill_then_resumes_and_reports(tmp_path):
  """Three runs of the README's main command in one workdir:
  1. as 2 processes (launch/local.py), SIGTERM (pre-emption, passed on to both) after the
     first checkpoint: both save the same step at the next step boundary, write their own
     input states and exit with status 0;
  2. the same command in one process resumes from that step (its input starts afresh: the
     shards split differently); kill -9 after its next checkpoint;
  3. the same command resumes from that checkpoint, finishes, and prints the probe table.
  """
  workdir, cache = str(tmp_path / 'work'), str(tmp_path / 'cache')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  def start(name, processes=1):  # The log goes to a file: a pipe nobody reads would block.
    with open(tmp_path / name, 'w') as log:   # The child keeps its own copy of the file.
      return subprocess.Popen(_command(workdir, cache, 300, processes), env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT), tmp_path / name

  proc, log_file = start('run1.log', processes=2)
  first = _wait_for_checkpoint_after(workdir, 0, proc)
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=300)
  log = log_file.read_text()
  assert proc.returncode == 0, log[-3000:]
  saved = re.findall(r'\[(\d)\] .*Pre-empted \(SIGTERM\): saved the checkpoint at step (\d+)',
                     log)
  assert first and sorted(p for p, _ in saved) == ['0', '1'], log[-3000:]
  assert len({step for _, step in saved}) == 1, saved  # The same step on both processes.
  preempted_at = int(saved[0][1])
  assert first[-1] <= preempted_at < 300 and _steps(workdir)[-1] == preempted_at
  assert 'Probing the encoder at initialisation' in log
  assert sorted(os.listdir(f'{workdir}/input_state/{preempted_at}')) == [
      'process_0_of_2', 'process_1_of_2']

  proc, log_file = start('run2.log')
  later = _wait_for_checkpoint_after(workdir, preempted_at, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  log = log_file.read_text()
  assert f'Resumed from the checkpoint at step {preempted_at}' in log, log[-3000:]
  assert 'No input state saved with step' in log  # Written by 2 processes, read by 1.
  assert 'Probing the encoder at initialisation' not in log  # Kept from run 1.
  killed_at = later[-1]
  assert preempted_at < killed_at < 300, later

  out = subprocess.run(_command(workdir, cache, killed_at + 3), env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {killed_at}' in out.stderr
  assert 'with a changed config: num_train_steps: 300 -> ' in out.stderr  # Resumable.
  assert _steps(workdir)[-1] == killed_at + 3
  assert glob.glob(f'{workdir}/events.out.tfevents.*')
  for row in ('linear_probe/synthetic/class/pre_logits', 'object_nn/same_class_fraction'):
    table = re.search(row + r'\s+([0-9.]+) ± [0-9.]+\s+([0-9.]+) ± ', out.stdout)
    assert table, out.stdout
    assert 0.0 <= float(table.group(1)) <= 1.0 and 0.0 <= float(table.group(2)) <= 1.0
