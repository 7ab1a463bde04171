r"""Does an XLA:CPU flag speed up a tiny run? Steps/s with and without it, side by side.

  python -m benchmarks.xla_flags                                  # oneDNN, vivi_obj:tiny
  python -m benchmarks.xla_flags --config=configs/vito.py:tiny --rounds=3

Runs the README's main command for `--steps` steps (probes and checkpoints off) `--rounds`
times with and without `--flag` in XLA_FLAGS, alternating the two so that a change in the
machine's load hits both, and prints each run's median steps/s (the training loop's
`steps_per_sec` lines after the first `--skip` steps, so compilation is excluded) and the
ratio flag / no flag per round. Other jobs on the machine make the ratios noisy: run it alone.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

from benchmarks.timing import ROOT


def steps_per_second(config: str, steps: int, skip: int, xla_flags: str) -> float:
  env = dict(os.environ, XLA_FLAGS=xla_flags)
  with tempfile.TemporaryDirectory() as workdir:
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'main.py'), f'--config={config}',
         f'--workdir={workdir}', f'--config.num_train_steps={steps}',
         '--config.probe.evaluators.linear_probe.datasets=()',
         '--config.probe.evaluators.object_nn.num_videos=0',
         '--config.probe.evaluators.object_discovery.num_videos=0',
         f'--config.checkpoint_every_steps={steps}'],
        cwd=ROOT, env=env, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f'{config} with XLA_FLAGS={xla_flags!r} failed:\n{out.stderr[-3000:]}')
  rates = [float(r) for s, r in re.findall(r'\[(\d+)\] steps_per_sec=([0-9.]+)', out.stderr)
           if int(s) > skip]
  if not rates:
    raise RuntimeError(f'no steps_per_sec line after step {skip}; raise --steps')
  return statistics.median(rates)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default=os.path.join(ROOT, 'configs/vivi_obj.py') + ':tiny')
  parser.add_argument('--flag', default='--xla_cpu_use_onednn=true')
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--skip', type=int, default=50, help='steps left out (compilation)')
  parser.add_argument('--rounds', type=int, default=2)
  args = parser.parse_args()
  base = os.environ.get('XLA_FLAGS', '')
  print(f'{args.config}, {args.steps} steps, median steps/s after step {args.skip}')
  print('| round | without | with | ratio |\n| --- | --- | --- | --- |')
  ratios = []
  for k in range(args.rounds):
    without = steps_per_second(args.config, args.steps, args.skip, base)
    with_flag = steps_per_second(args.config, args.steps, args.skip,
                                 f'{base} {args.flag}'.strip())
    ratios.append(with_flag / without)
    print(f'| {k + 1} | {without:.2f} | {with_flag:.2f} | {ratios[-1]:.2f} |', flush=True)
  print(f'median ratio with {args.flag} / without: {statistics.median(ratios):.2f} '
        f'(min {min(ratios):.2f}, max {max(ratios):.2f})')


if __name__ == '__main__':
  main()
