"""Checks a training run's config, dataset and workdir before anything is built.

`check_run` is the first thing `loop.train_and_evaluate` does: a value that cannot work (a
learning rate <= 0, an empty batch, an unknown objective, sampler or optimiser, a dataset
folder without a manifest, a workdir that is a file or read-only) stops the run at once
with a `ConfigError` / `DatasetError` / `PathError` naming the key or path, before the
model, the synthetic world or any file in the workdir exists.
"""

from __future__ import annotations

import math
import os

import ml_collections

from vivi import errors

# Keys that must be > 0 in every config, with what they are.
POSITIVE = {
    'num_train_steps': 'training steps',
    'input.batch_videos': 'videos per step (global batch)',
    'input.image_size': 'side of the training crops in pixels',
    'model.width': 'width multiplier',
    'log_every_steps': 'steps between metric logs',
    'checkpoint_every_steps': 'steps between checkpoints',
    'keep_checkpoints': 'checkpoints kept',
    'max_nonfinite_steps': 'non-finite steps in a row that stop the run',
    'probe.every_steps': 'steps between probes',
}


def get(config: ml_collections.ConfigDict, dotted: str):
  node = config
  for key in dotted.split('.'):
    node = node[key]
  return node


def _fail(key: str, value, why: str) -> None:
  raise errors.ConfigError(f'config.{key}={value!r}: {why}')


def check_run(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Everything decidable before building anything; raises a `UserError` subclass."""
  check_config(config)
  check_dataset_path(config)
  check_workdir(workdir)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Values, names and their consistency (cheap: no model, no data)."""
  from vivi import objectives, parallel, train
  from vivi.evaluate import suite

  init = config.get('init_encoder', '')
  if init is None:
    raise errors.ConfigError('config.init_encoder is required by this config: set it to an '
                             'exported encoder folder or a training workdir to fine-tune')
  if init and not os.path.isdir(os.path.expanduser(init)):
    raise errors.MissingPathError(f'config.init_encoder={init!r}: no such folder (it names an '
                                  'exported encoder folder or a training workdir)')
  for key, what in POSITIVE.items():
    value = get(config, key)
    if not (isinstance(value, (int, float)) and value > 0):
      _fail(key, value, f'the number of {what} must be > 0')
  profile = config.profile
  if not (isinstance(profile.first_step, int) and profile.first_step >= 1
          and isinstance(profile.num_steps, int) and profile.num_steps >= 0):
    _fail('profile', profile.to_dict(), 'want first_step >= 1 and num_steps >= 0 (0: no trace)')
  _check_optimisation(config)
  _check_model(config.model)
  inputs = _check_input(config)
  objectives.resolve(config.objectives)  # Unknown objective or key.
  check_inputs(config, inputs.sampler)
  train.target_objectives(config)       # config.target_network exactly when needed.
  labelled = config.labelled
  if labelled.dataset and not labelled.batch_size > 0:
    _fail('labelled.batch_size', labelled.batch_size, 'co-training needs labelled images per '
          'step')
  probe = config.probe
  suite.check(probe, 'probe')   # Unknown evaluator, option, dataset or split.
  if not (probe.num_train > 0 and (probe.num_test > 0 or probe.split == 'validation')):
    _fail('probe.num_train', (probe.num_train, probe.num_test), 'the probes need training and '
          'test images (set probe.evaluators.linear_probe.datasets=() to switch the probe off)')
  mesh = parallel.make_mesh()
  parallel.check_batch_size(inputs.batch_videos, mesh)
  if labelled.dataset:
    parallel.check_batch_size(labelled.batch_size, mesh, 'labelled.batch_size')


def _check_optimisation(config: ml_collections.ConfigDict) -> None:
  """The optimiser, the learning-rate schedule and the target network's momentum."""
  from vivi import optim
  schedule = optim.schedule_options(config)    # Unknown schedule or key.
  peak = schedule.base_learning_rate
  if not (isinstance(peak, (int, float)) and math.isfinite(peak) and peak > 0):
    _fail('schedule.base_learning_rate', peak, 'the peak learning rate must be a finite '
          'number > 0')
  if schedule.warmup_steps < 0:
    _fail('schedule.warmup_steps', schedule.warmup_steps, 'must be >= 0')
  if schedule.name == 'piecewise' and any(b <= schedule.warmup_steps
                                          for b in schedule.boundaries):
    _fail('schedule.boundaries', tuple(schedule.boundaries), 'every decay step must come after '
          f'the warm-up (schedule.warmup_steps={schedule.warmup_steps})')
  optimizer = optim.optimizer_options(config)  # Unknown optimiser or key.
  if optimizer.weight_decay < 0:
    _fail('optimizer.weight_decay', optimizer.weight_decay, 'must be >= 0')
  if not 0 <= optimizer.momentum < 1:
    _fail('optimizer.momentum', optimizer.momentum, 'must be in [0, 1)')
  optim.make_optimizer(config)          # Warm-up against the run's length.
  if config.get('target_network'):
    momentum = optim.target_schedule_options(config).momentum   # Unknown schedule or key.
    if not 0 <= momentum < 1:
      _fail('target_network.momentum', momentum, 'must be in [0, 1)')


def _check_model(model: ml_collections.ConfigDict) -> None:
  from vivi.models import resnet_v2
  valid = {'depth': list(resnet_v2.STAGE_SIZES), 'norm': resnet_v2.NORMS,
           'stem': resnet_v2.STEMS, 'stem_stride': (1, 2), 'downsample': resnet_v2.DOWNSAMPLES,
           'layout': resnet_v2.LAYOUTS}
  for key, values in valid.items():
    if model[key] not in values:
      _fail(f'model.{key}', model[key], f'valid: {list(values)}')
  problem = model.layout == 'timm' and resnet_v2.timm_layout_problem(
      model.stem, model.downsample, model.width)
  if problem:
    raise errors.ConfigError(f'config.{problem}')


def _check_input(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """`config.input` resolved by its sampler (an unknown sampler or key lists the valid ones)
  and its values checked."""
  from vivi.input import augment, samplers
  inputs = samplers.resolve(config)
  name = inputs.sampler
  for key in samplers.get(name).positive:
    if not inputs[key] >= 1:
      _fail(f'input.{key}', inputs[key], f'the {name} sampler needs >= 1')
  if name == 'none' and not config.labelled.dataset:
    raise errors.ConfigError("config.input.sampler='none' reads no videos: it trains on "
                             'labelled images only, so set config.labelled.dataset')
  if name != 'none':
    augment.from_config(inputs)         # Unknown augmentation preset.
  for key in ('crop_area', 'discovery_crop_area'):
    if key in inputs and not 0 < inputs[key][0] <= inputs[key][1] <= 1:
      _fail(f'input.{key}', tuple(inputs[key]), 'want (min, max) with 0 < min <= max <= 1')
  return inputs


def check_inputs(config: ml_collections.ConfigDict, sampler: str) -> None:
  """Every batch key an objective reads (its declared `inputs`) is given: by the sampler
  with these `config.input` settings, or by the labelled images of `config.labelled`; and
  labelled images are configured only when an objective reads them."""
  from vivi import objectives
  from vivi.input import samplers
  from vivi.objectives import objective

  given = set(samplers.example_spec(config))
  if config.labelled.dataset:
    given |= set(objective.LABELLED_INPUTS)
  for name in config.objectives:
    declared = objectives.get(name)
    missing = [k for k in declared.inputs if k not in given]
    if missing:
      raise errors.ConfigError(
          f'objective {name!r} reads batch {missing}, which config.input (the {sampler!r} '
          f'sampler) and config.labelled do not give with these settings (they give '
          f'{sorted(given)}); {declared.inputs_hint}')
  if config.labelled.dataset and not any(
      set(objective.LABELLED_INPUTS) & set(objectives.get(name).inputs)
      for name in config.objectives):
    raise errors.ConfigError(
        f'config.labelled.dataset={config.labelled.dataset!r} gives labelled images, but none '
        f'of config.objectives {sorted(config.objectives)} reads them: add the objective '
        f'that co-trains on them ("supervised") or unset config.labelled.dataset')


def check_dataset_path(config: ml_collections.ConfigDict) -> None:
  """A dataset folder (not the synthetic world, which is built on first use) exists and
  has a readable manifest."""
  from vivi.input import records
  dataset = config.data.dataset
  if config.input.sampler == 'none':   # Labelled images only: no video dataset is read.
    return
  if not dataset:
    raise errors.ConfigError("config.data.dataset is empty: set it to a folder of video "
                             "records (made by data/prepare_videos.py) or to 'synthetic'")
  if dataset == 'synthetic':
    return
  folder = os.path.expanduser(dataset)
  if not os.path.isdir(folder):
    raise errors.DatasetError(f'config.data.dataset={dataset!r}: no such folder (make one '
                              'with data/prepare_videos.py, or use \'synthetic\')')
  records.Manifest.read(folder)


def check_workdir(workdir: str) -> None:
  """`workdir` is a writable folder, or can be created as one."""
  if not workdir:
    raise errors.PathError('--workdir is empty: give the folder for checkpoints and logs')
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise errors.PathError(f'--workdir={workdir}: exists and is not a folder')
    if not os.access(path, os.W_OK | os.X_OK):
      raise errors.PathError(f'--workdir={workdir}: the folder is not writable')
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise errors.PathError(f'--workdir={workdir}: cannot be created ({parent} is not a '
                           'writable folder)')
