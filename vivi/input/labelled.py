"""Labelled images: the co-training stream next to the videos, and the one reader of TFDS
image data sets (the evaluators' `read_tfds`, VTAB's tasks) and of the synthetic world's
labelled tasks (`synthetic_task`).

VIVI (section 3.1 "Co-training with labeled images") applies the frame encoder f
and a linear classifier to mini-batches of labelled images from a *different* data set
(ImageNet, section 4: all of it or a class-balanced 10%) and adds gamma * cross-entropy to
the self-supervised loss. Romijnders et al. (section 4.1 "Cotraining details")
sample one image batch per step next to the video batch and state "Images are preprocessed
using the inception crop function"; VIVI additionally uses S4L's HSV colour randomisation
for the models co-trained on a fraction of ImageNet (VIVI, section 4).

What we chose:
  * Augmentation: Inception crop (random resized crop, `AugmentConfig.crop_area` /
    `crop_aspect`, i.e. 5%-100% area and aspect 3/4-4/3 by default, drawn by
    `augment.crop_window`), resize to S x S, random left-right flip. Colour distortion only
    if `augment_cfg.color` (augment.py's TF-slim distortion, which approximates but is not
    S4L's HSV randomisation); `default_augment` gives the co-training default, without it.
    One function (`augment.augment_image`) works on a decoded image, so TFDS images and the
    in-memory synthetic images go through the same code.
  * Sources: any TFDS image classification data set that is already prepared locally
    (e.g. 'imagenet2012', 'imagenet2012:5.1.0'; split 'train[:10%]' for a 10% variant, or
    'imagenet2012_subset/10pct' for TFDS's class-balanced 10%), or 'synthetic/<task>', a
    downstream task of the synthetic world rendered once in memory. Nothing is ever
    downloaded: an unprepared data set is an error that says how to prepare it.
  * Sharding: each process reads its even part of the split
    (`tfds.split_for_jax_process`), or synthetic images [process_index::process_count].
  * Order and memory: encoded images (or indices into the rendered array) are shuffled,
    then decoded and augmented, so the shuffle buffer holds bytes, not decoded pixels.
  * Randomness: files are shuffled with a seeded `tfds.ReadConfig`, the example shuffle is
    seeded, and each element's augmentation is stateless with a seed folded from (seed,
    process_index, element index), tagged apart from the video stream's seeds, so the same
    seed gives the same batches on every run.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vivi import errors
from vivi.input import augment, synthetic_tasks

SYNTHETIC_PREFIX = 'synthetic/'   # 'synthetic/<task>': a task of the synthetic world.
_TAG = 0x1ABE11ED  # Keeps the image stream's seeds apart from the video stream's.
_BAD_LABEL = 'label out of range'


@dataclasses.dataclass(frozen=True)
class LabelledSource:
  """Where the labelled images come from (`config.labelled`).

  Attributes:
    dataset: a TFDS name ('imagenet2012', optionally 'name:version' or 'name/config'), or
      'synthetic/<task>' for a task of `synthetic_tasks.DOWNSTREAM_TASKS`.
    split: TFDS split string; slicing allowed ('train[:10%]'). Unused for synthetic.
    data_dir: the local TFDS data dir; None (or '') is TFDS's default (TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    image_key, label_key: the features holding the image and the class label.
    num_examples: synthetic only: images rendered (once, in memory, on every process).
    seed: synthetic only: the rendering seed; keep it different from the probe's so the
      co-training images are not the probe's training images.
    render_size: synthetic only: rendering resolution; None is max(64, the augmentation's
      output size), so the crop has pixels to zoom into as it does on video frames.
  """
  dataset: str
  split: str = 'train'
  data_dir: str | None = None
  image_key: str = 'image'
  label_key: str = 'label'
  num_examples: int = 10000
  seed: int = 2
  render_size: int | None = None


def default_augment(image_size: int, crop_area: tuple[float, float] = (0.05, 1.0)
                    ) -> augment.AugmentConfig:
  """The co-training augmentation of Romijnders et al.: Inception crop and flip, no colour
  (crops of the run's `input.crop_area`, as its frames)."""
  return augment.AugmentConfig(image_size=image_size, crop_area=tuple(crop_area), color=False)


def synthetic_task(dataset: str) -> str | None:
  """The task of a 'synthetic/<task>' data set name (validated), None for any other name."""
  if not dataset.startswith(SYNTHETIC_PREFIX):
    return None
  task = dataset[len(SYNTHETIC_PREFIX):]
  if task not in synthetic_tasks.DOWNSTREAM_TASKS:
    raise ValueError(f'unknown synthetic task {task!r} in data set {dataset!r}; valid: '
                     f'{[SYNTHETIC_PREFIX + t for t in synthetic_tasks.DOWNSTREAM_TASKS]}')
  return task


def _builder(source: LabelledSource) -> tfds.core.DatasetBuilder:
  # '' (the config's "not set") is TFDS's default data dir too.
  return tfds.builder(source.dataset, data_dir=source.data_dir or None)


def _class_label(builder: tfds.core.DatasetBuilder, source: LabelledSource
                 ) -> tfds.features.ClassLabel:
  features = builder.info.features
  if source.label_key not in features:
    raise ValueError(f'labelled dataset {source.dataset!r} has no feature '
                     f'{source.label_key!r} (label_key); features: {sorted(features.keys())}')
  label = features[source.label_key]
  if not isinstance(label, tfds.features.ClassLabel):
    raise ValueError(f'feature {source.label_key!r} of labelled dataset {source.dataset!r} is '
                     f'{type(label).__name__}, not a ClassLabel: co-training needs classes')
  return label


def num_classes(source: LabelledSource) -> int:
  """The classifier's number of outputs; reads metadata only, prepares nothing."""
  task = synthetic_task(source.dataset)
  if task is not None:
    return synthetic_tasks.DOWNSTREAM_TASKS[task]
  return int(_class_label(_builder(source), source).num_classes)


def _to_rgb(image: tf.Tensor, dataset: str) -> tf.Tensor:
  """uint8 [H, W, 3] from an image with 1 (grayscale) or 3 channels."""
  if image.dtype != tf.uint8 or image.shape.rank != 3:
    raise ValueError(f'images of labelled dataset {dataset!r} are {image.dtype.name} of shape '
                     f'{image.shape}; expected uint8 [H, W, 1 or 3]')
  channels = image.shape[-1]
  if channels == 1:
    return tf.image.grayscale_to_rgb(image)
  if channels is None:  # Known only per image.
    image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)
    return tf.ensure_shape(image, [None, None, 3])
  if channels != 3:
    raise ValueError(f'images of labelled dataset {dataset!r} have {channels} channels; '
                     'expected 1 (grayscale) or 3 (RGB)')
  return image


@dataclasses.dataclass
class LabelledPipeline(collections.abc.Iterator):
  """An infinite iterator of host-local numpy batches {'images', 'labels'}.

  Turns the stream's failures into errors that name the data set: a label outside
  [0, num_classes), or a (part of a) split with no examples on this process.
  """
  dataset: tf.data.Dataset
  description: str
  num_classes: int
  _iterator: Any = dataclasses.field(default=None, init=False, repr=False)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def tf_iterator(self):
    """The tf.data iterator behind this pipeline."""
    if self._iterator is None:
      self._iterator = iter(self.dataset)
    return self._iterator

  def save_state(self, prefix: str) -> None:
    """Writes the iterator's state (tf.data's own checkpoint: its shuffle buffer of encoded
    images, or of indices for the synthetic tasks) to `prefix`*."""
    tf.train.Checkpoint(images=self.tf_iterator()).write(prefix)

  def restore_state(self, prefix: str) -> bool:
    """Moves the iterator to `save_state`'s; False when there is none."""
    if not tf.io.gfile.exists(prefix + '.index'):
      return False
    tf.train.Checkpoint(images=self.tf_iterator()).read(prefix).assert_consumed()
    return True

  def __next__(self) -> dict[str, np.ndarray]:
    try:
      batch = next(self.tf_iterator())
    except StopIteration:
      raise ValueError(f'{self.description} has no examples: nothing to repeat') from None
    except tf.errors.InvalidArgumentError as e:
      if _BAD_LABEL in e.message:
        found = re.search(_BAD_LABEL + r'\W*\[(-?\d+)\]', e.message)
        value = found.group(1) if found else '?'
        raise ValueError(f'{self.description}: label {value} is out of range '
                         f'[0, {self.num_classes})') from None
      raise
    return {k: v.numpy() for k, v in batch.items()}


def _stream(ds: tf.data.Dataset, materialise: Callable[[tf.Tensor], tf.Tensor],
            dataset: str, classes: int, augment_cfg: augment.AugmentConfig, *,
            batch_size: int, seed: int, shuffle_seed: int, process_index: int,
            shuffle_buffer: int) -> tf.data.Dataset:
  """(raw image, label) elements -> repeat -> shuffle -> augment -> batches.

  `materialise` turns the raw image (encoded bytes, or an index) into a decoded image;
  it runs after the shuffle so the shuffle buffer stays small.
  """
  base = tf.random.experimental.stateless_fold_in(
      tf.constant([seed, process_index], tf.int64), _TAG)
  no_autograph = tf.autograph.experimental.do_not_convert

  @no_autograph
  def process(index, raw, label):
    label = tf.cast(label, tf.int64)
    ok = (label >= 0) & (label < classes)
    check = tf.debugging.Assert(ok, [_BAD_LABEL, label])
    with tf.control_dependencies([check]):
      label = tf.cast(label, tf.int32)
    image = _to_rgb(materialise(raw), dataset)
    element_seed = tf.random.experimental.stateless_fold_in(base, index)
    return {'images': augment.augment_image(image, element_seed, augment_cfg), 'labels': label}

  ds = ds.repeat()
  if shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
  ds = ds.enumerate()
  ds = ds.map(no_autograph(lambda i, x: process(i, *x)), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 0
  return ds.with_options(options)


def _tfds_elements(source: LabelledSource, process_index: int, process_count: int,
                   file_seed: int) -> tuple[tf.data.Dataset, Callable, int]:
  """This process's (encoded image, label) examples, the decoder and the class count."""
  builder = _builder(source)
  classes = int(_class_label(builder, source).num_classes)
  features = builder.info.features
  if source.image_key not in features:
    raise ValueError(f'labelled dataset {source.dataset!r} has no feature '
                     f'{source.image_key!r} (image_key); features: {sorted(features.keys())}')
  feature = features[source.image_key]
  # Image features stay encoded through the shuffle; other tensors arrive decoded.
  encoded = isinstance(feature, tfds.features.Image)
  decoders = tfds.decode.PartialDecoding(
      {source.image_key: True, source.label_key: True},
      decoders={source.image_key: tfds.decode.SkipDecoding()} if encoded else None)
  split = tfds.split_for_jax_process(source.split, process_index=process_index,
                                     process_count=process_count)
  read_config = tfds.ReadConfig(shuffle_seed=file_seed, shuffle_reshuffle_each_iteration=True,
                                try_autocache=False)
  try:
    ds = builder.as_dataset(split=split, shuffle_files=True, read_config=read_config,
                            decoders=decoders)
  except AssertionError as e:  # TFDS's "could not find data" check.
    if builder.data_path.exists():
      raise
    raise errors.NotPreparedError(_not_prepared_message(builder, source)) from e
  ds = ds.map(lambda ex: (ex[source.image_key], ex[source.label_key]))
  decode = feature.decode_example if encoded else (lambda image: image)
  return ds, decode, classes


def _not_prepared_message(builder: tfds.core.DatasetBuilder, source: LabelledSource) -> str:
  data_dir = str(builder.data_dir_root)
  message = (f'labelled dataset {source.dataset!r} is not prepared in the TFDS data dir '
             f'{data_dir!r} (no {builder.data_path}); this pipeline never downloads. '
             f'Prepare it first on a machine with the data, e.g. '
             f'`tfds build {source.dataset} --data_dir={data_dir}`, or point '
             f'LabelledSource.data_dir at the data dir that holds it.')
  manual = getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
  if manual:
    message += (f' {builder.name} needs a manual download: put the files in a folder '
                f'(default {data_dir}/downloads/manual) and pass it with --manual_dir=... . '
                f'TFDS says: {" ".join(manual.split())}')
  return message


def make_labelled_pipeline(source: LabelledSource, augment_cfg: augment.AugmentConfig, *,
                           batch_size: int, seed: int, process_index: int = 0,
                           process_count: int = 1, shuffle_buffer: int = 10_000
                           ) -> LabelledPipeline:
  """This host's infinite stream of augmented labelled batches.

  Args:
    source: the labelled data (`LabelledSource`).
    augment_cfg: crop/flip/colour; `default_augment(S)` is the co-training default.
    batch_size: this host's images per batch.
    seed: the run's data seed (file order, example order and every augmentation).
    process_index, process_count: this process's part of the data.
    shuffle_buffer: examples in the shuffle buffer (encoded images, or indices).

  Returns:
    An iterator of {'images': uint8 [batch_size, S, S, 3], 'labels': int32 [batch_size]}.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, {process_count})')
  # Seeds for the file order and the example order, distinct per process.
  file_seed, shuffle_seed = (int(s) for s in np.random.SeedSequence(
      [seed, process_index, _TAG]).generate_state(2))
  task = synthetic_task(source.dataset)
  if task is None:
    ds, materialise, classes = _tfds_elements(source, process_index, process_count, file_seed)
    description = (f'labelled dataset {source.dataset!r} split {source.split!r} '
                   f'(process {process_index} of {process_count})')
  else:
    size = source.render_size or max(64, augment_cfg.image_size)
    images, labels = synthetic_tasks.render_downstream(
        task, 'train', source.num_examples, image_size=size, seed=source.seed)
    images = tf.constant(images[process_index::process_count])
    labels = labels[process_index::process_count]
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(labels)), labels))

    def materialise(index: tf.Tensor) -> tf.Tensor:
      return tf.gather(images, index)

    classes = synthetic_tasks.DOWNSTREAM_TASKS[task]
    shuffle_buffer = min(shuffle_buffer, len(labels))  # All of it: a uniform shuffle.
    description = (f'labelled dataset {source.dataset!r} ({source.num_examples} images, '
                   f'process {process_index} of {process_count})')
  ds = _stream(ds, materialise, source.dataset, classes, augment_cfg, batch_size=batch_size,
               seed=seed, shuffle_seed=shuffle_seed, process_index=process_index,
               shuffle_buffer=shuffle_buffer)
  return LabelledPipeline(ds, description, classes)


def resized_rgb(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 [S, S, 3] of a 1- or 3-channel image: bilinear resize, rounded (evaluation)."""
  if image.shape[-1] == 1:
    image = tf.tile(image, [1, 1, 3])
  image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size])
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def read_arrays(ds: tf.data.Dataset, prepare: Callable, what: str
                ) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images [N, S, S, 3], int32 labels [N]) of the examples of `ds`, each mapped by
  `prepare` to (image, label); `what` names the data in the error for an empty split."""
  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
  pairs = list(tfds.as_numpy(ds))
  if not pairs:
    raise ValueError(f'{what} is empty')
  return (np.concatenate([p[0] for p in pairs]),
          np.concatenate([p[1] for p in pairs]).astype(np.int32))


def read_tfds(dataset: str, split: str, *, data_dir: str | None, image_size: int,
              limit: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
  """(images uint8 [N, S, S, 3], labels [N], num_classes) of the first `limit` examples of
  a split of a TFDS image classification data set prepared under `data_dir` (evaluation:
  no augmentation, never downloaded)."""
  source = LabelledSource(dataset=dataset, split=split, data_dir=data_dir or None)
  builder = _builder(source)
  classes = int(_class_label(builder, source).num_classes)
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False))
  except AssertionError as e:  # TFDS's "could not find data" check.
    if builder.data_path.exists():
      raise
    raise errors.NotPreparedError(_not_prepared_message(builder, source)) from e
  if limit is not None:
    ds = ds.take(limit)
  images, labels = read_arrays(
      ds, lambda ex: (resized_rgb(ex[source.image_key], image_size), ex[source.label_key]),
      f'split {split!r} of {dataset!r}')
  return images, labels, classes
