"""Small TFDS datasets written on disk in the real format, for the evaluators' tests.

`write_tfds(name, data_dir, {split: [example, ...]})` encodes each example with the
installed TFDS builder's own feature specification (`tfds.builder(name).info.features`),
writes one TFRecord shard per split under the builder's versioned folder and its
`dataset_info.json`, so that `tfds.builder(name, data_dir=data_dir).as_dataset(split)`
reads it exactly as it reads the prepared real dataset. Pixels come from scikit-image's
sample images (`sample_images`), never from a mock of `tfds.load`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

SAMPLE_IMAGES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry',
                 'hubble_deep_field', 'retina', 'cat')


def sample_images(n: int, size: int | None = None, seed: int = 0) -> list[np.ndarray]:
  """`n` uint8 RGB crops of scikit-image's sample photographs (cycling through them, each
  crop at a seeded random place; `size` x `size`, or the photographs' own sizes halved)."""
  import skimage.data
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    image = getattr(skimage.data, SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)])()
    h, w = image.shape[:2]
    ch, cw = (size, size) if size else (h // 2, w // 2)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out.append(np.ascontiguousarray(image[y:y + ch, x:x + cw, :3]))
  return out


def write_tfds(name: str, data_dir: str, splits: Mapping[str, Sequence[dict]]):
  """Writes `splits` of the TFDS dataset `name` ('imagenet_a', 'coco/2017_panoptic', ...)
  under `data_dir`; returns the builder that reads them."""
  import tensorflow as tf
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=data_dir)
  features = builder.info.features
  os.makedirs(builder.data_dir, exist_ok=True)
  infos = []
  for split, examples in splits.items():
    path = os.path.join(builder.data_dir, f'{builder.name}-{split}.tfrecord-00000-of-00001')
    num_bytes = 0
    with tf.io.TFRecordWriter(path) as writer:
      for example in examples:
        record = features.serialize_example(example)
        num_bytes += len(record)
        writer.write(record)
    infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(examples)],
                                     num_bytes=num_bytes))
  builder.info.set_splits(tfds.core.SplitDict(infos))
  builder.info.write_to_directory(builder.data_dir)
  return tfds.builder(name, data_dir=data_dir)
