"""The 19 tasks of VTAB-1k version 1 (Zhai et al. 2019) and the synthetic world's tasks, as
in-memory data for the protocol in `vtab.py`.

`TASKS`: the 19 task definitions, written from the VTAB repository's data modules
    (github.com/google-research/task_adaptation, task_adaptation/data/*.py): TFDS name and
    version, the 'train800' / 'val200' / 'train800val200' / 'test' split strings, the label
    (a feature, or the function VTAB derives it with, e.g. CLEVR's distance bins), the
    number of classes and the group. `load_task` reads one from a local TFDS data dir and
    never downloads.
`SYNTHETIC_TASKS`: the synthetic world's held-out tasks (`input/synthetic_tasks.py`)
    with the same 800 / 200 / test structure, so the protocol runs end to end here.

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
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from vivi import errors
from vivi.input import labelled, synthetic_tasks

GROUPS = ('natural', 'specialized', 'structured')
TRAIN_SIZE, VAL_SIZE = 800, 200


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

SYNTHETIC_PREFIX = labelled.SYNTHETIC_PREFIX
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


def _not_prepared(task: Task, spec: str, data_dir: str, detail: str
                  ) -> errors.NotPreparedError:
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
  return errors.NotPreparedError(message)


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
    label = task.label_fn(ex) if task.label_fn else ex[task.label]
    return labelled.resized_rgb(image, image_size), tf.cast(label, tf.int32)

  def read(split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False))
    if limit is not None:
      ds = ds.take(limit)
    images, labels = labelled.read_arrays(ds, prepare,
                                          f'task {task.name!r}: split {split!r} of {spec}')
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
