"""Per-frame augmentation in TensorFlow, stateless (seeded) and box-aware.

VIVI (section 4) and Romijnders et al. (section 4.1) augment every frame
with the policy of [58]/[66]: Inception-style random resized crop, left-right flip and
colour distortion. We follow TF-slim's `inception_preprocessing` (crop area 5%-100% of the
frame, aspect ratio 3/4-4/3; brightness +-32/255, saturation and contrast x[0.5, 1.5],
hue +-0.2, in that fixed order since stateless ops cannot draw the order cheaply).

Geometry is drawn first as explicit parameters (a crop window and a flip bit) and then
applied, so that the same parameters can move the frame's boxes (`transform_boxes`): the
object level (Romijnders et al.: "the coordinates of object bounding boxes are recalculated
accordingly") needs boxes to follow their frame.

Only the crop window of the JPEG is decoded (`decode_and_crop_jpeg`).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  image_size: int
  crop_area: tuple[float, float] = (0.05, 1.0)
  crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
  flip: bool = True
  color: bool = True
  brightness: float = 32 / 255
  saturation: tuple[float, float] = (0.5, 1.5)
  hue: float = 0.2
  contrast: tuple[float, float] = (0.5, 1.5)


def crop_window(image_hw: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
  """An Inception-style random crop [y0, x0, h, w] in pixels of an image of size image_hw."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_size=tf.concat([image_hw, [3]], 0),
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed,
      min_object_covered=cfg.crop_area[0],
      aspect_ratio_range=cfg.crop_aspect,
      area_range=cfg.crop_area,
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  return tf.concat([begin[:2], size[:2]], 0)


def color_distort(image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
  """Colour distortion of a float image in [0, 1]."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  image = tf.image.stateless_random_brightness(image, cfg.brightness, seeds[0])
  image = tf.image.stateless_random_saturation(image, *cfg.saturation, seeds[1])
  image = tf.image.stateless_random_hue(image, cfg.hue, seeds[2])
  image = tf.image.stateless_random_contrast(image, *cfg.contrast, seeds[3])
  return tf.clip_by_value(image, 0.0, 1.0)


def augment_frame(jpeg: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig, rotation=None):
  """Decodes (only the crop window of) a JPEG frame and augments it.

  Args:
    jpeg: scalar string.
    seed: [2] int stateless seed.
    cfg: the augmentation.
    rotation: optional scalar int, quarter turns counter-clockwise applied last.

  Returns:
    (image uint8 [S, S, 3], window [4] int32 (y0, x0, h, w) in pixels of the source
    frame, flipped bool, source frame size [2] int32) — the last three for
    `transform_boxes`.
  """
  hw = tf.cast(tf.io.extract_jpeg_shape(jpeg)[:2], tf.int32)
  crop = lambda window: tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
  return _augment(hw, crop, seed, cfg, rotation)


def augment_decoded(image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig):
  """`augment_frame` for an already decoded uint8 image [H, W, 3]; same return values, so
  that whatever is aligned with the image (boxes, segment masks) can follow its geometry."""
  crop = lambda w: tf.slice(image, tf.stack([w[0], w[1], 0]), tf.stack([w[2], w[3], 3]))
  return _augment(tf.shape(image)[:2], crop, seed, cfg)


def augment_image(image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
  """The same augmentation of an already decoded uint8 image [H, W, 3] -> [S, S, 3]."""
  return augment_decoded(image, seed, cfg)[0]


def _augment(hw: tf.Tensor, crop, seed: tf.Tensor, cfg: AugmentConfig, rotation=None):
  seeds = tf.random.experimental.stateless_split(seed, 3)
  window = crop_window(hw, seeds[0], cfg)
  image = tf.image.resize(crop(window), [cfg.image_size, cfg.image_size], antialias=True)
  image = image / 255.0
  flipped = tf.constant(False)
  if cfg.flip:
    flipped = tf.random.stateless_uniform([], seeds[1]) < 0.5
    image = tf.cond(flipped, lambda: tf.image.flip_left_right(image), lambda: image)
  if cfg.color:
    image = color_distort(image, seeds[2], cfg)
  if rotation is not None:
    image = tf.image.rot90(image, rotation)
  image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
  return image, window, flipped, hw


def transform_boxes(boxes: tf.Tensor, valid: tf.Tensor, window: tf.Tensor,
                    image_hw: tf.Tensor, flipped: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Moves normalised boxes [n, 4] (ymin, xmin, ymax, xmax) through a crop and a flip.

  A box whose centre leaves the crop is dropped (valid=False); the others are clipped to the
  crop. Returns (boxes in the augmented frame's normalised coordinates, valid).
  """
  hw = tf.cast(image_hw, tf.float32)
  y0, x0 = tf.cast(window[0], tf.float32) / hw[0], tf.cast(window[1], tf.float32) / hw[1]
  h, w = tf.cast(window[2], tf.float32) / hw[0], tf.cast(window[3], tf.float32) / hw[1]
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  ymin, ymax = (ymin - y0) / h, (ymax - y0) / h
  xmin, xmax = (xmin - x0) / w, (xmax - x0) / w
  cy, cx = (ymin + ymax) / 2, (xmin + xmax) / 2
  inside = (cy >= 0) & (cy < 1) & (cx >= 0) & (cx < 1)
  xmin, xmax = tf.where(flipped, 1 - xmax, xmin), tf.where(flipped, 1 - xmin, xmax)
  out = tf.clip_by_value(tf.stack([ymin, xmin, ymax, xmax], axis=-1), 0.0, 1.0)
  return out, valid & inside
