"""The evaluation suite (evaluate.py, vivi/evaluate/suite.py): the probe on features with
a known answer, and the documented command on a checkpoint end to end."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers
from vivi.evaluate import linear_probe

ROOT = helpers.ROOT


def test_linear_probe_is_perfect_on_separable_clusters_and_chance_on_shuffled_labels():
  x, y = helpers.clusters(np.random.default_rng(0), 5, 120, 16, spread=0.5, scale=5.0)
  assert linear_probe.probe_accuracy(x[:400], y[:400], x[400:], y[400:], 5) == 1.0
  shuffled = np.random.default_rng(1).permutation(y)
  acc = linear_probe.probe_accuracy(x[:400], shuffled[:400], x[400:], shuffled[400:], 5)
  assert abs(acc - 0.2) < 0.08, acc
  probe = linear_probe.fit_probe(x[:400], y[:400], 5)
  np.testing.assert_array_equal(probe.predict(x[400:]), y[400:])


# A VITO tiny checkpoint (the method with attention masks to draw) plus a few logged
# scalars, written the way training writes them.
WRITE = r'''
import sys
from clu import metric_writers
from configs import vito
from vivi import testing
workdir = sys.argv[1]
config = vito.get_config('tiny')
config.model.width = 0.25
testing.write_initial_checkpoint(config, workdir)
writer = metric_writers.create_default_writer(workdir)
for step in (1, 2):
  writer.write_scalars(step, {'loss': 3.0 - step, 'vito/loss': 2.0 - step / 2,
                              'learning_rate': 0.1, 'probe/class': 0.1 * step})
writer.write_scalars(0, {'probe_init/class': 0.1})
writer.flush()
'''


@pytest.mark.slow
def test_evaluate_command_writes_the_table_json_and_pictures(tmp_path):
  workdir = str(tmp_path / 'work')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', WRITE, workdir], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  small = dict(num_videos=3, frames_per_video=4)
  evaluators = {
      'linear_probe': {'datasets': ['synthetic/class'], 'features': ['pre_logits', 'block3']},
      'knn': {'datasets': ['synthetic/class'], 'features': ['pre_logits'], 'k': 5,
              'temperature': 0.07},
      'vtab': {'tasks': ['synthetic/class'], 'step_scale': 0.001, 'num_runs': 1,
               'batch_size': 16},
      'pm_k': {'ks': [1], **small}, 'object_nn': {'num_videos': 2, 'frames_per_video': 4},
      'retrieval': {'ks': [1], **small}, 'pictures': {'num_queries': 2, 'k': 3, **small},
      'object_discovery': {'num_clusters': 3, **small}}
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'evaluate.py'), f'--workdir={workdir}',
       '--config', os.path.join(ROOT, 'configs/evaluate.py') + ':synthetic',
       '--config.image_size=32', '--config.num_train=60', '--config.num_test=30',
       f'--config.evaluators={json.dumps(evaluators)}', f'--export={tmp_path / "encoder"}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  results = os.path.join(workdir, 'eval', 'step_0')
  table = pathlib.Path(results, 'results.md').read_text()
  assert table in out.stdout
  for name in evaluators:
    assert f'| {name} |' in table, table
    metrics = json.loads(pathlib.Path(results, f'{name}.json').read_text())['metrics']
    assert all(np.isfinite(v) for v in metrics.values()), (name, metrics)
  for png in ('training_curves', 'tsne', 'neighbours', 'attention', 'object_discovery'):
    assert os.path.getsize(os.path.join(results, f'{png}.png')) > 10_000, png
  assert os.path.exists(tmp_path / 'encoder' / 'encoder.json')


def test_each_evaluator_is_written_as_it_finishes_and_a_crash_loses_nothing(tmp_path,
                                                                              monkeypatch):
  import jax
  import jax.numpy as jnp
  import ml_collections

  from vivi import encoder as encoder_api
  from vivi import parallel, registry
  from vivi.evaluate import evaluators, suite
  from vivi.models import resnet_v2
  module = resnet_v2.ResNetV2(depth=14, width=0.25)
  variables = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  encoder = encoder_api.Encoder(module, dict(variables), {'step': 5, 'source': 'test'})
  written = []

  def first(ctx, cfg):
    return {'x': 1.0}, {}

  def crash(ctx, cfg):
    written.append(pathlib.Path(ctx.out_dir, 'results.md').read_text())
    raise ZeroDivisionError('a bug')

  def last(ctx, cfg):
    return {'y': 2.0}, {}

  # (A ConfigDict iterates over its keys in sorted order.)
  monkeypatch.setattr(evaluators, 'REGISTRY', registry.Registry('evaluator', 'evaluators', {
      name: evaluators.Evaluator(fn, {}) for name, fn in
      [('a_first', first), ('b_crash', crash), ('c_last', last)]}))
  config = ml_collections.ConfigDict({'evaluators': {'a_first': {}, 'b_crash': {},
                                                     'c_last': {}}})
  with pytest.raises(RuntimeError, match=r"evaluators \['b_crash'\] failed"):
    suite.run(encoder, config, parallel.make_mesh(), str(tmp_path))
  assert '| a_first | x | 1.0000 |' in written[0]  # Written before the next one started.
  table = (tmp_path / 'step_5' / 'results.md').read_text()
  assert '| a_first | x | 1.0000 |' in table and '| c_last | y | 2.0000 |' in table
  assert '| b_crash | FAILED | ZeroDivisionError: a bug |' in table
  assert sorted(os.listdir(tmp_path / 'step_5')) == ['a_first.json', 'c_last.json',
                                                     'results.md']


def test_an_unknown_evaluator_key_in_a_config_file_stops_evaluate_at_once(tmp_path):
  """A key misspelt in a config file (not only on the command line) is an error that lists
  the evaluator's keys, before any encoder is built or data rendered."""
  config_file = tmp_path / 'my_eval.py'
  config_file.write_text(
      'from configs import evaluate\n\n\n'
      'def get_config():\n'
      '  c = evaluate.get_config("synthetic")\n'
      '  c.evaluators.vtab.num_runz = 3\n'
      '  return c\n')
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'evaluate.py'), f'--config={config_file}',
       '--random_init', f'--output={tmp_path / "eval"}'],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 2 and 'Traceback' not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1].startswith(
      "error: config.evaluators.vtab: unknown key(s) ['num_runz'] for the 'vtab' evaluator; "
      "it takes ['augment', 'batch_size', "), out.stderr[-1000:]
  assert not (tmp_path / 'eval').exists()


def test_every_evaluator_option_has_a_default_and_unknown_ones_are_refused():
  import ml_collections

  from vivi import errors
  from vivi.evaluate import evaluators, suite
  for name in evaluators.REGISTRY.names():
    config = ml_collections.ConfigDict({'evaluators': {name: {}}})
    assert set(suite.check(config)[name]) == set(evaluators.REGISTRY.get(name).defaults)
    config.evaluators[name].nope = 1
    with pytest.raises(errors.ConfigError, match=rf"config.evaluators.{name}: unknown key\(s\) "
                       rf"\['nope'\] for the '{name}' evaluator; it takes "):
      suite.check(config)


def test_evaluate_refuses_a_missing_workdir_and_an_unwritable_output(tmp_path):
  run = lambda *args: subprocess.run(
      [sys.executable, os.path.join(ROOT, 'evaluate.py'),
       '--config=' + os.path.join(ROOT, 'configs/evaluate.py') + ':quick', *args],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  missing = tmp_path / 'missing'
  out = run(f'--workdir={missing}')
  assert out.returncode == 2 and 'Traceback' not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().endswith(f'error: --workdir={missing}: no such folder')
  assert not missing.exists()
  (tmp_path / 'work' / 'checkpoints').mkdir(parents=True)
  (tmp_path / 'a_file').write_text('x')
  out = run(f'--workdir={tmp_path / "work"}', f'--output={tmp_path / "a_file" / "eval"}')
  assert out.returncode == 2 and 'cannot create' in out.stderr.splitlines()[-1], out.stderr


@pytest.mark.slow
def test_training_probes_and_evaluate_give_the_same_numbers(tmp_path):
  """The loop's final probe and `suite.run` on the restored checkpoint are one code path:
  the same evaluators and settings give the same numbers."""
  import ml_collections

  from configs import vivi_obj
  from vivi import encoder as encoder_api
  from vivi import loop, parallel
  from vivi.evaluate import suite
  config = vivi_obj.get_config('tiny')
  config.data.cache_dir = str(tmp_path / 'cache')
  config.data.synthetic.num_videos = 24
  config.data.shuffle_buffer = 8
  config.num_train_steps = 3
  config.schedule.warmup_steps = 1
  config.input.batch_videos = 2
  config.input.image_size = 32
  config.log_every_steps = 1
  config.probe.update(image_size=32, num_train=60, num_test=30)
  config.probe.evaluators.linear_probe.datasets = ('synthetic/class', 'synthetic/size')
  config.probe.evaluators.object_nn.num_videos = 2
  config.probe.evaluators.object_discovery.num_videos = 2
  workdir = str(tmp_path / 'work')
  trained = loop.train_and_evaluate(config, workdir)['trained']

  settings = ml_collections.ConfigDict(config.probe.to_dict())
  del settings['every_steps']
  mesh = parallel.make_mesh()
  encoder = encoder_api.restore_encoder(workdir, mesh=mesh)
  results = suite.run(encoder, settings, mesh, str(tmp_path / 'eval'))
  evaluated = {f'{n}/{k}': v for n, metrics in results.items() for k, v in metrics.items()}
  assert set(evaluated) == set(trained) and len(trained) == 6, (evaluated, trained)
  for key, value in trained.items():
    assert evaluated[key] == pytest.approx(value, abs=1e-6), key
