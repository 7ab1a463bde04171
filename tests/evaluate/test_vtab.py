"""VTAB-1k: the sweep / selection / retraining protocol (with a stub trainer), the step
scaling, the 19 task definitions, whole-network fine-tuning, and a tiny end-to-end run on a
synthetic task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivi import errors
from vivi.evaluate import finetune, vtab, vtab_tasks
from vivi.models import resnet_v2

# One tiny encoder, image size and batch for every test that trains, so they share one
# compiled train step (the cache is keyed on these).
S, BATCH, CLASSES = 16, 32, 10
ENCODER = resnet_v2.ResNetV2(depth=14, width=0.25)


def numpy_init(encoder, size=S, seed=0):
  """He-normal (fan-out) kernels, unit scales, zero biases and BatchNorm means, unit
  variances: the encoder's initialisation without compiling its random initialisers."""
  shapes = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == 'kernel':
      k = x.shape
      return rng.normal(0, np.sqrt(2.0 / (k[0] * k[1] * k[3])), k).astype(np.float32)
    return (np.ones if name in ('scale', 'var') else np.zeros)(x.shape, np.float32)

  return dict(jax.tree_util.tree_map_with_path(leaf, shapes))


def fake_task(n_test=50):
  rng = np.random.default_rng(0)
  split = lambda n: (rng.integers(0, 256, (n, 2, 2, 3), dtype=np.uint8),
                     rng.integers(0, 3, n).astype(np.int32))
  return vtab_tasks.TaskData('fake', 3, split(800), split(200), split(n_test), group='natural')


class Stub:
  """A trainer whose validation accuracy is fixed per (lr, steps) and whose test accuracy
  comes from a list, in call order; records every call."""

  def __init__(self, val, tests):
    self.val, self.tests, self.calls = val, list(tests), []

  def __call__(self, train, evaluation, setting, seed):
    self.calls.append({'train': train, 'eval': evaluation, 'setting': setting, 'seed': seed})
    if len(evaluation[1]) == 200:
      return self.val[(setting.learning_rate, setting.steps)]
    return self.tests.pop(0)


VAL = {(0.1, 10_000): 0.5, (0.1, 2_500): 0.6, (0.01, 10_000): 0.7, (0.01, 2_500): 0.9}


def test_sweep_picks_best_validation_setting_and_retrains_on_train_plus_val():
  task = fake_task()
  stub = Stub(VAL, tests=[0.3, 0.8, 0.5])
  result = vtab.protocol(task, stub, num_runs=3, seed=7)
  best = {'learning_rate': 0.01, 'steps': 2_500, 'decay_every': 750}
  assert result['chosen'] == [best] * 3
  # Per run: the 4 settings on train800 / val200, in sweep order, then one retraining.
  assert len(stub.calls) == 3 * 5
  for r in range(3):
    sweep_calls, retrain = stub.calls[5 * r:5 * r + 4], stub.calls[5 * r + 4]
    assert [c['setting'] for c in sweep_calls] == list(vtab.SWEEP)
    for c in sweep_calls:
      assert c['train'][0] is task.train800[0] and c['eval'][0] is task.val200[0]
    # Retraining: all 1000 examples (train800 then val200), the chosen setting, on test.
    images, labels = retrain['train']
    assert len(images) == len(labels) == 1000
    np.testing.assert_array_equal(images[:800], task.train800[0])
    np.testing.assert_array_equal(labels[800:], task.val200[1])
    assert retrain['setting'] == vtab.Setting(0.01, 2_500, 750)
    assert retrain['eval'][0] is task.test[0]
    run = result['runs'][r]
    assert run['seed'] == 7 + r and run['train_examples'] == 1000
    assert [v['accuracy'] for v in run['validation']] == [0.5, 0.6, 0.7, 0.9]
  assert result['test_accuracies'] == [0.3, 0.8, 0.5]
  assert result['test_accuracy'] == 0.5  # The median.
  # Independent runs see different seeds; within a run every fine-tuning has its own.
  seeds = [c['seed'] for c in stub.calls]
  assert len(set(seeds)) == len(seeds)


def test_ties_go_to_the_first_setting_and_sweep_once_repeats_only_retraining():
  stub = Stub({k: 0.5 for k in VAL}, tests=[0.1, 0.2])
  result = vtab.protocol(fake_task(), stub, num_runs=2, sweep_once=True)
  assert result['chosen'] == [vtab.SWEEP[0].as_dict()] * 2
  assert len(stub.calls) == 4 + 2
  assert result['test_accuracy'] == pytest.approx(0.15)  # Median of two: their mean.


def test_step_scaling():
  assert vtab.Setting(0.1, 10_000, 3_000).scaled(0.01) == vtab.Setting(0.1, 100, 30)
  assert vtab.Setting(0.01, 2_500, 750).scaled(0.01) == vtab.Setting(0.01, 25, 8)
  assert all(s.steps == 1 and s.decay_every == 1 for s in vtab.scaled_sweep(step_scale=1e-6))
  assert vtab.scaled_sweep(step_scale=1.0) == vtab.SWEEP
  assert [(s.learning_rate, s.steps, s.decay_every) for s in vtab.SWEEP] == [
      (0.1, 10_000, 3_000), (0.1, 2_500, 750), (0.01, 10_000, 3_000), (0.01, 2_500, 750)]
  # The protocol hands the scaled settings to the trainer.
  stub = Stub({(lr, steps): 0.5 for lr in (0.1, 0.01) for steps in (100, 25)}, tests=[0.4])
  result = vtab.protocol(fake_task(), stub, num_runs=1, step_scale=0.01)
  assert {c['setting'].steps for c in stub.calls} == {100, 25}
  assert result['sweep'][0] == {'learning_rate': 0.1, 'steps': 100, 'decay_every': 30}


def test_run_suite_reports_group_means_and_the_mean_over_tasks():
  tasks = []
  for name, group in [('a', 'natural'), ('b', 'natural'), ('c', 'structured')]:
    t = fake_task()
    t.name, t.group = name, group
    tasks.append(t)
  accs = iter([0.2, 0.4, 0.9])
  stub = lambda train, evaluation, setting, seed: (
      0.5 if len(evaluation[1]) == 200 else next(accs))
  result = vtab.run_suite(None, None, tasks, num_runs=1, train_and_eval=stub, log=None)
  assert set(result['tasks']) == {'a', 'b', 'c'}
  assert result['natural'] == pytest.approx(0.3)
  assert result['structured'] == pytest.approx(0.9)
  assert 'specialized' not in result
  assert result['mean'] == pytest.approx(0.5)


# Validation accuracies per task (a, b, c) and setting (in `vtab.SWEEP` order), chosen so
# that the per-task and per-model selections differ: each task's best is s0, s1 and s3,
# the mean over tasks is (0.5, 0.5, 0.7333, 0.3667), so one setting per model is s2.
SELECTION_VAL = {'a': (0.9, 0.1, 0.8, 0.2), 'b': (0.1, 0.9, 0.8, 0.2),
                 'c': (0.5, 0.5, 0.6, 0.7)}


def marked_tasks(val=SELECTION_VAL):
  """One fake task per key of `val`, its images all equal to its index (so a trainer can
  tell which task it is given)."""
  tasks = []
  for i, (name, group) in enumerate(zip(val, ['natural', 'natural', 'structured'])):
    split = lambda n, i=i: (np.full((n, 2, 2, 3), i, np.uint8), np.zeros(n, np.int32))
    tasks.append(vtab_tasks.TaskData(name, 3, split(800), split(200), split(50), group=group))
  return tasks


class SettingTrainer:
  """A trainer deterministic in (task, setting): the validation accuracy of `val`, and test
  accuracy 0.1 * task index + 0.01 * setting index + 0.5. Records (task, split, setting,
  seed) of every call."""

  def __init__(self, val=SELECTION_VAL):
    self.names, self.val, self.calls = list(val), val, []

  def __call__(self, train, evaluation, setting, seed):
    task, i = self.names[int(train[0][0, 0, 0, 0])], vtab.SWEEP.index(setting)
    split = 'val200' if len(evaluation[1]) == 200 else 'test'
    self.calls.append((task, split, setting, seed))
    return self.val[task][i] if split == 'val200' else 0.5 + 0.1 * self.names.index(task) + (
        0.01 * i)


def test_per_task_selection_chooses_each_task_best_and_keeps_the_result():
  trainer = SettingTrainer()
  result = vtab.run_suite(None, None, marked_tasks(), num_runs=2, seed=3,
                          train_and_eval=trainer, log=None)
  assert set(result) == {'tasks', 'natural', 'structured', 'mean'}  # As before the option.
  best = {'a': 0, 'b': 1, 'c': 3}
  for name, i in best.items():
    task = result['tasks'][name]
    assert task['chosen'] == [vtab.SWEEP[i].as_dict()] * 2
    expected = 0.5 + 0.1 * list(best).index(name) + 0.01 * i
    assert task['test_accuracies'] == pytest.approx([expected] * 2)
  assert result['natural'] == pytest.approx((0.5 + 0.61) / 2)
  assert result['mean'] == pytest.approx((0.5 + 0.61 + 0.73) / 3)
  # The same as `protocol` on each task alone, which the default selection still is.
  for task in marked_tasks():
    alone = vtab.protocol(task, SettingTrainer(), num_runs=2, seed=3)
    assert {k: v for k, v in result['tasks'][task.name].items()
            if k not in ('group', 'augment')} == alone


def test_per_model_selection_chooses_the_best_mean_over_tasks_and_retrains_every_task():
  per_task, per_model = SettingTrainer(), SettingTrainer()
  vtab.run_suite(None, None, marked_tasks(), num_runs=2, seed=3, train_and_eval=per_task,
                 log=None)
  result = vtab.run_suite(None, None, marked_tasks(), num_runs=2, seed=3,
                          train_and_eval=per_model, log=None, selection='per_model')
  chosen = vtab.SWEEP[2]
  assert result['selection'] == 'per_model'
  assert len(result['model_selection']) == 2
  for run in result['model_selection']:
    assert run['chosen'] == chosen.as_dict()
    assert [v['accuracy'] for v in run['mean_validation']] == pytest.approx(
        [0.5, 0.5, 2.2 / 3, 1.1 / 3])
    assert [{k: v[k] for k in ('learning_rate', 'steps', 'decay_every')}
            for v in run['mean_validation']] == [s.as_dict() for s in vtab.SWEEP]
  for i, name in enumerate(SELECTION_VAL):
    task = result['tasks'][name]
    assert task['chosen'] == [chosen.as_dict()] * 2
    assert task['test_accuracies'] == pytest.approx([0.5 + 0.1 * i + 0.02] * 2)
    # Each task's own validation accuracies are kept with its runs.
    assert [v['accuracy'] for v in task['runs'][0]['validation']] == list(SELECTION_VAL[name])
  assert result['natural'] == pytest.approx((0.52 + 0.62) / 2)
  assert result['structured'] == pytest.approx(0.72)
  assert result['mean'] == pytest.approx((0.52 + 0.62 + 0.72) / 3)
  # Every task is swept before any retraining, with the seeds per-task selection uses;
  # the retrainings use them too, with the one chosen setting.
  splits = [c[1] for c in per_model.calls]
  assert splits == ['val200'] * 3 * 2 * 4 + ['test'] * 3 * 2
  sweeps = lambda calls: sorted((c for c in calls if c[1] == 'val200'), key=str)
  assert sweeps(per_model.calls) == sweeps(per_task.calls)
  retrain_seeds = lambda calls: [(c[0], c[3]) for c in calls if c[1] == 'test']
  assert retrain_seeds(per_model.calls) == retrain_seeds(per_task.calls)
  assert {c[2] for c in per_model.calls if c[1] == 'test'} == {chosen}


def test_per_model_ties_go_to_the_first_setting_and_sweep_once_sweeps_once():
  val = {'a': (0.6, 0.8, 0.7, 0.8), 'b': (0.8, 0.6, 0.7, 0.6), 'c': (0.7, 0.7, 0.7, 0.7)}
  trainer = SettingTrainer(val)
  result = vtab.run_suite(None, None, marked_tasks(val), num_runs=3, train_and_eval=trainer,
                          log=None, selection='per_model', sweep_once=True)
  # Means 0.7 for every setting: the first in sweep order.
  assert [run['chosen'] for run in result['model_selection']] == [vtab.SWEEP[0].as_dict()] * 3
  assert sum(c[1] == 'val200' for c in trainer.calls) == 3 * 4
  assert sum(c[1] == 'test' for c in trainer.calls) == 3 * 3


def test_an_unknown_selection_is_a_config_error_listing_the_valid_ones():
  with pytest.raises(errors.ConfigError, match=r"selection='per_dataset'; valid: "
                     r"'per_task', 'per_model'"):
    vtab.run_suite(None, None, marked_tasks(), train_and_eval=SettingTrainer(), log=None,
                   selection='per_dataset')
  import ml_collections

  from vivi.evaluate import suite
  config = ml_collections.ConfigDict({'evaluators': {'vtab': {'selection': 'best'}}})
  with pytest.raises(errors.ConfigError) as info:
    suite.check(config)
  assert str(info.value) == ("config.evaluators.vtab: selection='best'; valid: 'per_task', "
                             "'per_model'")
  assert suite.check(ml_collections.ConfigDict({'evaluators': {'vtab': {}}}))[
      'vtab'].selection == 'per_task'


def test_the_vtab_evaluator_passes_selection_and_reports_only_accuracies(monkeypatch, tmp_path):
  import json
  import types

  from vivi.evaluate import evaluators
  given = {}

  def fake_suite(module, variables, tasks, **kwargs):
    given.update(kwargs, tasks=tasks)
    return {'tasks': {'dtd': {'test_accuracy': 0.25}}, 'natural': 0.25, 'mean': 0.25,
            'selection': 'per_model', 'model_selection': [{'chosen': {}}]}

  monkeypatch.setattr(vtab, 'run_suite', fake_suite)
  config = types.SimpleNamespace(get=lambda key, default=None: default, image_size=8, seed=0)
  ctx = types.SimpleNamespace(encoder=types.SimpleNamespace(module=None, variables=None),
                              config=config, mesh=None, log=None, out_dir=str(tmp_path))
  options = evaluators.REGISTRY.options('vtab', {'tasks': ('dtd',), 'selection': 'per_model'},
                                        'config.evaluators.vtab')
  metrics, _ = evaluators.vtab_eval(ctx, options)
  assert given['selection'] == 'per_model' and given['tasks'] == ['dtd']
  assert metrics == {'dtd': 0.25, 'mean/natural': 0.25, 'mean': 0.25}
  with open(tmp_path / 'vtab_runs.json') as f:
    assert json.load(f)['selection'] == 'per_model'


def test_the_19_vtab_tasks():
  assert len(vtab_tasks.TASKS) == 19
  tasks = vtab_tasks.TASKS
  per_group = {g: [n for n, t in tasks.items() if t.group == g] for g in vtab_tasks.GROUPS}
  assert {g: len(n) for g, n in per_group.items()} == {
      'natural': 7, 'specialized': 4, 'structured': 8}
  for name, task in vtab_tasks.TASKS.items():
    assert task.tfds_name and task.version and task.label, name
    assert set(task.splits) == {'train800', 'val200', 'train800val200', 'test'}, name
    assert task.splits['train800'] == 'train[:800]', name
    assert task.splits['train800val200'] == (
        f"{task.splits['train800']}+{task.splits['val200']}"), name
    assert task.num_classes >= 2, name
    assert task.augment in finetune.AUGMENTATIONS, name
  t = vtab_tasks.TASKS
  assert t['cifar100'].splits['val200'] == 'train[45000:45200]'
  assert t['caltech101'].splits['val200'] == 'train[2754:2954]'
  assert t['eurosat'].splits['test'] == 'train[21600:]'
  assert t['dsprites/label_orientation'].splits['test'] == 'train[663552:]'
  assert t['clevr/count_all'].splits['test'] == 'validation'
  assert t['smallnorb/label_azimuth'].splits['val200'] == 'test[:200]'
  assert t['dtd'].splits['val200'] == 'validation[:200]'
  assert [t[n].num_classes for n in ('clevr/count_all', 'clevr/closest_object_distance',
                                     'dsprites/label_x_position', 'kitti/closest_vehicle_distance',
                                     'smallnorb/label_azimuth', 'smallnorb/label_elevation',
                                     'dmlab', 'diabetic_retinopathy')] == [8, 6, 16, 4, 18, 9, 6, 5]
  assert vtab_tasks.task_names('vtab') == list(vtab_tasks.TASKS)
  assert vtab_tasks.task_names('specialized,synthetic/class') == [
      'patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy', 'synthetic/class']
  with pytest.raises(ValueError, match='unknown task'):
    vtab_tasks.task_names('imagenet')


def test_derived_labels_follow_vtab():
  import tensorflow as tf
  t = vtab_tasks.TASKS
  clevr = lambda depths: {'objects': {'pixel_coords': tf.constant([[0., 0., d] for d in depths]),
                                      'size': tf.zeros([len(depths)], tf.int64)}}
  distance = t['clevr/closest_object_distance'].label_fn
  assert [int(distance(clevr([d, 20.0]))) for d in (7.0, 8.2, 9.7, 12.0)] == [0, 1, 4, 5]
  assert int(t['clevr/count_all'].label_fn(clevr([9.0] * 5))) == 2
  kitti = lambda types, z: {'objects': {
      'type': tf.constant(types, tf.int64),
      'location': tf.constant([[0., 0., d] for d in z], tf.float32)}}
  vehicle = t['kitti/closest_vehicle_distance'].label_fn
  assert int(vehicle(kitti([0, 4], [30.0, 5.0]))) == 2   # The pedestrian at 5 m is ignored.
  assert int(vehicle(kitti([1], [6.0]))) == 0
  assert int(vehicle(kitti([5], [6.0]))) == 3            # No vehicle.
  x_pos = t['dsprites/label_x_position'].label_fn
  orient = t['dsprites/label_orientation'].label_fn
  assert [int(x_pos({'label_x_position': tf.constant(v, tf.int64)})) for v in (0, 1, 2, 31)] \
      == [0, 0, 1, 15]
  assert [int(orient({'label_orientation': tf.constant(v, tf.int64)})) for v in (2, 3, 39)] \
      == [0, 1, 15]


def test_a_missing_tfds_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(errors.NotPreparedError) as info:
    vtab_tasks.load_task('cifar100', data_dir=str(tmp_path))
  message = str(info.value)
  assert 'cifar100' in message and str(tmp_path) in message and 'tfds build' in message
  with pytest.raises(ValueError, match='unknown task'):
    vtab_tasks.load_task('cifar1000', data_dir=str(tmp_path))


def separable(n=160, seed=0):
  """Images whose (noisy) uniform colour gives one of CLASSES classes."""
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % CLASSES).astype(np.int32)
  colours = rng.integers(0, 256, (CLASSES, 3))
  images = colours[labels][:, None, None, :] + rng.normal(0, 10, (n, S, S, 3))
  return np.clip(images, 0, 255).astype(np.uint8), labels


def test_finetune_starts_from_a_zero_head_and_fits_a_separable_problem():
  images, labels = separable()
  variables = numpy_init(ENCODER)
  start = finetune.finetune(ENCODER, variables, images, labels, CLASSES, learning_rate=0.1,
                            steps=0, decay_every=1, batch_size=BATCH)
  assert set(start) == {'params', 'batch_stats'}
  head = start['params']['head']
  assert head['kernel'].shape == (ENCODER.width * 2048, CLASSES)
  assert not np.any(np.asarray(head['kernel'])) and not np.any(np.asarray(head['bias']))
  fitted = finetune.finetune(ENCODER, variables, images, labels, CLASSES, learning_rate=0.05,
                             steps=40, decay_every=30, batch_size=BATCH, seed=0,
                             augment='crop_flip', recalibrate_batch_stats=True)
  assert finetune.accuracy(ENCODER, fitted, images, labels, batch_size=BATCH) >= 0.9
  # The whole network trained, BatchNorm statistics included.
  before, after = variables['params'], finetune.encoder_variables(fitted)['params']
  assert not np.allclose(before['stem_conv']['kernel'], after['stem_conv']['kernel'])
  stats = finetune.encoder_variables(fitted)['batch_stats']
  assert not np.allclose(stats['post_norm']['BatchNorm_0']['mean'], 0.0)


def test_finetune_a_group_norm_encoder_without_batch_stats():
  encoder = resnet_v2.ResNetV2(depth=14, width=0.25, norm='group_ws', num_groups=8)
  variables = numpy_init(encoder)
  assert 'batch_stats' not in variables
  images, labels = separable(64)
  fitted = finetune.finetune(encoder, variables, images, labels, CLASSES, learning_rate=0.01,
                             steps=3, decay_every=2, batch_size=BATCH,
                             recalibrate_batch_stats=True)
  assert set(fitted) == {'params'}
  assert np.any(np.asarray(fitted['params']['head']['kernel']))
  assert 0.0 <= finetune.accuracy(encoder, fitted, images, labels, batch_size=BATCH) <= 1.0


def test_tiny_end_to_end_run_on_a_synthetic_task():
  data = vtab_tasks.load_task('synthetic/class', image_size=S, num_test=100, seed=3)
  assert len(data.train800[0]) == 800 and len(data.val200[0]) == 200
  assert data.train800[0].shape[1:] == (S, S, 3) and data.num_classes == CLASSES
  result = vtab.run_task(ENCODER, numpy_init(ENCODER), data, step_scale=0.001, num_runs=2,
                         seed=0, batch_size=BATCH, recalibrate_batch_stats=True, log=None)
  assert {'task', 'num_classes', 'sweep', 'test_accuracy', 'test_accuracies', 'chosen',
          'runs', 'group', 'augment'} <= set(result)
  assert result['sweep'] == [{'learning_rate': lr, 'steps': steps, 'decay_every': decay}
                             for lr in (0.1, 0.01) for steps, decay in ((10, 3), (3, 1))]
  assert len(result['runs']) == len(result['test_accuracies']) == 2
  for run in result['runs']:
    assert len(run['validation']) == 4
    assert all(0.0 <= v['accuracy'] <= 1.0 for v in run['validation'])
    assert run['chosen'] in result['sweep']
  assert result['test_accuracy'] == pytest.approx(np.median(result['test_accuracies']))
  assert result['group'] == 'synthetic' and result['augment'] == 'crop_flip'


def test_load_task_reads_vtab_splits_from_tfds():
  # TFDS's mock data (random examples from the builder's feature spec, no files, no
  # download) runs the whole reading path: decoding, grayscale -> RGB, resizing, labels.
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    data = vtab_tasks.load_task('smallnorb/label_elevation', image_size=20, num_test=5)
  assert data.train800[0].shape == (12, 20, 20, 3) and data.train800[0].dtype == np.uint8
  assert data.test[0].shape == (5, 20, 20, 3)
  assert data.num_classes == 9 and data.train800[1].max() < 9
  assert data.group == 'structured' and data.augment == 'flip'
