"""Unsupervised image segments for DetCon, and how they follow a view's crop and flip.

DetCon (Hénaff et al., "Efficient visual pretraining with contrastive detection", ICCV 2021,
section 3) takes its masks from an unsupervised heuristic; its default is the graph-based
segmentation of Felzenszwalb & Huttenlocher (IJCV 2004, "FH"), computed here with
`skimage.segmentation.felzenszwalb` inside the tf.data graph (`tf.numpy_function`).

A view is a crop + flip + resize of the image (`augment.augment_decoded`); its label map is
the image's FH label map moved through the same window and flip and resized by nearest
neighbour (`transform_labels`), so that a segment id marks the same image content in every
view. `sample_shared_segments` then draws the masks that the model pools under.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vivi.lazy_import import tensorflow as tf

_segmentation = None   # skimage.segmentation, once `load_segmentation` has run.


def load_segmentation() -> None:
  """Imports scikit-image's segmentation, on the thread that traces the pipeline's graph:
  a first import from a tf.data worker thread deadlocks once JAX is loaded."""
  global _segmentation
  if _segmentation is None:
    from skimage import segmentation
    _segmentation = segmentation


@dataclasses.dataclass(frozen=True)
class FHConfig:
  """Felzenszwalb-Huttenlocher parameters, in the FH paper's parameterisation.

  `scale` is the paper's k (for 0-255 intensities; larger means fewer, larger segments),
  `sigma` the Gaussian pre-smoothing and `min_size` the smallest component in pixels. The
  defaults are our choice for ~224-px frames, following FH's parameterisation and DetCon's
  use of FH; both `scale` and `min_size` act in pixel units, so they should scale with the
  image's area (e.g. x4 for frames twice as wide and high).
  """
  scale: float = 1000.0
  sigma: float = 0.8
  min_size: int = 1000


def fh_segments(image_uint8_hwc: tf.Tensor, cfg: FHConfig) -> tf.Tensor:
  """FH segments of a uint8 image [H, W, 3]: int32 [H, W], ids 0 .. n-1."""
  load_segmentation()   # While the graph is traced, on the thread that builds the pipeline.
  scale, sigma, min_size = float(cfg.scale), float(cfg.sigma), int(cfg.min_size)

  def segment(image: np.ndarray) -> np.ndarray:
    labels = _segmentation.felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    return labels.astype(np.int32)

  labels = tf.numpy_function(segment, [image_uint8_hwc], tf.int32, stateful=False)
  labels = tf.reshape(labels, tf.shape(image_uint8_hwc)[:2])
  labels.set_shape(image_uint8_hwc.shape[:2])
  return labels


def transform_labels(labels: tf.Tensor, window: tf.Tensor, flipped: tf.Tensor,
                     size: int) -> tf.Tensor:
  """Moves a label map [H, W] through a crop window (y0, x0, h, w), a resize to [size, size]
  (nearest neighbour) and a left-right flip, as `augment.augment_decoded` moves its image.

  Output pixel i takes the source pixel under its centre, (i + 0.5) * h / size, the point
  at which the image's resize samples it.
  """
  def source(start, extent):
    centres = (tf.range(size, dtype=tf.float32) + 0.5) * tf.cast(extent, tf.float32) / size
    return start + tf.minimum(tf.cast(tf.floor(centres), tf.int32), extent - 1)

  rows, cols = source(window[0], window[2]), source(window[1], window[3])
  cols = tf.where(flipped, tf.reverse(cols, [0]), cols)
  return tf.gather(tf.gather(labels, rows, axis=0), cols, axis=1)


def discovery_index(image_hw: tf.Tensor, window: tf.Tensor, size: int) -> tf.Tensor:
  """Which pixel of a discovery view each image pixel lands on (Odin, Hénaff et al. 2022).

  The discovery view is the crop `window` (y0, x0, h, w) of the image resized to
  [size, size]; image pixel r of the window lies under view pixel floor((r - y0 + 0.5) *
  size / h) (the inverse of the sampling in `transform_labels`). Returns int32 [H, W]:
  row * size + column of that view pixel, -1 for image pixels outside the window. Moved
  through a training view's crop and flip by `transform_labels`, it tells every pixel of
  that view where its content sits in the discovery view, and so which discovered segment
  it belongs to once the model has clustered the discovery view's features.
  """
  def index(extent_of_image, start, extent):
    rel = tf.range(extent_of_image) - start
    at = (tf.cast(rel, tf.float32) + 0.5) * size / tf.cast(extent, tf.float32)
    i = tf.minimum(tf.cast(tf.floor(at), tf.int32), size - 1)
    return tf.where((rel >= 0) & (rel < extent), i, -1)

  rows = index(image_hw[0], window[0], window[2])[:, None]
  cols = index(image_hw[1], window[1], window[3])[None, :]
  return tf.where((rows >= 0) & (cols >= 0), rows * size + cols, -1)


def sample_shared_segments(view_labels: tf.Tensor, num_masks: int,
                           seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Draws up to `num_masks` segments present in every view and renumbers them.

  Args:
    view_labels: int32 [V, S, S], each view's label map (ids >= 0, shared across views).
    num_masks: M.
    seed: [2] stateless seed.

  Returns:
    (segments int32 [V, S, S]: m at the pixels of the m-th sampled segment, -1 elsewhere;
    valid bool [M]: mask m was sampled, True for the first min(M, shared) masks). The
    sample is uniform without replacement among the segments present in all views.
  """
  num_views = tf.shape(view_labels)[0]
  num_ids = tf.reduce_max(view_labels) + 1
  pixels = tf.reshape(view_labels, [num_views, -1])
  counts = tf.math.bincount(pixels, minlength=num_ids, maxlength=num_ids, axis=-1)
  shared = tf.reduce_all(counts > 0, axis=0)                                  # [n]
  # Random keys in [0, 1) for shared ids, -1 for the others and for M padding entries;
  # the top M keys are then a uniform sample without replacement, shared ids first.
  keys = tf.where(shared, tf.random.stateless_uniform([num_ids], seed), -1.0)
  keys = tf.concat([keys, -tf.ones([num_masks])], 0)
  top, ids = tf.math.top_k(keys, k=num_masks)
  valid = top >= 0.0
  new_id = tf.where(valid, tf.range(num_masks), -1)
  table = tf.tensor_scatter_nd_update(-tf.ones([num_ids + num_masks], tf.int32),
                                      ids[:, None], new_id)
  return tf.gather(table, view_labels), valid
