"""Each sampled frame's detector annotations as fixed-shape, masked tensors.

The object level of Romijnders et al. (section 4.1): boxes with a detection score
below 0.05 are discarded and at most 5 are kept per frame (the highest scores; `MIN_SCORE`,
`MAX_BOXES`, `select_boxes`). Here they are
padded to `max_boxes` with a validity mask, so batches have static shapes; frames without
boxes are normal (all invalid). Two rows of the paper's Table 1 are input-side ablations:
"boxes at random coordinates" (`random_boxes`: every kept box moves to a uniformly random
position inside the frame, keeping its size and label) and "boxes and labels at random"
(`random_labels` as well: labels uniform over the label map).
"""

from __future__ import annotations

import dataclasses

from vivi.input import records
from vivi.lazy_import import tensorflow as tf

# The paper's box filter (section 4.1), the one definition: "We discard objects with
# detection score below 0.05" and "limit the number of objects ... to 5" per frame.
MIN_SCORE = 0.05
MAX_BOXES = 5


@dataclasses.dataclass(frozen=True)
class ObjectsConfig:
  num_classes: int                 # Size of the dataset's label map (manifest).
  max_boxes: int = MAX_BOXES
  min_score: float = MIN_SCORE
  random_boxes: bool = False
  random_labels: bool = False

  def __post_init__(self):
    if self.num_classes < 1:
      raise ValueError(f'objects need the label map size, got num_classes={self.num_classes}')


def select_boxes(parsed: dict, frame_idx: tf.Tensor, cfg: ObjectsConfig,
                 seed: tf.Tensor) -> dict:
  """The top-scoring boxes of the frames `frame_idx` (any shape S).

  Returns 'boxes' S + [B, 4] (ymin, xmin, ymax, xmax in [0, 1]), 'box_labels' S + [B],
  'box_scores' S + [B] and 'box_valid' S + [B].
  """
  shape = tf.shape(frame_idx)
  flat = tf.reshape(frame_idx, [-1])
  b = cfg.max_boxes

  def dense(key, fill):
    x = tf.gather(parsed[key], flat).to_tensor(default_value=fill)
    return tf.pad(x, [[0, 0], [0, tf.maximum(b - tf.shape(x)[1], 0)]], constant_values=fill)

  scores = dense('object/score', -1.0)
  ranked = tf.where(scores >= cfg.min_score, scores, -float('inf'))
  top, idx = tf.math.top_k(ranked, k=b)
  valid = top > -float('inf')
  take = lambda x: tf.gather(x, idx, batch_dims=1)
  boxes = tf.stack([take(dense(k, 0.0)) for k in records.BOX_KEYS], axis=-1)
  labels = tf.cast(take(dense('object/label', tf.constant(0, tf.int64))), tf.int32)

  seeds = tf.random.experimental.stateless_split(seed, 2)
  if cfg.random_boxes:
    size = boxes[..., 2:] - boxes[..., :2]
    corner = tf.random.stateless_uniform(tf.shape(size), seeds[0]) * (1.0 - size)
    boxes = tf.concat([corner, corner + size], axis=-1)
  if cfg.random_labels:
    labels = tf.random.stateless_uniform(tf.shape(labels), seeds[1], 0, cfg.num_classes,
                                         dtype=tf.int32)
  boxes = tf.where(valid[..., None], boxes, 0.0)
  labels = tf.where(valid, labels, 0)
  out_shape = lambda *tail: tf.concat([shape, tail], 0)
  return {
      'boxes': tf.reshape(boxes, out_shape(b, 4)),
      'box_labels': tf.reshape(labels, out_shape(b)),
      'box_scores': tf.reshape(tf.where(valid, top, 0.0), out_shape(b)),
      'box_valid': tf.reshape(valid, out_shape(b)),
  }
