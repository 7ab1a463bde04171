r"""Runs a script as a multi-process JAX job on this machine: N processes, each with its own
CPU devices, joined by jax.distributed over localhost (gloo collectives). How the tests
check that 2 processes x 4 devices compute what 1 process x 8 devices computes, and a way
to try multi-host code paths (per-host input shards, collective checkpoints) on a laptop.

  python launch/local.py --processes=2 --devices_per_process=4 -- \
      main.py --config=configs/vivi_obj.py:tiny --workdir=/tmp/vivi_obj_2x4

Every process gets JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID (read by
`vivi.parallel.initialize`, which main.py and evaluate.py call first) and
XLA_FLAGS=--xla_force_host_platform_device_count=<devices_per_process>. Output lines are
prefixed with the process id. If one process fails the others are stopped; SIGTERM is
passed on to all of them (pre-emption), and the exit status is the first non-zero one.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading

from vivi import cli, errors


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _pump(stream, prefix: str, out) -> None:
  for line in stream:
    out.write(f'[{prefix}] {line}')
    out.flush()


def run(command: list[str], processes: int, devices_per_process: int,
        port: int = 0) -> int:
  """Starts `python command...` `processes` times; returns the job's exit status."""
  address = f'localhost:{port or _free_port()}'
  procs, pumps = [], []
  for i in range(processes):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(processes),
               JAX_PROCESS_ID=str(i), JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices_per_process}')
    p = subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    procs.append(p)
    pumps.append(threading.Thread(target=_pump, args=(p.stdout, str(i), sys.stdout),
                                  daemon=True))
    pumps[-1].start()
  forward = lambda signum, frame: [p.send_signal(signum) for p in procs if p.poll() is None]
  previous = signal.signal(signal.SIGTERM, forward)
  status = 0
  try:
    remaining = list(procs)
    while remaining:
      for p in list(remaining):
        try:
          code = p.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
          continue
        remaining.remove(p)
        if code and not status:
          status = code
          for other in remaining:  # A job with a dead process would hang in collectives.
            other.terminate()
  finally:
    signal.signal(signal.SIGTERM, previous)
    for t in pumps:
      t.join(timeout=5)
  return status


def main() -> None:
  parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--processes', type=int, default=2)
  parser.add_argument('--devices_per_process', type=int, default=4)
  parser.add_argument('--port', type=int, default=0, help='coordinator port (0: any free)')
  parser.add_argument('command', nargs=argparse.REMAINDER,
                      help='-- script.py [its arguments]')
  args = parser.parse_args()
  command = args.command[1:] if args.command[:1] == ['--'] else args.command
  if not command:
    parser.error('give the script to run after --')
  if not command[0].startswith('-') and not os.path.isfile(command[0]):  # Not -c or -m.
    raise errors.MissingPathError(f'{command[0]}: no such script to run')
  sys.exit(run(command, args.processes, args.devices_per_process, args.port))


if __name__ == '__main__':
  cli.script(main)
