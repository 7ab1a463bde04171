"""Step time of the full VIVI train step on 1, 2, 4, 8 forced CPU devices, and an analytic
estimate of the paper config's FLOPs and all-reduce bytes on a TPU pod slice.

  python -m benchmarks.scaling [--devices 1,2,4,8 --videos_per_device 2 --iters 10]
                               [--paper_hlo_devices 32]

Measured: `vivi.train.make_train_step` of `configs/vivi.py:tiny` (the tiny encoder of
configs/common.py, TINY_MODEL: ResNet-14 v2 at width 0.25 with a 3x3 stride-2 stem and
pooled downsampling; exemplar + shot InfoNCE, 4 shots x 4 frames per video at
TINY_IMAGE_SIZE, 64 px, unless `--image_size` says otherwise), jitted with the project's
shardings (`train.jit_train_step`) over N forced CPU devices (one subprocess per N with
XLA_FLAGS=--xla_force_host_platform_device_count=N), on random uint8 frames, at a fixed
per-device batch (`--videos_per_device`, so the global batch grows with N). Prints a table:
devices, global frames, median step time (min-max), frames/s, t_N / (N t_1) (1.00 = the
sharded step costs what N one-device steps cost: all N devices share this machine's cores,
so ideal weak scaling is not flat here), and the bytes of collectives per step in the
compiled HLO (every all-reduce / all-gather / reduce-scatter / all-to-all /
collective-permute result, summed).

Analytic (no step is run; shapes and XLA's cost analysis of the *lowered* paper step):
`configs/vivi.py` (ResNet-50 v2, 512 videos x 4 shots x 8 frames at 224 px = 16,384 frames):
forward FLOPs per image at 224, the train step's FLOPs, parameters and their fp32 bytes, the
data-parallel gradient all-reduce per step (ring: each device sends and receives
2 (n - 1) / n x the gradient bytes) and the global-BatchNorm statistics all-reduce, with
compute and communication times at peak on a TPU v4-64 slice (32 chips). With
`--paper_hlo_devices N` it also compiles (does not run) the paper step sharded over N forced
CPU devices and prints the collectives XLA inserted, by kind, with their ring bytes (about a
minute for N=32).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks import timing

# TPU v4 (Cloud TPU documentation, "TPU v4"): 275 TFLOP/s bf16 per chip; the pod's 4,096
# chips have 1.1 PB/s of all-reduce bandwidth, i.e. ~270 GB/s per chip. A v4-64 slice has
# 64 TensorCores = 32 chips (one JAX device per chip, megacore).
TPU_V4_CHIP_FLOPS = 275e12
TPU_V4_ALLREDUCE_BYTES_PER_CHIP = 1.1e15 / 4096
TPU_V4_64_CHIPS = 32

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all',
               'collective-permute')
DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'u16': 2,
               'f32': 4, 's32': 4, 'u32': 4, 'f64': 8, 's64': 8, 'u64': 8}
_OP = re.compile(r'=\s*(.*?)\s+(' + '|'.join(COLLECTIVES) + r')(?:-start)?\(')
_SHAPE = re.compile(r'\b(' + '|'.join(DTYPE_BYTES) + r')\[([0-9,]*)\]')


def collective_bytes(hlo_text: str) -> dict[str, int]:
  """Bytes of the results of each kind of collective in an HLO module's text, per device."""
  out = {}
  for line in hlo_text.splitlines():
    m = _OP.search(line)
    if not m:
      continue
    size = 0
    for dtype, dims in _SHAPE.findall(m.group(1)):
      n = 1
      for d in filter(None, dims.split(',')):
        n *= int(d)
      size += n * DTYPE_BYTES[dtype]
    out[m.group(2)] = out.get(m.group(2), 0) + size
  return out


def _config(variant: str, overrides: dict):
  from configs import vivi
  config = vivi.get_config(variant)
  for path, value in overrides.items():
    *parents, leaf = path.split('.')
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


def worker(args) -> dict:
  """Runs in the subprocess: times the sharded tiny step on this process's devices."""
  import jax

  from vivi import optim, parallel, testing, train
  n = len(jax.devices())
  videos = args.videos_per_device * n
  overrides = {'input.batch_videos': videos}
  if args.image_size:
    overrides['input.image_size'] = args.image_size
  config = _config('tiny', overrides)
  model, tx = train.build_model(config), optim.make_optimizer(config)
  mesh = parallel.make_mesh()
  state = parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(0)),
                             mesh)
  batch = parallel.global_batch(testing.random_batch(config, videos), mesh)
  rng = jax.random.key(1)
  start = time.perf_counter()
  step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
  compiled = step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(args.warmup + args.iters):
    start = time.perf_counter()
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))
    if i >= args.warmup:
      times.append(time.perf_counter() - start)
  frames = batch['frames']
  return {'devices': n, 'videos': videos,
          'frames': int(frames.size // (frames.shape[-1] * frames.shape[-2] *
                                        frames.shape[-3])),
          'image_size': int(frames.shape[-2]), 'times': times, 'compile_s': compile_s,
          'loss': float(metrics['loss']), 'collectives': collective_bytes(compiled.as_text())}


def paper_hlo_worker() -> dict:
  """Runs in the subprocess: compiles the paper step over this process's devices."""
  import jax

  from vivi import optim, parallel, train
  config = _config('', {})
  model, tx = train.build_model(config), optim.make_optimizer(config)
  mesh = parallel.make_mesh()
  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  state = jax.eval_shape(lambda: train.create_train_state(config, model, tx, jax.random.key(0)))
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shard)
           for k, v in jax.eval_shape(lambda: train.init_batch(config)).items()}
  rng = jax.eval_shape(lambda: jax.random.key(1))
  start = time.perf_counter()
  step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
  compiled = step.lower(state, batch, rng).compile()
  return {'devices': len(jax.devices()), 'compile_s': time.perf_counter() - start,
          'collectives': collective_bytes(compiled.as_text())}


def run_subprocess(devices: int, argv: list[str]) -> dict:
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.scaling'] + argv, env=env,
                        cwd=timing.ROOT, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f'{devices} devices failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def mb(x: float) -> str:
  return f'{x / 1e6:,.1f} MB'


def measured(args):
  results = []
  for n in args.devices:
    argv = ['--worker', f'--videos_per_device={args.videos_per_device}',
            f'--iters={args.iters}', f'--warmup={args.warmup}',
            f'--image_size={args.image_size}']
    results.append(run_subprocess(n, argv))
    print(f'  {n} devices done (compile {results[-1]["compile_s"]:.0f} s)', file=sys.stderr)
  r0 = results[0]
  t1 = statistics.median(r0['times']) / r0['devices']
  rows = []
  for r in results:
    t = statistics.median(r['times'])
    rows.append([r['devices'], f"{r['videos']} x 4 x 4 = {r['frames']}",
                 f"{1000 * t:.0f} ({1000 * min(r['times']):.0f}-{1000 * max(r['times']):.0f})",
                 f"{r['frames'] / t:.0f}", f"{t / (r['devices'] * t1):.2f}",
                 mb(sum(r['collectives'].values())) if r['devices'] > 1 else '-'])
  m = _config('tiny', {}).model
  print(f"\nVIVI train step (configs/vivi.py:tiny, ResNet-{m.depth} v2 width {m.width:g}, "
        f"{r0['image_size']} px), {args.videos_per_device} videos per device, "
        f"{timing.machine().split(', jax')[0]}; {args.warmup} warm-up + {args.iters} "
        f"steps per row:\n")
  print(timing.table(['devices', 'videos x shots x frames', 'step ms (min-max)', 'frames/s',
                      't_N / (N t_1)', 'collectives/step (HLO)'], rows))


def analytic(args):
  import jax
  import jax.numpy as jnp
  import numpy as np

  from vivi import optim, train
  config = _config('', {})
  model, tx = train.build_model(config), optim.make_optimizer(config)
  state = jax.eval_shape(lambda: train.create_train_state(config, model, tx, jax.random.key(0)))
  batch = jax.eval_shape(lambda: train.init_batch(config))
  rng = jax.eval_shape(lambda: jax.random.key(0))
  step_flops = timing.flops(jax.jit(train.make_train_step(config, model, tx))
                            .lower(state, batch, rng))
  size = config.input.image_size
  enc = model.encoder
  enc_vars = jax.eval_shape(enc.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  forward = timing.flops(jax.jit(lambda v, x: enc.apply(v, x)).lower(
      enc_vars, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)))
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  params, encoder = count(state.params), count(state.params['encoder'])
  bn_channels = count(state.batch_stats) // 2
  frames = int(np.prod(batch['frames'].shape[:-3]))
  n = TPU_V4_64_CHIPS
  grad_bytes = 4 * params
  ring = 2 * (n - 1) / n * grad_bytes
  # Global BatchNorm: the forward pass all-reduces each layer's per-channel sum and sum of
  # squares, the backward pass two per-channel sums: 4 fp32 numbers per channel.
  bn_bytes = 4 * 4 * bn_channels
  compute_s = step_flops / (n * TPU_V4_CHIP_FLOPS)
  comm_s = (ring + 2 * (n - 1) / n * bn_bytes) / TPU_V4_ALLREDUCE_BYTES_PER_CHIP
  v = config.input
  rows = [
      [f'encoder forward per image at {size} px (XLA, lowered)', f'{forward / 1e9:.2f} GFLOP'],
      ['  published ResNet-50 (v1, multiply-adds)', '~4.1 G'],
      [f'train step, {v.batch_videos} x {v.num_shots} x {v.frames_per_shot} = {frames:,} '
       'frames (XLA, lowered)', f'{step_flops / 1e12:,.1f} TFLOP'],
      ['  3 x forward x frames', f'{3 * forward * frames / 1e12:,.1f} TFLOP'],
      ['parameters: encoder / all (heads incl.)', f'{encoder:,} / {params:,}'],
      ['fp32 parameter (= gradient) bytes', mb(grad_bytes)],
      [f'ring all-reduce per chip per step, n={n}: 2 (n-1)/n x gradient', mb(ring)],
      [f'global BatchNorm statistics ({bn_channels:,} channels) per step', mb(bn_bytes)],
      [f'TPU v4-64 ({n} chips): {v.batch_videos // n} videos = {frames // n} frames per chip',
       ''],
      ['  compute at 275 TFLOP/s/chip (bf16 passes), 100% / 40% MFU',
       f'{1000 * compute_s:.0f} ms / {1000 * compute_s / 0.4:.0f} ms'],
      ['  all-reduce at ~270 GB/s/chip (1.1 PB/s pod / 4096 chips)', f'{1000 * comm_s:.2f} ms'],
  ]
  print('\nPaper config (configs/vivi.py), analytic:\n')
  print(timing.table(['quantity', 'value'], rows))
  print('\nNot counted above: objectives over the global batch (the triplet loss and InfoNCE '
        'compare\nembeddings across devices), whose collectives the XLA partitioner picks; '
        '--paper_hlo_devices\nN lists those it inserts.')


def paper_hlo(args):
  n = args.paper_hlo_devices
  r = run_subprocess(n, ['--paper_hlo_worker'])
  # Bytes each device sends (and receives) per byte of result with ring algorithms.
  wire = {'all-reduce': 2 * (n - 1) / n, 'all-gather': (n - 1) / n,
          'reduce-scatter': n - 1, 'all-to-all': (n - 1) / n, 'collective-permute': 1}
  rows = [[kind, mb(size), mb(wire[kind] * size)]
          for kind, size in sorted(r['collectives'].items())]
  total = sum(wire[k] * v for k, v in r['collectives'].items())
  rows.append(['total', mb(sum(r['collectives'].values())), mb(total)])
  print(f'\nPaper step compiled for {n} forced CPU devices ({r["compile_s"]:.0f} s), '
        'collectives per device per step\n(HLO result bytes, and bytes sent per device by '
        'ring algorithms):\n')
  print(timing.table(['collective', 'result bytes', 'ring bytes sent'], rows))
  print(f'\nAt ~270 GB/s per TPU v4 chip: {1000 * total / TPU_V4_ALLREDUCE_BYTES_PER_CHIP:.1f} '
        'ms per step.')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--devices', default='1,2,4,8', help="'' skips the measurement")
  parser.add_argument('--videos_per_device', type=int, default=2)
  parser.add_argument('--image_size', type=int, default=0, help='0: the tiny config\'s (64)')
  parser.add_argument('--iters', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--no_analytic', action='store_true')
  parser.add_argument('--paper_hlo_devices', type=int, default=0)
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--paper_hlo_worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(args)))
    return
  if args.paper_hlo_worker:
    print(json.dumps(paper_hlo_worker()))
    return
  args.devices = [int(d) for d in args.devices.split(',') if d]
  if args.devices:
    measured(args)
  if not args.no_analytic:
    analytic(args)
  if args.paper_hlo_devices:
    paper_hlo(args)


if __name__ == '__main__':
  main()
