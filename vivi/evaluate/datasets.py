"""The real datasets the evaluators read, where researchers keep them; nothing is downloaded.

Two kinds of sources:
  * TFDS datasets prepared under `data_dir` (`config.data_dir`; '' is TFDS's default,
    ~/tensorflow_datasets): `tfds_builder` returns the builder of one that is prepared and
    otherwise raises one line naming the dataset, the data dir and how to prepare it.
  * Folders in the official release's layout (ObjectNet, ImageNet-Vid-Robust,
    YouTube-BB-Robust, the cue-conflict stimuli, PASCAL VOC's segmentation masks):
    `release_folder` checks that the folder and the files the release defines are there.

And the evaluation preprocessing every ImageNet-label-space evaluator shares
(`resize_center_crop`): the shorter side resized to image_size / CROP_FRACTION, the central
image_size x image_size crop (the standard ImageNet evaluation: 256 -> 224).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from vivi import errors
from vivi.lazy_import import tensorflow as tf
from vivi.lazy_import import tensorflow_datasets as tfds

CROP_FRACTION = 0.875   # 224 / 256.


def tfds_builder(name: str, data_dir: str | None, evaluator: str):
  """The TFDS builder of `name` ('imagenet_v2', 'coco/2017_panoptic', ...) prepared under
  `data_dir`; `NotPreparedError` naming it, the data dir and the preparation command."""
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise errors.ConfigError(f'evaluator {evaluator!r}: {name!r} is not a TFDS dataset '
                             f'({str(e).splitlines()[0]})') from None
  if not builder.is_prepared():
    root = str(builder.data_dir_root)
    message = (f'evaluator {evaluator!r} needs the TFDS dataset {name!r} (version '
               f'{builder.info.version}), which is not prepared in the data dir {root!r} (no '
               f'{builder.data_dir}); nothing is downloaded. Prepare it on a machine with '
               f'the data: `tfds build {name} --data_dir={root}` (set config.data_dir to the '
               f'folder that holds it)')
    if getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
      message += (f'; {builder.name} needs its files downloaded by hand first, into '
                  f'{root}/downloads/manual or --manual_dir (its TFDS page says which)')
    raise errors.NotPreparedError(message + '.')
  return builder


def tfds_examples(builder, split: str, prepare: Callable, batch_size: int = 256,
                  limit: int | None = None) -> Iterator[tuple]:
  """Batches of `prepare(example)` (a tuple of tensors of fixed shapes) over `split`, in the
  dataset's order (deterministic; the first `limit` examples), as numpy."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(try_autocache=False))
  if limit:
    ds = ds.take(limit)
  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  yield from tfds.as_numpy(ds.batch(batch_size).prefetch(2))


def release_folder(path: str, dataset: str, evaluator: str, expected: Sequence[str] = (),
                   layout: str = '') -> str:
  """`path` (a dataset's official release, unpacked), checked to exist and hold `expected`
  (paths relative to it); `MissingPathError` naming the dataset, the path and the layout."""
  path = os.path.abspath(os.path.expanduser(path)) if path else ''
  missing = [] if path and os.path.isdir(path) else ['']
  missing = missing or [e for e in expected if not os.path.exists(os.path.join(path, e))]
  if missing:
    what = (f'no such folder {path!r}' if missing == [''] else
            f'{path} has no {missing[0]!r}')
    if not path:
      what = 'its folder is not set'
    raise errors.MissingPathError(
        f'evaluator {evaluator!r} reads {dataset} from its official release, unpacked: '
        f'{what}. Expected layout: {layout or ", ".join(expected)}; nothing is downloaded.')
  return path


def resize_center_crop(image, image_size: int, crop_fraction: float = CROP_FRACTION):
  """uint8 [S, S, 3] of a decoded image (1 or 3 channels, any size): the shorter side
  resized (bilinear, antialiased) to round(S / crop_fraction), then the central S x S."""
  image = tf.convert_to_tensor(image)
  if image.shape[-1] == 1:
    image = tf.tile(image, [1, 1, 3])
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  resize_to = float(round(image_size / crop_fraction))
  scale = resize_to / tf.reduce_min(shape)
  size = tf.cast(tf.round(shape * scale), tf.int32)
  size = tf.maximum(size, image_size)
  image = tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)
  top = (size[0] - image_size) // 2
  left = (size[1] - image_size) // 2
  image = image[top:top + image_size, left:left + image_size]
  image = tf.ensure_shape(image, [image_size, image_size, 3])
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def read_image_file(path: str, image_size: int, crop_fraction: float = CROP_FRACTION
                    ) -> np.ndarray:
  """`resize_center_crop` of an image file (JPEG or PNG) of a release folder, as numpy."""
  data = tf.io.read_file(path)
  image = tf.io.decode_image(data, channels=3, expand_animations=False)
  return resize_center_crop(image, image_size, crop_fraction).numpy()
