"""What runs on an accelerator image: the model, the objectives and the train step import and
run without TensorFlow (GPU images have none), and the full train step compiles for a TPU
topology on this CPU host (libtpu, the `tpu` extra), so a change that breaks either fails
here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WITHOUT_TENSORFLOW = textwrap.dedent('''
    import sys
    for hidden in ('tensorflow', 'tensorflow_datasets', 'skimage'):
      sys.modules[hidden] = None   # Any import of them fails.
    import importlib
    import jax
    import numpy as np
    from vivi import optim, parallel, testing, train
    for name in ('vivi_obj', 'vivi_cotrain', 'vince', 'vito', 'detcon', 'odin', 'supervised'):
      config = importlib.import_module('configs.' + name).get_config('tiny')
      model, tx = train.build_model(config), optim.make_optimizer(config)
      jax.eval_shape(lambda: train.create_train_state(config, model, tx, jax.random.key(0)))
      batch = testing.random_batch(config, 2)
    config = importlib.import_module('configs.vivi_obj').get_config('tiny')
    config.input.batch_videos = 2
    model, tx = train.build_model(config), optim.make_optimizer(config)
    state = train.create_train_state(config, model, tx, jax.random.key(0))
    mesh = parallel.make_mesh()
    step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
    state, metrics = step(parallel.replicate(state, mesh),
                          parallel.global_batch(testing.random_batch(config), mesh),
                          jax.random.key(1))
    assert np.isfinite(float(metrics['loss'])), metrics
    print('ok', float(metrics['loss']))
''')


def test_model_objectives_and_step_run_without_tensorflow():
  out = subprocess.run([sys.executable, '-c', WITHOUT_TENSORFLOW], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 0 and 'ok ' in out.stdout, out.stderr[-3000:]


def test_a_tiny_configs_full_step_compiles_for_a_tpu_topology():
  """`benchmarks.aot` on v4:2x2x1 (8 TPU v4 chips): a batch the slice does not divide is
  refused before compiling, naming what would divide; the tiny VIVI + objects step that
  main.py runs (boxes, every objective) is lowered and compiled by libtpu. One test, since
  libtpu allows one process at a time."""
  pytest.importorskip('libtpu', reason='the tpu extra is not installed (pip install -e .[tpu])')
  aot = lambda *flags: subprocess.run(
      [sys.executable, '-m', 'benchmarks.aot', '--topology=v4:2x2x1', '--no_record', *flags],
      cwd=ROOT, capture_output=True, text=True, timeout=900)
  out = aot('--config=configs/vince.py', '--config.input.batch_videos=12')
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1] == (
      'error: config.input.batch_videos=12 does not divide over the 8 devices of v4:2x2x1; '
      'the nearest batches that 8 devices divide: 8 or 16; the device counts that divide '
      '12: [1, 2, 4]')
  out = aot('--config=configs/vivi_obj.py:tiny', '--config.input.batch_videos=8')
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'on v4:2x2x1 (8 x TPU v4, float32' in out.stdout, out.stdout
  assert 'TFLOP per device per step' in out.stdout and 'HBM' in out.stdout, out.stdout


def test_the_committed_aot_tables_are_what_the_records_render():
  from benchmarks import aot
  with open(aot.README) as f:
    text = f.read()
  committed = text.split(aot.TABLE_BEGIN, 1)[1].split(aot.TABLE_END, 1)[0]
  assert committed == f'\n{aot.table()}\n\n{aot.feed_table()}\n', (
      'benchmarks/README.md: the AOT tables differ from the records; run '
      'python -m benchmarks.aot --table')


def test_collective_bytes_count_each_collective_once_by_its_output():
  """Hand-computed: an async all-gather counts its output (32 x 8 f32 = 1024 B), not its
  operand; an all-reduce pair counts once at its start (10 f32 = 40 B); a reduce-scatter its
  bf16 output (2 x 3 x 2 B = 12 B)."""
  from benchmarks import aot
  hlo = '\n'.join([
      '  %ag = (f32[4,8]{1,0}, f32[32,8]{1,0}) all-gather-start(%p), dimensions={0}',
      '  %agd = f32[32,8]{1,0} all-gather-done(%ag)',
      '  %ar = f32[10]{0} all-reduce-start(%x), to_apply=%add',
      '  %ard = f32[10]{0} all-reduce-done(%ar)',
      '  %rs = bf16[2,3]{1,0} reduce-scatter(%y), dimensions={0}',
      '  %add = f32[10]{0} add(%x, %x)'])
  assert aot.collective_bytes(hlo) == {'all-reduce': 40, 'all-gather': 1024,
                                       'reduce-scatter': 12, 'all-to-all': 0,
                                       'collective-permute': 0}
  assert aot.divisible_batches(224, 128) == (
      'the nearest batches that 128 devices divide: 128 or 256; the device counts that divide '
      '224: [1, 2, 4, 8, 16, 32]')
