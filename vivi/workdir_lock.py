"""One training run per workdir: a lock file that names its holder and proves it is alive.

Two runs on one workdir would interleave their checkpoints, events and input states into a
mix of both. The run that writes the workdir (process 0; the others write nothing there
but their own input states and are not refused) creates `<workdir>/lock.json` exclusively
and holds it until it ends. It says who holds it (host, pid, command, start) and when the
holder last said it was alive: a background thread rewrites `heartbeat` every
`HEARTBEAT_S` seconds.

A lock whose holder is gone does not block the next run. It is stale, and is taken over
with a warning, when
  - it names this host and a pid that is not running here (a run killed with -9, a crash
    the `finally` did not see), or its pid now belongs to a process that started after
    the lock did (the pid was reused), or
  - its heartbeat is older than `STALE_S` seconds (a lost machine: its pid cannot be
    checked from here, and it stopped refreshing).
Otherwise the run is refused at once (`errors.PathError`) with the holder's host and pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

from absl import logging

from vivi import errors

LOCK_FILE = 'lock.json'
HEARTBEAT_S = 30.0
STALE_S = 300.0   # Ten missed heartbeats.


def _clock_ticks_per_s() -> float:
  try:
    return float(os.sysconf('SC_CLK_TCK'))
  except (ValueError, OSError, AttributeError):
    return 100.0


def _process_start(pid: int) -> float | None:
  """When process `pid` started (seconds since the epoch), from /proc; None where unknown."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    with open('/proc/stat') as f:
      boot = next(float(line.split()[1]) for line in f if line.startswith('btime'))
  except (OSError, StopIteration, IndexError, ValueError):
    return None
  return boot + float(fields[19]) / _clock_ticks_per_s()   # Field 22 of stat: starttime.


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # Someone else's process: alive.
    return True
  return True


def stale_reason(holder: dict, now: float, stale_s: float = STALE_S) -> str | None:
  """Why the lock `holder` (the lock file's contents) no longer holds, or None if it does."""
  age = now - float(holder.get('heartbeat', 0))
  if age > stale_s:
    return f'its last heartbeat was {age:.0f} s ago (stale after {stale_s:.0f} s)'
  if holder.get('host') == socket.gethostname():
    pid = int(holder.get('pid', -1))
    if pid <= 0 or not _pid_alive(pid):
      return f'process {pid} is not running on {holder["host"]}'
    started = _process_start(pid)
    # One second of slack: /proc's start time is in clock ticks since boot.
    if started is not None and started > float(holder.get('started', 0)) + 1.0:
      return f'pid {pid} now belongs to a process that started after the lock was taken'
  return None


def _describe(holder: dict, path: str) -> str:
  return (f'host {holder.get("host")!r} pid {holder.get("pid")} (started '
          f'{time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))}, '
          f'command {holder.get("command", "?")!r}) holds {path}')


class WorkdirLock:
  """The lock of one workdir, held from `acquire` to `release` (see the module docstring)."""

  def __init__(self, workdir: str, heartbeat_s: float = HEARTBEAT_S,
               stale_s: float = STALE_S):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
    self.holder = {'host': socket.gethostname(), 'pid': os.getpid(),
                   'started': _process_start(os.getpid()) or time.time(),
                   'command': ' '.join(sys.argv)[:300]}
    self._stop = threading.Event()
    self._thread = None

  def acquire(self) -> None:
    """Takes the lock, or raises PathError naming the live run that holds it."""
    os.makedirs(self.workdir, exist_ok=True)
    for _ in range(3):   # A stale lock removed here may be taken by another run first.
      if self._create():
        self._thread = threading.Thread(target=self._beat, name='workdir-lock', daemon=True)
        self._thread.start()
        return
      holder = self._read()
      if holder is None:  # Being written by the run that created it: look again.
        time.sleep(0.2)
        continue
      reason = stale_reason(holder, time.time(), self.stale_s)
      if reason is None:
        raise errors.PathError(
            f'--workdir={self.workdir} is in use by another run: {_describe(holder, self.path)}'
            f'. Wait for it to end, or use another --workdir; if that run is dead, delete '
            f'{self.path}.')
      logging.warning('Taking over the lock of a run that is gone: %s; %s.',
                      _describe(holder, self.path), reason)
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)
    raise errors.PathError(f'{self.path}: could not take the lock (other runs keep taking '
                           f'it); use another --workdir')

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    holder = self._read()
    if holder is not None and holder.get('pid') == self.holder['pid'] and \
        holder.get('host') == self.holder['host']:
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)

  def _create(self) -> bool:
    """Creates the lock file exclusively (O_EXCL: of two runs, one wins); False if it exists."""
    try:
      fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      return False
    try:
      with os.fdopen(fd, 'w') as f:
        json.dump({**self.holder, 'heartbeat': time.time()}, f)
    except OSError as e:
      os.remove(self.path)
      raise errors.PathError(f'{self.path}: cannot write the workdir lock: {e.strerror}') from None
    return True

  def _read(self) -> dict | None:
    try:
      with open(self.path) as f:
        holder = json.load(f)
    except FileNotFoundError:
      return None
    except ValueError:   # Being written by its creator (milliseconds), or damaged.
      holder = None
      with contextlib.suppress(FileNotFoundError):
        if time.time() - os.path.getmtime(self.path) < 5.0:
          return None
    if not isinstance(holder, dict):
      return {'host': '?', 'pid': -1, 'heartbeat': 0, 'command': 'a damaged lock file'}
    return holder

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      holder = self._read()
      if holder is not None and (holder.get('host'), holder.get('pid')) != (
          self.holder['host'], self.holder['pid']):
        logging.error('%s was taken over by another run (%s): this run missed its '
                      'heartbeats for %.0f s; the workdir now has two writers.', self.path,
                      _describe(holder, self.path), self.stale_s)
        return
      tmp = f'{self.path}.{os.getpid()}.tmp'
      try:
        with open(tmp, 'w') as f:
          json.dump({**self.holder, 'heartbeat': time.time()}, f)
        os.replace(tmp, self.path)   # Atomic: a reader sees the old or the new heartbeat.
      except OSError as e:           # A full disk must not kill the run; the save will say.
        logging.warning('Could not refresh the heartbeat of %s: %s', self.path, e)


@contextlib.contextmanager
def held(workdir: str, writer: bool, **kwargs) -> Iterator[WorkdirLock | None]:
  """Holds the workdir's lock for the block when `writer` (process 0); others take none."""
  if not writer:
    yield None
    return
  lock = WorkdirLock(workdir, **kwargs)
  lock.acquire()
  try:
    yield lock
  finally:
    lock.release()
