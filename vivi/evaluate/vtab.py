r"""The VTAB-1k transfer protocol (Zhai et al. 2019, arXiv:1910.04867v1), as VIVI uses it.

VIVI (section 4, "Downstream evaluation") evaluates on the 19 tasks of VTAB version 1 in
three groups (natural, specialized, structured), each with 1000 labelled training images.
Per task (Romijnders et al. section 4 spell the sweep out):
  1. fine-tune the whole network plus a new linear head on the 800-example train split,
     for each of 4 settings: learning rate {0.1, 0.01} x schedule {10k steps with a 10x
     decay every 3k, 2.5k steps with a 10x decay every 750} (`SWEEP`);
  2. pick the setting with the best accuracy on the 200-example validation split;
  3. retrain with it on all 1000 (train800 + val200) and report test accuracy;
  4. repeat independently (VIVI: 3 times) and report the median test accuracy.
VTAB's score is the mean over the 19 tasks; the group scores are the means within groups.

This module holds:
  * `TASKS`: the 19 task definitions, written from the VTAB repository's data modules
    (github.com/google-research/task_adaptation, task_adaptation/data/*.py): TFDS name and
    version, the 'train800' / 'val200' / 'train800val200' / 'test' split strings, the label
    (a feature, or the function VTAB derives it with, e.g. CLEVR's distance bins), the
    number of classes and the group. `load_task` reads one from a local TFDS data dir and
    never downloads.
  * `SYNTHETIC_TASKS`: the synthetic world's held-out tasks (`input/synthetic_tasks.py`)
    with the same 800 / 200 / test structure, so the protocol runs end to end here.
  * `protocol`: steps 1-4 given any `train_and_eval(train, evaluation, setting, seed) ->
    accuracy` (so it is testable with a stub); `run_task` plugs in `finetune.py`;
    `run_suite` runs several tasks and averages per group.

Split definitions (uncertainty, said plainly): the strings are those of the VTAB repository's
current data modules, which define 'train800' as the first 800 examples of VTAB's train
split and 'val200' as the first 200 of its validation split (where the TFDS data set has no
validation split, VTAB carves one out of TFDS 'train': e.g. CIFAR-100's val is
train[45000:]). The first public release of that repository (October 2019, the time of
VTAB v1 and VIVI) had no such split strings: its 1000-example training set was the first
1000 examples of the 'trainval' split (`train_examples=1000`), and the 800/200 split for the
sweep was not in the released code. Where VTAB carves val out of TFDS 'train', the slices
below depend on the TFDS split sizes they were computed from (`Task.split_sizes`);
`load_task` checks them. VTAB evaluates on the whole test split; `num_test` can cap it.
Versions are VTAB's patterns; the installed TFDS (4.9) builds oxford_iiit_pet only at 4.0.0,
so 3.x must already be prepared in the data dir, or pass `version='4.*.*'` (whose example
order, hence its train800 / val200 slices, VTAB did not check).

Images: decoded, grayscale tiled to RGB (dSprites' 0/1 images scaled to 0/255 first, as VTAB
does), resized to `image_size` x `image_size` (bilinear, aspect ratio not kept, as VTAB's
data loader does at 224) and stored as uint8 in memory.

Run it (configs/finetune.py documents the keys and what to expect):

  python -m vivi.evaluate.vtab --config=configs/finetune.py:tiny
  python -m vivi.evaluate.vtab --config=configs/finetune.py \
      --config.encoder_checkpoint=/path/to/exported_encoder --config.task=vtab \
      --config.data_dir=/path/to/tensorflow_datasets --output=/tmp/vtab.json
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vivi.input import synthetic_tasks

GROUPS = ('natural', 'specialized', 'structured')
LEARNING_RATES = (0.1, 0.01)
SCHEDULES = ((10_000, 3_000), (2_500, 750))  # (steps, decay every): VTAB's two schedules.
TRAIN_SIZE, VAL_SIZE = 800, 200


# ---------------------------------------------------------------------------------------
# The sweep.

@dataclasses.dataclass(frozen=True)
class Setting:
  """One point of the sweep: SGD's initial learning rate, steps, and the interval of its
  10x decays."""
  learning_rate: float
  steps: int
  decay_every: int

  def scaled(self, step_scale: float) -> 'Setting':
    """Steps and decay interval times `step_scale`, rounded half up, at least 1."""
    scale = lambda n: max(1, int(math.floor(n * step_scale + 0.5)))
    return Setting(self.learning_rate, scale(self.steps), scale(self.decay_every))

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


SWEEP = tuple(Setting(lr, steps, decay) for lr in LEARNING_RATES for steps, decay in SCHEDULES)


def scaled_sweep(sweep: Sequence[Setting] = SWEEP, step_scale: float = 1.0) -> tuple:
  if step_scale <= 0:
    raise ValueError(f'step_scale must be > 0, got {step_scale}')
  return tuple(Setting(*s).scaled(step_scale) if not isinstance(s, Setting)
               else s.scaled(step_scale) for s in sweep)


# ---------------------------------------------------------------------------------------
# Task definitions.

def _bin(value, thresholds: Sequence[float]):
  """VTAB's binning `reduce_max(where(thresholds - value < 0))`: the index of the last
  (ascending) threshold below `value`."""
  import tensorflow as tf
  thresholds = tf.constant(thresholds, value.dtype)
  return tf.reduce_sum(tf.cast(thresholds < value, tf.int32)) - 1


def _clevr_count(ex):
  """Number of objects minus 3 (CLEVR scenes hold 3..10 objects): 8 classes."""
  import tensorflow as tf
  return tf.size(ex['objects']['size']) - 3


CLEVR_DISTANCE_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)


def _clevr_distance(ex):
  """Depth of the closest object (min of pixel_coords[:, 2]) in 6 bins."""
  import tensorflow as tf
  return _bin(tf.reduce_min(ex['objects']['pixel_coords'][:, 2]), CLEVR_DISTANCE_THRESHOLDS)


KITTI_DISTANCE_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)


def _kitti_vehicle_distance(ex):
  """Depth (location z) of the closest car, van or truck (type < 3) in bins [<8 m, 8-20 m,
  >20 m, no vehicle (z = 1000)]: 4 classes."""
  import tensorflow as tf
  objects = ex['objects']
  z = tf.boolean_mask(objects['location'][:, 2], objects['type'] < 3)
  z = tf.concat([z, tf.constant([1000.0], z.dtype)], axis=0)
  return _bin(tf.reduce_min(z), KITTI_DISTANCE_THRESHOLDS)


def _dsprites_binned(feature: str, original: int, classes: int):
  """dSprites' `feature` (`original` values) grouped into `classes` bins of equal width,
  floor(value / (original / classes)) as VTAB does."""
  def label(ex):
    import tensorflow as tf
    return tf.cast(tf.math.floordiv(tf.cast(ex[feature], tf.float32), original / classes),
                   tf.int32)
  label.__doc__ = f'{feature} ({original} values) in {classes} bins'
  return label


def _dsprites_image(ex):
  """dSprites images are 0/1 [64, 64, 1]: scale to 0/255 (tiling to RGB follows)."""
  return ex['image'] * 255


@dataclasses.dataclass(frozen=True)
class Task:
  """One VTAB-1k task.

  name: this module's name for it ('cifar100', 'clevr/count_all', ...).
  group: 'natural', 'specialized' or 'structured'.
  tfds_name, version: the TFDS data set (with config) and VTAB's version pattern.
  splits: TFDS split strings for 'train800', 'val200', 'train800val200' and 'test'.
  num_classes: the head's outputs.
  label: the TFDS feature that is the label, or what `label_fn` computes from the example.
  label_fn: TF function example -> int label (None: the feature `label`).
  image_fn: TF function example -> image, before tiling to RGB (None: example['image']).
  split_sizes: TFDS split sizes the slice boundaries in `splits` were computed from
    (VTAB computes them from the data set's counts); `load_task` checks them.
  augment: the light augmentation (finetune.AUGMENTATIONS) that keeps this task's labels
    valid: no flips where left/right carries the label (x positions, orientations,
    azimuths, digits), no crops where positions, counts or framing do.
  """
  name: str
  group: str
  tfds_name: str
  version: str
  splits: Mapping[str, str]
  num_classes: int
  label: str = 'label'
  label_fn: Callable | None = None
  image_fn: Callable | None = None
  split_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
  augment: str = 'none'


def _native_val(val: str = 'validation', test: str = 'test') -> dict:
  """Splits of a data set with its own validation split."""
  return {'train800': 'train[:800]', 'val200': f'{val}[:200]',
          'train800val200': f'train[:800]+{val}[:200]', 'test': test}


def _val_from_train(val_start: int, test: str = 'test') -> dict:
  """Splits where VTAB's val is TFDS 'train' from `val_start` on."""
  val = f'train[{val_start}:{val_start + VAL_SIZE}]'
  return {'train800': 'train[:800]', 'val200': val, 'train800val200': f'train[:800]+{val}',
          'test': test}


def _percent(n: int, percent: int) -> int:
  return percent * n // 100


_TASK_LIST = (
    # Natural.
    Task('caltech101', 'natural', 'caltech101', '3.*.*',
         _val_from_train(_percent(3060, 90)), 102, split_sizes={'train': 3060},
         augment='crop_flip'),
    Task('cifar100', 'natural', 'cifar100', '3.*.*',
         _val_from_train(_percent(50000, 90)), 100, split_sizes={'train': 50000},
         augment='crop_flip'),
    Task('dtd', 'natural', 'dtd', '3.*.*', _native_val(), 47, augment='crop_flip'),
    Task('oxford_flowers102', 'natural', 'oxford_flowers102', '2.*.*', _native_val(), 102,
         augment='crop_flip'),
    Task('oxford_iiit_pet', 'natural', 'oxford_iiit_pet', '3.*.*',
         _val_from_train(_percent(3680, 80)), 37, split_sizes={'train': 3680},
         augment='crop_flip'),
    Task('sun397', 'natural', 'sun397/tfds', '4.*.*', _native_val(), 397, augment='crop_flip'),
    Task('svhn', 'natural', 'svhn_cropped', '3.*.*', _val_from_train(_percent(73257, 90)), 10,
         split_sizes={'train': 73257}, augment='crop'),
    # Specialized.
    Task('patch_camelyon', 'specialized', 'patch_camelyon', '2.*.*', _native_val(), 2,
         augment='crop_flip'),
    Task('eurosat', 'specialized', 'eurosat/rgb', '2.*.*',
         _val_from_train(_percent(27000, 60), test=f'train[{_percent(27000, 80)}:]'), 10,
         split_sizes={'train': 27000}, augment='crop_flip'),
    Task('resisc45', 'specialized', 'resisc45', '3.*.*',
         _val_from_train(_percent(31500, 60), test=f'train[{_percent(31500, 80)}:]'), 45,
         split_sizes={'train': 31500}, augment='crop_flip'),
    Task('diabetic_retinopathy', 'specialized', 'diabetic_retinopathy_detection/btgraham-300',
         '3.*.*', _native_val(), 5, augment='crop_flip'),
    # Structured.
    Task('clevr/count_all', 'structured', 'clevr', '3.*.*',
         _val_from_train(_percent(70000, 90), test='validation'), 8,
         label='number of objects - 3', label_fn=_clevr_count, split_sizes={'train': 70000},
         augment='flip'),
    Task('clevr/closest_object_distance', 'structured', 'clevr', '3.*.*',
         _val_from_train(_percent(70000, 90), test='validation'), 6,
         label=f'min objects.pixel_coords[:, 2] binned at {CLEVR_DISTANCE_THRESHOLDS}',
         label_fn=_clevr_distance, split_sizes={'train': 70000}, augment='flip'),
    Task('dmlab', 'structured', 'dmlab', '2.0.1', _native_val(), 6, augment='flip'),
    Task('dsprites/label_x_position', 'structured', 'dsprites', '2.*.*',
         _val_from_train(_percent(737280, 80), test=f'train[{_percent(737280, 90)}:]'), 16,
         label='label_x_position (32 values) in 16 bins',
         label_fn=_dsprites_binned('label_x_position', 32, 16), image_fn=_dsprites_image,
         split_sizes={'train': 737280}),
    Task('dsprites/label_orientation', 'structured', 'dsprites', '2.*.*',
         _val_from_train(_percent(737280, 80), test=f'train[{_percent(737280, 90)}:]'), 16,
         label='label_orientation (40 values) in 16 bins',
         label_fn=_dsprites_binned('label_orientation', 40, 16), image_fn=_dsprites_image,
         split_sizes={'train': 737280}),
    Task('kitti/closest_vehicle_distance', 'structured', 'kitti', '3.1.0', _native_val(), 4,
         label=f'min location z of cars/vans/trucks binned at {KITTI_DISTANCE_THRESHOLDS}',
         label_fn=_kitti_vehicle_distance, augment='flip'),
    # smallNORB: VTAB's val is the first half of TFDS 'test', its test the second half.
    Task('smallnorb/label_azimuth', 'structured', 'smallnorb', '2.*.*',
         {'train800': 'train[:800]', 'val200': 'test[:200]',
          'train800val200': 'train[:800]+test[:200]', 'test': 'test[50%:]'}, 18,
         label='label_azimuth'),
    Task('smallnorb/label_elevation', 'structured', 'smallnorb', '2.*.*',
         {'train800': 'train[:800]', 'val200': 'test[:200]',
          'train800val200': 'train[:800]+test[:200]', 'test': 'test[50%:]'}, 9,
         label='label_elevation', augment='flip'),
)
TASKS: dict[str, Task] = {t.name: t for t in _TASK_LIST}

SYNTHETIC_PREFIX = 'synthetic/'
# Augmentations that keep each synthetic task's labels (see synthetic_tasks.py): position
# and orientation change under flips and shifts; crops can cut counted or measured objects.
_SYNTHETIC_AUGMENT = {'class': 'crop_flip', 'count': 'flip', 'position': 'none',
                      'orientation': 'none', 'size': 'flip'}
SYNTHETIC_TASKS = {SYNTHETIC_PREFIX + t: k for t, k in synthetic_tasks.DOWNSTREAM_TASKS.items()}


def task_names(spec: str) -> list[str]:
  """'vtab' (all 19), 'synthetic' (all synthetic tasks), a group name, a task name, or a
  comma-separated list of those."""
  names = []
  for part in (p.strip() for p in spec.split(',') if p.strip()):
    if part == 'vtab':
      names += list(TASKS)
    elif part == 'synthetic':
      names += list(SYNTHETIC_TASKS)
    elif part in GROUPS:
      names += [n for n, t in TASKS.items() if t.group == part]
    elif part in TASKS or part in SYNTHETIC_TASKS:
      names.append(part)
    else:
      raise ValueError(f'unknown task {part!r}; valid: vtab, synthetic, {", ".join(GROUPS)}, '
                       f'{", ".join(list(TASKS) + list(SYNTHETIC_TASKS))}')
  return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------
# Task data.

@dataclasses.dataclass
class TaskData:
  """A task's images (uint8 [N, S, S, 3]) and labels (int32 [N]) per split."""
  name: str
  num_classes: int
  train800: tuple[np.ndarray, np.ndarray]
  val200: tuple[np.ndarray, np.ndarray]
  test: tuple[np.ndarray, np.ndarray]
  group: str = ''
  augment: str = 'none'

  @property
  def train800val200(self) -> tuple[np.ndarray, np.ndarray]:
    """VTAB's 1000-example set: train800 followed by val200."""
    return (np.concatenate([self.train800[0], self.val200[0]]),
            np.concatenate([self.train800[1], self.val200[1]]))


class NotPreparedError(FileNotFoundError):
  """A VTAB data set is not prepared in the TFDS data dir; nothing is ever downloaded."""


def load_task(name: str, *, data_dir: str | None = None, image_size: int = 224,
              num_test: int | None = None, seed: int = 0,
              version: str | None = None) -> TaskData:
  """Loads a task of `TASKS` (from the local TFDS `data_dir`) or `SYNTHETIC_TASKS`.

  image_size: images are resized to image_size x image_size (VTAB: 224).
  num_test: cap on test examples (the first ones); None is the whole split (VTAB). For a
    synthetic task it is the number rendered (None: 1000).
  seed: synthetic tasks only: the rendering seed (the train and test splits use
    different streams of it, `synthetic_tasks.py`).
  version: TFDS version instead of VTAB's (e.g. when the installed TFDS cannot read it).
  """
  if name in SYNTHETIC_TASKS:
    return _load_synthetic(name, image_size, num_test, seed)
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; valid: {list(TASKS) + list(SYNTHETIC_TASKS)}')
  return _load_tfds(TASKS[name], data_dir, image_size, num_test, version)


def _load_synthetic(name: str, image_size: int, num_test: int | None, seed: int) -> TaskData:
  task = name[len(SYNTHETIC_PREFIX):]
  images, labels = synthetic_tasks.render_downstream(
      task, 'train', TRAIN_SIZE + VAL_SIZE, image_size=image_size, seed=seed)
  test = synthetic_tasks.render_downstream(task, 'test', 1000 if num_test is None else num_test,
                                           image_size=image_size, seed=seed)
  return TaskData(name, SYNTHETIC_TASKS[name],
                  (images[:TRAIN_SIZE], labels[:TRAIN_SIZE]),
                  (images[TRAIN_SIZE:], labels[TRAIN_SIZE:]), test, group='synthetic',
                  augment=_SYNTHETIC_AUGMENT[task])


def _not_prepared(task: Task, spec: str, data_dir: str, detail: str) -> NotPreparedError:
  root = os.path.join(data_dir, task.tfds_name.split('/')[0])
  found = sorted(os.listdir(root)) if os.path.isdir(root) else []
  message = (f'VTAB task {task.name!r} needs the TFDS dataset {spec!r}, which is not prepared '
             f'in the data dir {data_dir!r} ({detail}); nothing is downloaded. Prepare it '
             f'first, e.g. `tfds build {task.tfds_name} --data_dir={data_dir}`, or set '
             f'data_dir to the folder that holds it.')
  if found:
    message += f' {root} holds {found}; pass version=... to use another version.'
  if task.tfds_name.split('/')[0] in ('resisc45', 'diabetic_retinopathy_detection'):
    message += ' This data set needs a manual download (see its TFDS page).'
  return NotPreparedError(message)


def _load_tfds(task: Task, data_dir: str | None, image_size: int, num_test: int | None,
               version: str | None) -> TaskData:
  import tensorflow as tf
  import tensorflow_datasets as tfds

  spec = f'{task.tfds_name}:{version or task.version}'
  data_dir = os.path.expanduser(data_dir or os.environ.get(
      'TFDS_DATA_DIR', os.path.join('~', 'tensorflow_datasets')))
  try:
    builder = tfds.builder(spec, data_dir=data_dir)
  except Exception as e:  # E.g. this TFDS neither has the version's code nor its files.
    raise _not_prepared(task, spec, data_dir, f'{type(e).__name__}: {e}') from e
  # (TFDS's mock data, tfds.testing.mock_data, has no files but reads.)
  for split, expected in task.split_sizes.items() if builder.data_path.exists() else ():
    actual = builder.info.splits[split].num_examples
    if actual != expected:
      raise ValueError(f'{spec} in {data_dir} has {actual} examples in {split!r}; VTAB\'s '
                       f'splits of task {task.name!r} {dict(task.splits)} were computed from '
                       f'{expected}')

  def prepare(ex):
    image = task.image_fn(ex) if task.image_fn else ex['image']
    if image.shape[-1] == 1:
      image = tf.tile(image, [1, 1, 3])
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size])
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    label = task.label_fn(ex) if task.label_fn else ex[task.label]
    return image, tf.cast(label, tf.int32)

  def read(split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False))
    if limit is not None:
      ds = ds.take(limit)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
    images, labels = [], []
    for x, y in tfds.as_numpy(ds):
      images.append(x)
      labels.append(y)
    if not images:
      raise ValueError(f'task {task.name!r}: split {split!r} of {spec} is empty')
    images, labels = np.concatenate(images), np.concatenate(labels)
    if labels.min() < 0 or labels.max() >= task.num_classes:
      raise ValueError(f'task {task.name!r}: labels of {split!r} span [{labels.min()}, '
                       f'{labels.max()}], outside [0, {task.num_classes})')
    return images, labels

  try:
    train800 = read(task.splits['train800'], None)
  except AssertionError as e:  # TFDS's "could not find data" check.
    if builder.data_path.exists():
      raise
    raise _not_prepared(task, spec, data_dir, f'no {builder.data_path}') from e
  return TaskData(task.name, task.num_classes, train800, read(task.splits['val200'], None),
                  read(task.splits['test'], num_test), group=task.group, augment=task.augment)


# ---------------------------------------------------------------------------------------
# The protocol.

TrainAndEval = Callable[[tuple, tuple, Setting, int], float]


def _seed(*parts: int) -> int:
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


def _select(task_data: TaskData, train_and_eval: TrainAndEval, sweep: Sequence[Setting],
            run_seed: int) -> tuple[Setting, list[dict]]:
  """Fine-tunes on train800 with every setting, evaluates on val200; the best setting
  (ties: the first in sweep order) and every validation accuracy."""
  validation, best, best_acc = [], None, -math.inf
  for i, setting in enumerate(sweep):
    acc = float(train_and_eval(task_data.train800, task_data.val200, setting,
                               _seed(run_seed, i)))
    validation.append({**setting.as_dict(), 'accuracy': acc})
    if acc > best_acc:
      best, best_acc = setting, acc
  return best, validation


def protocol(task_data: TaskData, train_and_eval: TrainAndEval, *,
             sweep: Sequence[Setting] = SWEEP, step_scale: float = 1.0, num_runs: int = 3,
             seed: int = 0, sweep_once: bool = False, log: Callable[[str], Any] | None = None
             ) -> dict:
  """VTAB-1k on one task with any trainer (module docstring, steps 1-4).

  train_and_eval(train, evaluation, setting, seed) -> accuracy: fine-tunes on `train`
    (images, labels) with `setting`, returns the accuracy on `evaluation`.
  sweep: the settings (VTAB's `SWEEP`); steps and decay intervals are multiplied by
    `step_scale` (at least 1 step).
  num_runs: independent runs (run r uses seed + r); each repeats the whole protocol
    (sweep, selection, retraining), as Romijnders et al. count "independent runs of the
    transfer protocol". With `sweep_once`, the sweep runs once (run 0's seed) and only
    the retraining repeats.

  Returns a dict:
    'task', 'num_classes', 'sweep' (the scaled settings),
    'test_accuracy': median over runs (mean of the middle two for an even count),
    'test_accuracies': per run,
    'chosen': per run, the chosen setting,
    'runs': per run {'seed', 'validation': [{setting..., 'accuracy'}] in sweep order,
      'chosen', 'test_accuracy', 'train_examples'}.
  """
  if num_runs < 1:
    raise ValueError(f'num_runs must be >= 1, got {num_runs}')
  sweep = scaled_sweep(sweep, step_scale)
  if not sweep:
    raise ValueError('the sweep is empty')
  log = log or (lambda msg: None)
  retrain = task_data.train800val200
  runs, shared = [], None
  for r in range(num_runs):
    run_seed = seed + r
    if sweep_once and shared is not None:
      chosen, validation = shared
    else:
      chosen, validation = _select(task_data, train_and_eval, sweep, run_seed)
      shared = (chosen, validation)
      for v in validation:
        log(f'{task_data.name} run {r}: lr {v["learning_rate"]} steps {v["steps"]} decay '
            f'every {v["decay_every"]}: val200 accuracy {v["accuracy"]:.4f}')
    test_acc = float(train_and_eval(retrain, task_data.test, chosen,
                                    _seed(run_seed, len(sweep))))
    log(f'{task_data.name} run {r}: chose {chosen.as_dict()}, test accuracy {test_acc:.4f}')
    runs.append({'seed': run_seed, 'validation': validation, 'chosen': chosen.as_dict(),
                 'test_accuracy': test_acc, 'train_examples': int(len(retrain[1]))})
  tests = [run['test_accuracy'] for run in runs]
  return {'task': task_data.name, 'num_classes': task_data.num_classes,
          'sweep': [s.as_dict() for s in sweep], 'test_accuracy': float(np.median(tests)),
          'test_accuracies': tests, 'chosen': [run['chosen'] for run in runs], 'runs': runs}


def finetune_train_and_eval(encoder, variables, num_classes: int, *, batch_size: int = 512,
                            mesh=None, augment: str = 'none',
                            recalibrate_batch_stats: bool = False) -> TrainAndEval:
  """The protocol's trainer: `finetune.finetune` from (encoder, variables) each time, then
  `finetune.accuracy`."""
  from vivi.evaluate import finetune

  def train_and_eval(train, evaluation, setting: Setting, seed: int) -> float:
    fitted = finetune.finetune(
        encoder, variables, train[0], train[1], num_classes,
        learning_rate=setting.learning_rate, steps=setting.steps,
        decay_every=setting.decay_every, batch_size=batch_size, seed=seed, mesh=mesh,
        augment=augment, recalibrate_batch_stats=recalibrate_batch_stats)
    return finetune.accuracy(encoder, fitted, evaluation[0], evaluation[1], mesh=mesh,
                             batch_size=min(batch_size, 256))

  return train_and_eval


def run_task(encoder, variables, task_data: TaskData, *, sweep: Sequence[Setting] = SWEEP,
             step_scale: float = 1.0, num_runs: int = 3, seed: int = 0, mesh=None,
             batch_size: int = 512, augment: str | None = None,
             recalibrate_batch_stats: bool = False, sweep_once: bool = False,
             train_and_eval: TrainAndEval | None = None,
             log: Callable[[str], Any] | None = print) -> dict:
  """VTAB-1k on one task by fine-tuning `encoder` from `variables` (see `protocol` for the
  result). augment: None is the task's own label-preserving default (`TaskData.augment`);
  'none' is VTAB's (no augmentation). `train_and_eval` replaces fine-tuning (tests)."""
  augment = task_data.augment if augment is None else augment
  if train_and_eval is None:
    train_and_eval = finetune_train_and_eval(
        encoder, variables, task_data.num_classes, batch_size=batch_size, mesh=mesh,
        augment=augment, recalibrate_batch_stats=recalibrate_batch_stats)
  result = protocol(task_data, train_and_eval, sweep=sweep, step_scale=step_scale,
                    num_runs=num_runs, seed=seed, sweep_once=sweep_once, log=log)
  result.update(group=task_data.group, augment=augment)
  return result


def group_means(results: Mapping[str, dict]) -> dict:
  """Mean test accuracy per group present, and 'mean' over all tasks (VTAB's score: the
  mean over tasks, not over group means)."""
  out = {}
  groups = list(GROUPS) + sorted({r.get('group', '') for r in results.values()} - set(GROUPS))
  for group in groups:
    accs = [r['test_accuracy'] for r in results.values() if r.get('group', '') == group]
    if accs and group:
      out[group] = float(np.mean(accs))
  if results:
    out['mean'] = float(np.mean([r['test_accuracy'] for r in results.values()]))
  return out


def run_suite(encoder, variables, tasks: Sequence[str | TaskData], *,
              data_dir: str | None = None, image_size: int = 224,
              num_test: int | None = None, data_seed: int = 0,
              log: Callable[[str], Any] | None = print, **run_task_kwargs) -> dict:
  """`run_task` on every task (names are loaded with `load_task`, one at a time).

  Returns {'tasks': {name: run_task's result}, 'natural', 'specialized', 'structured'
  (and 'synthetic') for the groups present: mean test accuracy, 'mean': over all tasks}.
  """
  results = {}
  for task in tasks:
    data = task if isinstance(task, TaskData) else load_task(
        task, data_dir=data_dir, image_size=image_size, num_test=num_test, seed=data_seed)
    results[data.name] = run_task(encoder, variables, data, log=log, **run_task_kwargs)
    if log:
      log(f'{data.name}: median test accuracy {results[data.name]["test_accuracy"]:.4f}')
  return {'tasks': results, **group_means(results)}


# ---------------------------------------------------------------------------------------
# Command line.

def _encoder_from_config(config, mesh):
  """(module, variables): the exported encoder, or with encoder_checkpoint='' a randomly
  initialised `config.model` (VTAB's from-scratch baseline; smoke runs)."""
  import jax
  import jax.numpy as jnp
  from vivi import checkpoint, parallel
  from vivi.models import resnet_v2

  if config.encoder_checkpoint:
    encoder = checkpoint.load_encoder(config.encoder_checkpoint, mesh)
    return encoder.module, encoder.variables
  m = config.model
  module = resnet_v2.ResNetV2(depth=m.depth, width=m.width, norm=m.norm,
                              num_groups=m.num_groups, dtype=jnp.dtype(m.dtype))
  variables = jax.jit(module.init, out_shardings=parallel.replicated(mesh))(
      jax.random.key(config.seed), jnp.zeros((1, config.image_size, config.image_size, 3)))
  return module, dict(variables)


def run_from_config(config) -> dict:
  """Runs `config.task` as configs/finetune.py describes; returns `run_suite`'s result."""
  from vivi import parallel

  mesh = parallel.make_mesh()
  module, variables = _encoder_from_config(config, mesh)
  sweep = [Setting(lr, steps, decay) for lr in config.sweep.learning_rates
           for steps, decay in config.sweep.schedules]
  return run_suite(
      module, variables, task_names(config.task), data_dir=config.data_dir or None,
      image_size=config.image_size, num_test=config.num_test or None,
      data_seed=config.data_seed, sweep=sweep, step_scale=config.step_scale,
      num_runs=config.num_runs, seed=config.seed, mesh=mesh, batch_size=config.batch_size,
      augment=config.augment or None, recalibrate_batch_stats=config.recalibrate_batch_stats,
      sweep_once=config.sweep_once)


def main(argv=None) -> None:
  from absl import app, flags
  from ml_collections import config_flags

  config = config_flags.DEFINE_config_file('config', None, 'configs/finetune.py[:variant]',
                                           lock_config=True)
  output = flags.DEFINE_string('output', '', 'Write the results here as JSON.')

  def run(args):
    if len(args) > 1:
      raise app.UsageError(f'unexpected arguments: {args[1:]}')
    result = run_from_config(config.value)
    summary = {k: v for k, v in result.items() if k != 'tasks'}
    print(json.dumps({'tasks': {n: r['test_accuracy'] for n, r in result['tasks'].items()},
                      **summary}, indent=1))
    if output.value:
      os.makedirs(os.path.dirname(os.path.abspath(output.value)), exist_ok=True)
      with open(output.value, 'w') as f:
        json.dump(result, f, indent=1)

  flags.mark_flags_as_required(['config'])
  app.run(run, argv)


if __name__ == '__main__':
  main()
