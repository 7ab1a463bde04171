"""Achieved FLOP/s of our train step against the machine's measured fp32 matmul peak.

  python -m benchmarks.flops [--batch 32 --image_size 112 --iters 10 --depth 50
                             --matmul_size 4096]

The train step is benchmarks/train_step.py's (ours: ResNet v2 BatchNorm + linear classifier, SGD
momentum, fp32, one device). Its FLOPs come from XLA's cost analysis of the compiled step
(`jax.jit(...).lower(...).compile().cost_analysis()`), next to the forward pass alone (pooled
features, inference mode) for scale. The peak is an fp32 product of two [matmul_size,
matmul_size] matrices (2 n^3 FLOPs), measured two ways: a jitted `jnp.dot` (XLA:CPU's own
matmul) and NumPy's `@` (the BLAS NumPy links, e.g. OpenBLAS), which on this machine is
faster; the machine's peak is the faster of the two. The step and both matmuls are timed in
alternating rounds (timing.alternate). Prints a table: FLOPs per step and per image, median
step time, achieved GFLOP/s; each matmul's median and best GFLOP/s; and the fraction of
each matmul's median GFLOP/s that the step achieves.
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing


def matmul(n: int):
  """(run, compiled): one fp32 [n, n] x [n, n] product, blocking."""
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
  compiled = jax.jit(jnp.dot).lower(a, b).compile()
  return (lambda: compiled(a, b).block_until_ready()), compiled


def numpy_matmul(n: int):
  """`run()`: one fp32 [n, n] x [n, n] product with NumPy's BLAS."""
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
  return lambda: a @ b


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--image_size', type=int, default=112)
  parser.add_argument('--iters', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--depth', type=int, default=50)
  parser.add_argument('--matmul_size', type=int, default=4096)
  args = parser.parse_args()

  print(timing.machine())
  images, labels = timing.random_batch(args.batch, args.image_size)
  step, step_compiled = timing.flax_train_step(timing.ours(args.depth), images, labels)
  _, forward_compiled = timing.flax_features(timing.ours(args.depth), images)
  mm, mm_compiled = matmul(args.matmul_size)
  step_flops = timing.flops(step_compiled)
  forward_flops = timing.flops(forward_compiled)
  mm_flops = timing.flops(mm_compiled)
  expected = 2 * args.matmul_size**3
  if abs(mm_flops - expected) > 0.01 * expected:
    print(f'note: XLA counts {mm_flops:.4g} FLOPs for the matmul, 2 n^3 = {expected:.4g}')

  times = timing.alternate({'train step': step, 'jnp.dot': mm,
                            'numpy': numpy_matmul(args.matmul_size)}, args.iters, args.warmup)
  step_s = statistics.median(times['train step'])
  achieved = step_flops / step_s
  median = {k: expected / statistics.median(times[k]) for k in ('jnp.dot', 'numpy')}
  best = {k: expected / min(times[k]) for k in ('jnp.dot', 'numpy')}
  peak = max(median.values())

  b, s = args.batch, args.image_size
  print(f'\nResNet-{args.depth} v2 BatchNorm train step, batch {b} at {s} px, fp32, one '
        f'device; {args.warmup} warm-up + {args.iters} alternating rounds:\n')
  g = lambda x: f'{x / 1e9:,.1f}'
  print(timing.table(['quantity', 'value'], [
      ['train step FLOPs (XLA cost analysis), GFLOP', g(step_flops)],
      ['  per image, GFLOP', f'{step_flops / b / 1e9:.2f}'],
      ['forward only (inference) per image, GFLOP', f'{forward_flops / b / 1e9:.2f}'],
      ['  train step / forward', f'{step_flops / forward_flops:.2f}'],
      ['median train step, ms', f'{1000 * step_s:.0f}'],
      ['achieved train step, GFLOP/s', g(achieved)],
      *[[f'fp32 matmul [{args.matmul_size}]^2 x [{args.matmul_size}]^2, {k}, GFLOP/s '
         '(median / best)', f'{g(median[k])} / {g(best[k])}'] for k in median],
      *[[f'fraction of {k} matmul (median)', f'{achieved / median[k]:.1%}'] for k in median],
      ['fraction of machine fp32 peak (faster matmul, median)', f'{achieved / peak:.1%}'],
  ]))


if __name__ == '__main__':
  main()
