"""Object discovery on COCO: k-means segments of an encoder's feature map against COCO's
object masks, the evaluation of the Odin talk's table (Hénaff, "The virtuous cycle of object
discovery and representation learning": "Evaluate on COCO, cluster features using k-means,
report best overlap"; ResNet-50 at random initialisation: ABO^i 28.1, ABO^c 33.6, OR 17.0;
Odin 41.5, 48.6, 36.5), from Hénaff et al. 2022, "Object discovery and representation
networks" (Odin).

The segmentation is the synthetic world's (discovery.py: each image's `feature` map,
optionally upsampled, clustered on its own into `num_clusters` segments by the on-device
cosine k-means, the cluster map upsampled to the image by nearest neighbour); only the
images and their masks differ:

  * Data: TFDS `coco/2017_panoptic` prepared under config.data_dir (nothing is downloaded).
    Its `panoptic_image` encodes each pixel's segment id as id = R + 256 G + 256^2 B
    (`decode_panoptic`; 0: unlabelled), and `panoptic_objects` lists the segments (id,
    label, area, bbox, is_crowd). The suite's split 'test' reads COCO's validation split
    (val2017, 5,000 images); 'validation' never reads it and holds out the last tenth of
    COCO's train split instead (segmentation.held_out).
  * Geometry: each image's shorter side resized to config.image_size and the central square
    kept (datasets.resize_center_crop with crop fraction 1); its segment-id map goes through
    the same resize by nearest neighbour and the same crop. Objects left without a pixel in
    the crop are dropped.
  * Objects: the non-crowd instances of COCO's 80 "thing" categories. ABO^i and object
    recovery are measures over object instances (the talk's superscript i: Pont-Tuset et
    al.'s instance-level Jaccard, 2015), and "stuff" segments (sky, grass, wall: COCO's 53 other
    panoptic categories) are regions, not instances: they are left out, and crowd regions
    (is_crowd: several instances under one mask) too. In TFDS's label space the things are
    the first 80 labels (COCO's panoptic categories list the things, isthing = 1, before the
    stuff), which `_check_label_space` verifies on a prepared dataset's label names.

Metrics (`scores`), each object matched with the cluster of best IoU in its image:
  'abo'              ABO^i: the mean best overlap over all objects;
  'abo_class'        ABO^c: the mean over categories of each category's mean best overlap
                     (Pont-Tuset et al.'s class-level Jaccard; the slides name it without
                     defining it): frequent categories such as people weigh no more than
                     rare ones;
  'abo_image'        the mean over images (those with an object) of their objects' mean best
                     overlap;
  'object_recovery'  OR: the fraction of objects whose best IoU exceeds 0.5.
Counted in objects ('abo_image': in images). With an output folder, a picture like the
synthetic one (image | true masks | clusters) of a few images of the first chunk.

K (`num_clusters`, 8): the slides do not give it; COCO's images hold about 7 thing
instances on average, and K = 8 leaves each a cluster of its own plus one for the rest
(our choice; more clusters raise every encoder's best overlaps, see discovery.py).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from vivi import errors
from vivi.evaluate import datasets, discovery, linear_probe, segmentation
from vivi.evaluate.evaluators import Evaluator, Result
from vivi.lazy_import import tensorflow as tf
from vivi.lazy_import import tensorflow_datasets as tfds

TFDS_NAME = 'coco/2017_panoptic'
NUM_THINGS = 80           # COCO panoptic: the 80 thing categories come first, then 53 stuff.
CHUNK = 256               # Images encoded and scored at a time (bounded memory).
DEFAULTS = dict(
    num_images=0,         # > 0: only the first N images of the split (smoke runs).
    num_clusters=8,       # K, our choice (module docstring).
    num_iterations=discovery.DEFAULTS['num_iterations'],
    feature='block4',     # The representation the objectives train (configs/common.py).
    upsample=1,
    batch_size=64,
)


def check(options) -> None:
  """Raises ValueError naming the option that cannot work."""
  discovery.check({k: options[k] for k in ('feature', 'num_clusters', 'num_iterations',
                                           'upsample') if k in options})
  o = {**DEFAULTS, **options}
  for key, low in (('num_images', 0), ('batch_size', 1)):
    if not (isinstance(o[key], int) and o[key] >= low):
      raise ValueError(f'{key}={o[key]!r}: want an integer >= {low}')


def decode_panoptic(rgb: np.ndarray) -> np.ndarray:
  """Segment ids int64 [H, W] of a COCO panoptic PNG's pixels uint8 [H, W, 3]:
  id = R + 256 G + 256^2 B (COCO panoptic's rgb2id)."""
  rgb = np.asarray(rgb).astype(np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _resize_center_crop_ids(ids, image_size: int):
  """The segment-id map [H, W] through `datasets.resize_center_crop`'s geometry with crop
  fraction 1 (shorter side to image_size, central square), by nearest neighbour."""
  shape = tf.cast(tf.shape(ids)[:2], tf.float32)
  scale = float(image_size) / tf.reduce_min(shape)
  size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), image_size)
  ids = tf.image.resize(ids[..., None], size, method='nearest')[..., 0]
  top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
  return tf.ensure_shape(ids[top:top + image_size, left:left + image_size],
                         [image_size, image_size])


def prepare(example, image_size: int) -> dict:
  """A TFDS example -> {'image' uint8 [S, S, 3], 'ids' int32 [S, S], 'object_ids',
  'labels', 'is_crowd' [m]} (module docstring: Geometry)."""
  rgb = tf.cast(example['panoptic_image'], tf.int32)
  ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
  objects = example['panoptic_objects']
  return {'image': datasets.resize_center_crop(example['image'], image_size, 1.0),
          'ids': _resize_center_crop_ids(ids, image_size),
          'object_ids': tf.cast(objects['id'], tf.int32),
          'labels': tf.cast(objects['label'], tf.int32),
          'is_crowd': objects['is_crowd']}


def object_masks(example: dict) -> tuple[np.ndarray, np.ndarray]:
  """(bool masks [m, S, S], category labels [m]) of an example's non-crowd thing instances
  that keep a pixel in the crop."""
  keep = (example['labels'] < NUM_THINGS) & ~example['is_crowd'].astype(bool)
  ids, labels = example['object_ids'][keep], example['labels'][keep]
  masks = example['ids'][None] == ids[:, None, None]
  present = masks.reshape(len(masks), -1).any(1)
  return masks[present], labels[present]


def scores(best: list[np.ndarray], labels: list[np.ndarray]) -> tuple[dict[str, float], int,
                                                                       int]:
  """({'abo', 'abo_class', 'abo_image', 'object_recovery'}, number of objects, number of
  images with objects) of each image's best overlaps [m_i] and their objects' categories
  [m_i] (module docstring); NaN without objects."""
  per_image = [b for b in best if len(b)]
  if not per_image:
    return dict.fromkeys(('abo', 'abo_class', 'abo_image', 'object_recovery'),
                         float('nan')), 0, 0
  overlaps = np.concatenate(per_image)
  categories = np.concatenate([c for b, c in zip(best, labels) if len(b)])
  by_class = [overlaps[categories == c].mean() for c in np.unique(categories)]
  return {'abo': float(overlaps.mean()), 'abo_class': float(np.mean(by_class)),
          'abo_image': float(np.mean([b.mean() for b in per_image])),
          'object_recovery': float(np.mean(overlaps > 0.5))}, len(overlaps), len(per_image)


def _check_label_space(builder) -> None:
  """A prepared dataset names its labels: things first, as NUM_THINGS assumes (a dataset
  written without COCO's names, e.g. the tests', is taken as laid out the same way)."""
  names = builder.info.features['panoptic_objects']['label'].names
  if names and names[0] == 'person' and (names[NUM_THINGS - 1] != 'toothbrush'
                                         or names[NUM_THINGS] != 'banner'):
    raise errors.DatasetError(
        f'{TFDS_NAME} under {builder.data_dir}: labels {NUM_THINGS - 1} and {NUM_THINGS} '
        f'are {names[NUM_THINGS - 1]!r} and {names[NUM_THINGS]!r}, not COCO panoptic\'s '
        "last thing 'toothbrush' and first stuff 'banner': prepare it again with TFDS")


def split_name(builder, split: str) -> str:
  """COCO's validation split for 'test'; for 'validation' the held-out end of train."""
  if split == 'test':
    return 'validation'
  return f'train[{segmentation.held_out(builder.info.splits["train"].num_examples)}:]'


def examples(builder, split: str, image_size: int, limit: int):
  """The prepared examples (`prepare`) of a TFDS split, in order, as numpy dicts."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(try_autocache=False))
  if limit:
    ds = ds.take(limit)
  ds = ds.map(lambda e: prepare(e, image_size), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  yield from tfds.as_numpy(ds.prefetch(8))


def coco_discovery_eval(ctx, options) -> Result:
  """ABO^i, ABO^c, per-image ABO and object recovery of k-means segments on COCO (module
  docstring), with a picture when there is an output folder."""
  if ctx.is_histogram:
    return {}, {}     # A histogram has no feature map.
  builder = datasets.tfds_builder(TFDS_NAME, ctx.config.get('data_dir'), 'coco_discovery')
  _check_label_space(builder)
  split = split_name(builder, ctx.split)
  size = ctx.config.image_size
  kw = {k: options[k] for k in ('feature', 'upsample', 'num_clusters', 'num_iterations')}
  # The synthetic evaluator's key: one compilation serves both.
  segment = ctx.cache.get(('object_discovery', ctx.encoder.module, *kw.values()),
                          lambda: discovery.segmenter(ctx.encoder.module, ctx.mesh, **kw))
  ctx.log(f'COCO object discovery on {TFDS_NAME} {split} at {size} px, K={kw["num_clusters"]}')
  best, labels, shown = [], [], None
  stream = iter(examples(builder, split, size, options.num_images))
  while chunk := list(itertools.islice(stream, CHUNK)):
    frames = np.stack([e['image'] for e in chunk])
    cells = linear_probe.extract_features(segment, ctx.encoder.variables, frames, ctx.mesh,
                                          options.batch_size)
    segments = discovery.upsample_nearest(cells, size)
    masks = [object_masks(e) for e in chunk]
    for s, (m, c) in zip(segments, masks):
      best.append(discovery.best_overlaps(s, m) if len(m) else np.zeros(0))
      labels.append(c)
    if shown is None:
      shown = (frames, [m for m, _ in masks], segments)
    ctx.log(f'COCO object discovery: {len(best)} images')
  metrics, num_objects, num_images = scores(best, labels)
  for k in metrics:
    ctx.count(k, num_images if k == 'abo_image' else num_objects)
  ctx.log(f'{num_objects} objects in {num_images} images: ABO^i {metrics["abo"]:.3f}, ABO^c '
          f'{metrics["abo_class"]:.3f}, per image {metrics["abo_image"]:.3f}, object '
          f'recovery {metrics["object_recovery"]:.3f}')
  if not ctx.out_dir or shown is None:
    return metrics, {}
  picture = discovery.picture(*shown, options, os.path.join(ctx.out_dir, 'coco_discovery.png'))
  return metrics, ({} if picture is None else {'segments': picture})


COCO_DISCOVERY = Evaluator(coco_discovery_eval, DEFAULTS, check)
