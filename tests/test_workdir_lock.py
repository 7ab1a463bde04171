"""One run per workdir: a live holder refuses the next run, naming its host and pid; a holder
that is gone (its pid dead on this host, or its heartbeat stale) is taken over."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests import helpers
from vivi import errors, workdir_lock


def _write_lock(workdir, **holder):
  os.makedirs(workdir, exist_ok=True)
  lock = {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': workdir_lock._process_start(os.getpid()),
          'command': 'main.py --workdir=W', 'heartbeat': time.time(), **holder}
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE), 'w') as f:
    json.dump(lock, f)


def _holder(workdir):
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
    return json.load(f)


def _dead_pid():
  p = subprocess.Popen([sys.executable, '-c', 'pass'])
  p.wait()
  return p.pid


def test_a_live_holder_refuses_with_host_and_pid(tmp_path):
  sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  try:
    _write_lock(tmp_path, pid=sleeper.pid, started=time.time() - 1)
    with pytest.raises(errors.PathError,
                       match=rf'in use by another run: host {socket.gethostname()!r} pid '
                             rf'{sleeper.pid} .* holds .*lock.json'):
      workdir_lock.WorkdirLock(str(tmp_path)).acquire()
  finally:
    sleeper.kill()
  assert _holder(tmp_path)['pid'] == sleeper.pid  # Untouched.


def test_a_dead_pid_on_this_host_is_taken_over(tmp_path, caplog):
  dead = _dead_pid()
  _write_lock(tmp_path, pid=dead)
  lock = workdir_lock.WorkdirLock(str(tmp_path))
  with caplog.at_level('WARNING'):
    lock.acquire()
  try:
    assert f'process {dead} is not running' in caplog.text
    assert _holder(tmp_path)['pid'] == os.getpid()
  finally:
    lock.release()
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
  # This process is alive, but started after the lock says its holder did.
  _write_lock(tmp_path, started=time.time() - 10 * 86400)
  lock = workdir_lock.WorkdirLock(str(tmp_path))
  lock.acquire()
  lock.release()


def test_another_hosts_lock_holds_until_its_heartbeat_is_stale(tmp_path, caplog):
  _write_lock(tmp_path, host='tpu-worker-7', pid=12345, heartbeat=time.time() - 10)
  with pytest.raises(errors.PathError, match=r"host 'tpu-worker-7' pid 12345"):
    workdir_lock.WorkdirLock(str(tmp_path), stale_s=60).acquire()
  _write_lock(tmp_path, host='tpu-worker-7', pid=12345, heartbeat=time.time() - 61)
  lock = workdir_lock.WorkdirLock(str(tmp_path), stale_s=60)
  with caplog.at_level('WARNING'):
    lock.acquire()
  lock.release()
  assert 'its last heartbeat was 61 s ago (stale after 60 s)' in caplog.text


def test_the_holder_refreshes_its_heartbeat(tmp_path):
  lock = workdir_lock.WorkdirLock(str(tmp_path), heartbeat_s=0.05)
  lock.acquire()
  try:
    first = _holder(tmp_path)['heartbeat']
    time.sleep(0.5)
    assert _holder(tmp_path)['heartbeat'] > first
  finally:
    lock.release()


def test_only_the_writer_takes_the_lock(tmp_path):
  _write_lock(tmp_path)   # This process holds it: a second writer would be refused ...
  with workdir_lock.held(str(tmp_path), writer=False) as lock:   # ... a non-writer is not.
    assert lock is None
  with pytest.raises(errors.PathError, match='in use by another run'), \
      workdir_lock.held(str(tmp_path), writer=True):
    pass


@pytest.mark.slow
def test_a_second_run_is_refused_and_the_first_completes(tmp_path):
  workdir = tmp_path / 'work'
  args = [sys.executable, os.path.join(helpers.ROOT, 'main.py'),
          f'--config={helpers.ROOT}/configs/vivi.py:tiny', f'--workdir={workdir}',
          f'--config.data.cache_dir={tmp_path / "cache"}', '--config.num_train_steps=6',
          '--config.schedule.warmup_steps=2',
          '--config.data.synthetic.num_videos=24', '--config.data.synthetic.image_size=32',
          '--config.input.image_size=32', '--config.data.shuffle_buffer=8',
          '--config.model.width=0.25', '--config.probe.evaluators.linear_probe.datasets=()',
          '--config.probe.evaluators.object_nn.num_videos=0',
          '--config.probe.evaluators.object_discovery.num_videos=0']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  first = subprocess.Popen(args, cwd=helpers.ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  lock = workdir / workdir_lock.LOCK_FILE
  deadline = time.time() + 300
  while not lock.exists() and first.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  assert lock.exists(), first.communicate()[1][-3000:]
  second = subprocess.run(args, cwd=helpers.ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
  assert second.returncode == 2, second.stderr[-3000:]
  last = second.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: --workdir={workdir} is in use by another run: host '
                         f'{socket.gethostname()!r} pid {first.pid} '), last
  assert 'Traceback' not in second.stderr
  _, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-3000:]
  assert (workdir / 'probe_results.json').exists() and not lock.exists()
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['6']
