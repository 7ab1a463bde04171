"""Tiny encoders trained WITH LABELS on the synthetic world's `class` task: which one learns shape?

  python -m projects.synthetic_world.tiny_encoder --runs 'cnn' 'depth=14,stem=small,stride=1' \\
      --steps 400,800,1600 --seeds 0,1 [--test]

Each `--runs` entry is a comma-separated list of key=value overriding `DEFAULTS`: depth
(14/26/50), width, stem ('imagenet' / 'small'), stride (the small stem's), px (image size),
lr, wd (AdamW weight decay), zinit (1: the last 1x1 convolution of every residual branch
starts at zero), bn_mom (BatchNorm momentum; the encoder's is 0.99). 'cnn' is the plain-CNN
reference (keys px, lr, wd, cnn_bn=0: without BatchNorm, cnn_pool=0: stride-2
convolutions instead of max-pools). pool=1 makes the ResNet's stride-2 units downsample
by pooling (`resnet_v2.ResNetV2(downsample='pool')`: 3x3 convolution at stride 1, then
max-pool; average-pooled shortcut), which the tiny configs use (configs/common.py).

Data: `synthetic_tasks.render_downstream('class', ...)` with seed 1 (the probe's), 7,000
'train' images split 6,000 for training / 1,000 for VALIDATION, and the 1,000 'test'
images, cached in /tmp/tiny_encoder_class_<px>px.npz. uint8 -> x/127.5 - 1 as
`video_model.normalize_images`; random horizontal flips while training.

Recipe (per run, each step count a separate run with its own schedule): batch 64, AdamW
(lr, cosine decay to 0 over the run, weight decay wd), softmax cross-entropy of Dense(10) on
the globally-pooled 'pre_logits'. BatchNorm in train mode while training; evaluation with
the running averages ('val') and, to diagnose a train/eval mismatch, with the statistics
of each evaluation batch of 500 ('val, batch stats'). 'train' is the accuracy on 1,000 of
the training images (running averages, no flips).

Selection is on validation only: test accuracy is computed only with `--test` (after the
choice), from the parameters each run saved in /tmp/tiny_encoder_params. Results
accumulate in --results (JSON; a run already there is not repeated), so several
invocations build one table. Seconds per training image: median time of the jitted train
step (forward + backward + AdamW update; batch `--batch`) after compilation and 3 warm-up
steps, over 15 steps, divided by the batch; GFLOP per training image from XLA's cost
analysis of the same compiled step (independent of the machine's load).

`--onednn N` instead times each `--runs` entry N times in separate processes, alternating
with and without XLA_FLAGS=--xla_cpu_use_onednn=true, and prints the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing
from projects.synthetic_world import ROOT
from vivi.input import synthetic_tasks
from vivi.models import resnet_v2, video_model

NUM_CLASSES = synthetic_tasks.DOWNSTREAM_TASKS['class']
NUM_TRAIN, NUM_VAL, NUM_TEST = 6000, 1000, 1000
PROBE_SEED = 1
EVAL_BATCH = 500
DEFAULTS = dict(arch='resnet', depth=14, width=0.5, stem='imagenet', stride=1, px=48,
                lr=2e-3, wd=1e-4, zinit=0, bn_mom=0.99, cnn_bn=1,
                cnn_pool=1, pool=0)
PARAMS_DIR = '/tmp/tiny_encoder_params'


# ---------------------------------------------------------------------------------------------
# Runs, data, models.


def parse_run(text: str) -> dict:
  spec = dict(DEFAULTS)
  for part in text.split(','):
    part = part.strip()
    if not part:
      continue
    if part == 'cnn':
      spec['arch'] = 'cnn'
      continue
    key, _, value = part.partition('=')
    if key not in DEFAULTS:
      raise ValueError(f'unknown key {key!r} in run {text!r}; valid: {sorted(DEFAULTS)}')
    spec[key] = type(DEFAULTS[key])(value) if key != 'width' else float(value)
  if spec['arch'] == 'cnn':  # Only what the CNN uses.
    spec = {k: spec[k] for k in ('arch', 'px', 'lr', 'wd', 'cnn_bn', 'cnn_pool')}
  elif spec['stem'] == 'imagenet':
    spec['stride'] = 2  # Its 7x7 convolution has stride 2 (plus the max-pool).
  return canonical(spec)


def run_key(spec: dict, seed: int, steps: int) -> str:
  return json.dumps(dict(spec, seed=seed, steps=steps), sort_keys=True)


def describe(spec: dict) -> str:
  if spec['arch'] == 'cnn':
    return ('plain CNN (8 conv 3x3 16-128 ch, ' +
            ('3 max-pools' if spec['cnn_pool'] else '3 stride-2 convs, no pool') +
            (', BN)' if spec['cnn_bn'] else ', no BN)'))
  extra = ''.join([' zero-init' if spec['zinit'] else '',
                   ', pooled downsampling' if spec.get('pool') else '',
                   f" bn_mom {spec['bn_mom']}" if spec['bn_mom'] != 0.99 else ''])
  stem = 'imagenet 7x7/2+pool' if spec['stem'] == 'imagenet' else f"small 3x3/{spec['stride']}"
  return f"ResNet-{spec['depth']} v2 w{spec['width']:g}, {stem}{extra}"


def load_data(px: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  path = f'/tmp/tiny_encoder_class_{px}px.npz'
  if not os.path.exists(path):
    start = time.time()
    x, y = synthetic_tasks.render_downstream('class', 'train', NUM_TRAIN + NUM_VAL,
                                             image_size=px, seed=PROBE_SEED)
    xt, yt = synthetic_tasks.render_downstream('class', 'test', NUM_TEST, image_size=px,
                                               seed=PROBE_SEED)
    np.savez(path + '.tmp.npz', x=x, y=y, xt=xt, yt=yt)
    os.replace(path + '.tmp.npz', path)
    print(f'rendered {px} px data in {time.time() - start:.0f} s -> {path}', flush=True)
  d = np.load(path)
  x, y = d['x'], d['y']
  return {'train': (x[:NUM_TRAIN], y[:NUM_TRAIN]), 'val': (x[NUM_TRAIN:], y[NUM_TRAIN:]),
          'test': (d['xt'], d['yt'])}


class PlainCNN(nn.Module):
  """The reference: 3x3 convolutions 16, 16, pool, 32, 32, pool, 64, 64, pool, 128, 128,
  each followed by BatchNorm (as the encoder's, momentum 0.99) and ReLU, or by ReLU alone
  (`batch_norm=False`, Flax's default LeCun-normal initialisation). `max_pool=False`
  downsamples as the ResNets do instead: the second convolution of each pair has stride 2."""
  batch_norm: bool = True
  max_pool: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, c in enumerate((16, 16, 32, 32, 64, 64, 128, 128)):
      stride = 1 if self.max_pool or i not in (1, 3, 5) else 2
      x = nn.Conv(c, (3, 3), stride, padding='SAME', use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                         epsilon=resnet_v2.BN_EPSILON)(x)
      x = nn.relu(x)
      if self.max_pool and i in (1, 3, 5):
        x = nn.max_pool(x, (2, 2), (2, 2))
    return {'block4': x, 'pre_logits': jnp.mean(x, axis=(1, 2))}


class Classifier(nn.Module):
  spec: dict

  @nn.compact
  def __call__(self, images, train: bool = False):
    x = video_model.normalize_images(images)
    s = self.spec
    if s['arch'] == 'cnn':
      out = PlainCNN(batch_norm=bool(s['cnn_bn']), max_pool=bool(s['cnn_pool']),
                     name='encoder')(x, train)
    else:
      out = resnet_v2.ResNetV2(depth=s['depth'], width=s['width'], stem=s['stem'],
                               stem_stride=s['stride'],
                               downsample='pool' if s.get('pool') else 'stride',
                               name='encoder')(x, train)
    return out, nn.Dense(NUM_CLASSES, name='head')(out['pre_logits'])


def init(spec: dict, seed: int):
  model = Classifier(spec)
  x = jnp.zeros((2, spec['px'], spec['px'], 3), jnp.uint8)
  variables = model.init(jax.random.key(seed), x, train=False)
  params = variables['params']
  if spec.get('zinit'):  # Residual branches start as the identity (Goyal et al. 2017).
    params = flax.core.unfreeze(params)
    for name, unit in params['encoder'].items():
      if name.startswith('stage'):
        unit['conv3']['kernel'] = jnp.zeros_like(unit['conv3']['kernel'])
  out, _ = jax.eval_shape(lambda: model.apply(variables, x))
  sizes = {k: v.shape[1] for k, v in out.items() if k.startswith('block')}
  return model, params, variables.get('batch_stats', {}), sizes


def make_step(model, tx, bn_mom: float):
  def loss_fn(params, stats, images, labels):
    variables = {'params': params, 'batch_stats': stats} if stats else {'params': params}
    (_, logits), new = model.apply(variables, images, train=True, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, new.get('batch_stats', {})

  @jax.jit
  def step(params, stats, opt_state, images, labels, key):
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1], images)
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, stats, images, labels)
    if bn_mom != 0.99:  # Flax used 0.99; re-mix the running averages with another momentum.
      new_stats = jax.tree.map(
          lambda old, new: old + (new - old) * (1 - bn_mom) / (1 - 0.99), stats, new_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss

  return step


def make_eval(model):
  @jax.jit
  def logits_running(params, stats, images):
    variables = {'params': params, 'batch_stats': stats} if stats else {'params': params}
    return model.apply(variables, images, train=False)[1]

  @jax.jit
  def logits_batch(params, stats, images):
    variables = {'params': params, 'batch_stats': stats} if stats else {'params': params}
    return model.apply(variables, images, train=True, mutable=['batch_stats'])[0][1]

  def accuracy(params, stats, data, batch_stats=False):
    images, labels = data
    fn = logits_batch if batch_stats else logits_running
    hits = 0
    for i in range(0, len(images), EVAL_BATCH):
      logits = fn(params, stats, images[i:i + EVAL_BATCH])
      hits += int(np.sum(np.asarray(jnp.argmax(logits, -1)) == labels[i:i + EVAL_BATCH]))
    return hits / len(images)

  return accuracy


def time_step(spec: dict, batch: int, iters: int = 15, warmup: int = 3) -> float:
  """Median seconds per training image of the compiled step (forward + backward + update)."""
  model, params, stats, _ = init(spec, 0)
  tx = optax.adamw(spec['lr'], weight_decay=spec['wd'])
  step = make_step(model, tx, spec.get('bn_mom', 0.99))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, spec['px'], spec['px'], 3), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, (batch,)).astype(np.int32)
  state = (params, stats, tx.init(params))
  cost = step.lower(*state, images, labels, jax.random.key(0)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost['flops']) / batch
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    out = step(*state, images, labels, jax.random.key(i))
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
    state = out[:3]
  return statistics.median(times[warmup:]) / batch, flops


def train(spec: dict, seed: int, steps: int, batch: int, data) -> dict:
  model, params, stats, sizes = init(spec, seed)
  schedule = optax.cosine_decay_schedule(spec['lr'], steps)
  tx = optax.adamw(schedule, weight_decay=spec['wd'])
  step = make_step(model, tx, spec.get('bn_mom', 0.99))
  opt_state = tx.init(params)
  images, labels = data['train']
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(len(images))
                          for _ in range(steps * batch // len(images) + 1)])
  key = jax.random.key(seed + 1000)
  start, losses = time.time(), []
  for i in range(steps):
    idx = order[i * batch:(i + 1) * batch]
    params, stats, opt_state, loss = step(params, stats, opt_state, images[idx], labels[idx],
                                          jax.random.fold_in(key, i))
    losses.append(loss)
  losses = [float(l) for l in losses]
  seconds = time.time() - start
  accuracy = make_eval(model)
  sub = (images[:NUM_VAL], labels[:NUM_VAL])
  result = dict(
      spec=spec, seed=seed, steps=steps, batch=batch, sizes=sizes, train_seconds=seconds,
      params_file=params_path(spec, seed, steps),
      params=common_count(params['encoder']), final_loss=float(np.mean(losses[-50:])),
      train_acc=accuracy(params, stats, sub), val_acc=accuracy(params, stats, data['val']),
      val_acc_batch=accuracy(params, stats, data['val'], batch_stats=True),
      train_acc_batch=accuracy(params, stats, sub, batch_stats=True))
  os.makedirs(PARAMS_DIR, exist_ok=True)
  with open(result['params_file'], 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(
        jax.device_get({'params': params, 'batch_stats': stats})))
  return result


def params_file(key: str) -> str:
  return os.path.join(PARAMS_DIR, hashlib.sha1(key.encode()).hexdigest()[:16] + '.msgpack')


def params_path(spec, seed, steps):
  return params_file(run_key(spec, seed, steps))


def test_accuracy(result: dict, data) -> float:
  model = Classifier(result['spec'])
  with open(result['params_file'], 'rb') as f:
    v = flax.serialization.msgpack_restore(f.read())
  return make_eval(model)(v['params'], v['batch_stats'], data['test'])


def common_count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------------------------
# Results and tables.


def canonical(spec: dict) -> dict:
  """The keys a run's spec is stored under (what `parse_run` returns for it)."""
  spec = dict(spec)
  if spec['arch'] == 'resnet':
    for key in ('cnn_bn', 'cnn_pool'):
      spec.pop(key, None)
    if not spec.get('pool', 0):
      spec.pop('pool', None)
  return spec


def load_results(path):
  """The results file, its keys made canonical (earlier versions stored more keys)."""
  results = {'runs': {}, 'timing': {}, 'flops': {}}
  if os.path.exists(path):
    with open(path) as f:
      results.update(json.load(f))
  for section in ('runs', 'timing', 'flops'):
    renamed = {}
    for key, value in results[section].items():
      d = json.loads(key)
      extra = {k: d.pop(k) for k in ('seed', 'steps') if k in d}
      spec = canonical(d)
      if section == 'runs':
        value['spec'] = spec
        value.setdefault('params_file', params_file(key))  # Where `train` saved them.
      renamed[json.dumps(dict(spec, **extra), sort_keys=True)] = value
    results[section] = renamed
  return results


def save_results(results, path):
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(path + '.tmp', path)


def mean_se(values):
  values = [v for v in values if v is not None]
  if not values:
    return '–'
  m = float(np.mean(values))
  if len(values) == 1:
    return f'{m:.3f}'
  se = float(np.std(values, ddof=1) / np.sqrt(len(values)))
  return f'{m:.3f} ± {se:.3f}'


def tables(results, specs, steps_list, seeds, show_test: bool) -> str:
  rows, curve = [], []
  for spec in specs:
    skey = json.dumps(spec, sort_keys=True)
    timing = results['timing'].get(skey)
    flops = results.get('flops', {}).get(skey)
    curve_row = None
    for steps in steps_list:
      runs = [results['runs'].get(run_key(spec, s, steps)) for s in seeds]
      runs = [r for r in runs if r]
      if not runs:
        continue
      r0 = runs[0]
      get = lambda k, runs=runs: mean_se([r.get(k) for r in runs])
      b3, b4 = r0['sizes'].get('block3', '–'), r0['sizes']['block4']
      if curve_row is None:
        curve_row = [describe(spec), spec['px'], f'{b3}/{b4}', f"{spec['lr']:g}"]
        curve_row += ['–'] * len(steps_list)
      rows.append([
          describe(spec), spec['px'], f'{b3}/{b4}', f"{r0['params']:,}",
          f'{flops / 1e9:.3f}' if flops else '–', f'{timing * 1e3:.2f}' if timing else '–',
          f"{spec['lr']:g}", f"{spec['wd']:g}",
          steps, f'{steps * r0["batch"] // 1000}k', len(runs), get('final_loss'),
          get('train_acc'), get('val_acc'), get('val_acc_batch'),
          get('test_acc') if show_test else '(not shown)'])
      curve_row[4 + steps_list.index(steps)] = (
          get('val_acc') + (f" (test {get('test_acc')})" if show_test else ''))
    if curve_row:
      curve.append(curve_row)
  header = ['encoder', 'px', 'block3/block4', 'encoder params', 'GFLOP / train image',
            'ms / train image (fwd+bwd)',
            'lr', 'wd', 'steps', 'images seen', 'seeds', 'train loss (last 50)',
            'train acc', 'val acc', 'val acc (batch stats)', 'test acc']
  out = timing.table(header, rows)
  out += '\n\nValidation accuracy vs steps (mean ± s.e. over seeds):\n\n'
  out += timing.table(['encoder', 'px', 'block3/block4', 'lr'] +
                      [f'{s} steps' for s in steps_list], curve)
  return out


# ---------------------------------------------------------------------------------------------
# oneDNN comparison: separate processes, alternating.


def onednn(args, specs):
  lines = []
  for text, spec in zip(args.runs, specs):
    per = {'default': [], 'onednn': []}
    for r in range(args.onednn):
      for flag in (('default', 'onednn') if r % 2 == 0 else ('onednn', 'default')):
        env = dict(os.environ)
        env.pop('XLA_FLAGS', None)
        if flag == 'onednn':
          env['XLA_FLAGS'] = '--xla_cpu_use_onednn=true'
        out = subprocess.run([sys.executable, '-m', 'projects.synthetic_world.tiny_encoder',
                              '--time_only', '--batch', str(args.batch), '--runs', text],
                             env=env, cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout
        per[flag].append(float(out.strip().splitlines()[-1]))
        print(f'round {r} {flag}: {per[flag][-1] * 1e3:.3f} ms/image', flush=True)
    ratios = [d / o for d, o in zip(per['default'], per['onednn'])]
    lines.append([describe(spec), spec['px'], args.batch,
                  f"{statistics.median(per['default']) * 1e3:.3f}",
                  f"{statistics.median(per['onednn']) * 1e3:.3f}",
                  f'{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})'])
  print(f'\noneDNN: {args.onednn} processes each, alternating; ms per training image (median); '
        'speed-up = default time / oneDNN time, median (min-max) of the rounds:\n')
  print(timing.table(['encoder', 'px', 'batch', 'default', 'oneDNN', 'speed-up'], lines))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', nargs='+', default=['cnn', ''])
  parser.add_argument('--steps', default='800')
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--results', default='/tmp/tiny_encoder_results.json')
  parser.add_argument('--test', action='store_true',
                      help='also report test accuracy (only after choosing on validation)')
  parser.add_argument('--table_only', action='store_true')
  parser.add_argument('--no_train', action='store_true',
                      help='train nothing: the table (and --test, --retime) of the runs done')
  parser.add_argument('--retime', action='store_true',
                      help='measure the seconds per image again (e.g. on a quieter machine)')
  parser.add_argument('--time_only', action='store_true',
                      help='print the seconds per training image of each run and exit')
  parser.add_argument('--onednn', type=int, default=0,
                      help='rounds of the with/without oneDNN timing (separate processes)')
  args = parser.parse_args()
  specs = [parse_run(r) for r in args.runs]
  steps_list = [int(s) for s in args.steps.split(',')]
  seeds = [int(s) for s in args.seeds.split(',')]
  if args.time_only:  # One line per run; the last is what `onednn` reads.
    for text, spec in zip(args.runs, specs):
      print(f'# {describe(spec)} px {spec["px"]} ({text!r}): s / image', file=sys.stderr)
      print(time_step(spec, args.batch)[0], flush=True)
    return
  if args.onednn:
    print(timing.machine())
    onednn(args, specs)
    return

  results = load_results(args.results)
  if not args.table_only:
    print(timing.machine(), flush=True)
    for spec in specs:
      data = load_data(spec['px'])
      skey = json.dumps(spec, sort_keys=True)
      if skey not in results['timing'] or args.retime:
        results['timing'][skey], results.setdefault('flops', {})[skey] = time_step(
            spec, args.batch)
        save_results(results, args.results)
      for steps in steps_list:
        for seed in seeds:
          key = run_key(spec, seed, steps)
          if key not in results['runs'] and args.no_train:
            continue
          if key not in results['runs']:
            r = train(spec, seed, steps, args.batch, data)
            results['runs'][key] = r
            save_results(results, args.results)
            print(f"{describe(spec)} px {spec['px']} lr {spec['lr']:g} wd {spec['wd']:g} "
                  f"seed {seed} steps {steps}: loss {r['final_loss']:.3f} train "
                  f"{r['train_acc']:.3f} val {r['val_acc']:.3f} (batch stats "
                  f"{r['val_acc_batch']:.3f}) in {r['train_seconds']:.0f} s", flush=True)
          if args.test and results['runs'][key].get('test_acc') is None:
            results['runs'][key]['test_acc'] = test_accuracy(results['runs'][key], data)
            save_results(results, args.results)
  print(f'\nclass task, {NUM_TRAIN} train / {NUM_VAL} val (from the train split) / '
        f'{NUM_TEST} test images, seed {PROBE_SEED}; batch {args.batch}, AdamW + cosine, '
        f'flips; seeds {seeds}; mean ± s.e.\n')
  print(tables(results, specs, steps_list, seeds, args.test))


if __name__ == '__main__':
  main()
