"""End to end: the README's main command (`main.py`, configs/vivi_obj.py:tiny, shortened)
writes checkpoints, events and the probe report, and resumes after being killed (slow: run
by CI, deselect with -m "not slow")."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _command(workdir, cache, steps):
  return [sys.executable, os.path.join(ROOT, 'main.py'), '--config',
          os.path.join(ROOT, 'configs/vivi_obj.py') + ':tiny', '--workdir', workdir,
          f'--config.num_train_steps={steps}', '--config.checkpoint_every_steps=3',
          '--config.log_every_steps=3', '--config.probe.every_steps=1000',
          '--config.probe.num_train=100', '--config.probe.num_test=50',
          '--config.probe.tasks=("class",)', '--config.probe.nn_videos=4',
          '--config.data.synthetic.num_videos=32',
          '--config.data.synthetic.image_size=32', '--config.data.shuffle_buffer=16',
          '--config.input.image_size=32', '--config.probe.image_size=32',
          f'--config.data.cache_dir={cache}']


def _steps(workdir):
  return sorted(int(os.path.basename(p)) for p in glob.glob(f'{workdir}/checkpoints/*')
                if os.path.basename(p).isdigit())


def test_main_trains_checkpoints_reports_and_resumes_after_kill(tmp_path):
  workdir, cache = str(tmp_path / 'work'), str(tmp_path / 'cache')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  # Kill -9 the run once its first checkpoint is complete.
  proc = subprocess.Popen(_command(workdir, cache, 60), env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while not _steps(workdir) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  first = _steps(workdir)
  assert first and first[-1] < 60, first

  resumed_at = first[-1]
  out = subprocess.run(_command(workdir, cache, resumed_at + 3), env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {resumed_at}' in out.stderr
  assert _steps(workdir)[-1] == resumed_at + 3
  assert glob.glob(f'{workdir}/events.out.tfevents.*')
  for row in ('class', 'object_nn'):
    table = re.search(row + r'\s+([0-9.]+)\s+([0-9.]+)', out.stdout)
    assert table, out.stdout
    assert 0.0 <= float(table.group(1)) <= 1.0 and 0.0 <= float(table.group(2)) <= 1.0


def test_sigterm_saves_at_the_next_step_and_exits_cleanly_then_resumes(tmp_path):
  """What TPU pre-emption and SLURM send: the run saves a checkpoint at the next step
  boundary, exits with status 0, and the same command resumes from that step."""
  workdir, cache = str(tmp_path / 'work'), str(tmp_path / 'cache')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  command = _command(workdir, cache, 300)
  command[command.index('--config.checkpoint_every_steps=3')] = (
      '--config.checkpoint_every_steps=1000')
  proc = subprocess.Popen(command + ['--config.log_every_steps=1'], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  # Wait until training steps are being logged (past compilation), then pre-empt.
  lines = []
  for line in proc.stderr:
    lines.append(line)
    if re.search(r'\] \[2\] ', line) or time.time() > deadline:
      break
  proc.send_signal(signal.SIGTERM)
  _, rest = proc.communicate(timeout=300)
  log = ''.join(lines) + rest
  assert proc.returncode == 0, log[-3000:]
  saved = re.search(r'Pre-empted \(SIGTERM\): saved the checkpoint at step (\d+)', log)
  assert saved, log[-3000:]
  step = int(saved.group(1))
  assert _steps(workdir) == [step] and 2 <= step < 300
  out = subprocess.run(_command(workdir, cache, step + 2), env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {step}' in out.stderr
