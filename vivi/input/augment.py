"""Per-frame augmentation in TensorFlow, stateless (seeded) and box-aware.

VIVI (section 4) and Romijnders et al. (section 4.1) augment every frame
with the policy of [58]/[66]: Inception-style random resized crop, left-right flip and
colour distortion. We follow TF-slim's `inception_preprocessing` (crop area 5%-100% of the
frame, aspect ratio 3/4-4/3; brightness +-32/255, saturation and contrast x[0.5, 1.5],
hue +-0.2, in that fixed order since stateless ops cannot draw the order cheaply).
That is `AugmentConfig`'s default.

VINCE's ResNet-50 recipe (Gordon et al., Appendix 1: "the blur augmentation and stronger
color augmentation" of MoCo v2) and VITO (Parthasarathy et al., section 3.1 eq. 1: BYOL's
"cropping, flipping, blurring, and point-wise color transformations") add colour jitter
applied with a probability, random grayscale, Gaussian blur and (BYOL) solarisation, in
BYOL's order: crop, flip, colour jitter, grayscale, blur, solarize. `moco_v2` and `byol`
build those configurations. Their randomness comes from a seed folded off the incoming one,
so the default configuration draws exactly what it drew before these options existed.

Geometry is drawn first as explicit parameters (a crop window and a flip bit) and then
applied, so that the same parameters can move the frame's boxes (`transform_boxes`): the
object level (Romijnders et al.: "the coordinates of object bounding boxes are recalculated
accordingly") needs boxes to follow their frame.

Only the crop window of the JPEG is decoded (`decode_and_crop_jpeg`).
"""

from __future__ import annotations

import dataclasses

from vivi import errors
from vivi.lazy_import import tensorflow as tf

_EXTRA_SEED_TAG = 0xB10B  # folded into a frame's seed for the MoCo v2 / BYOL options


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
  color_prob: float = 1.0         # probability that the colour distortion is applied
  grayscale_prob: float = 0.0
  blur_prob: float = 0.0          # Gaussian blur, kernel side ~10% of image_size
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  solarize_prob: float = 0.0      # x -> x if x < 0.5 else 1 - x, on [0, 1]


# torchvision's ColorJitter(brightness=b, contrast=c, saturation=s, hue=h) mapped onto TF's
# ops: an additive brightness delta of b (torchvision multiplies by [1-b, 1+b]), contrast
# and saturation factors in [1-c, 1+c] and [1-s, 1+s], a hue shift of h (both in fractions
# of the hue circle), in our fixed order (torchvision draws the order). An approximation.
def _jitter(brightness: float, contrast: float, saturation: float, hue: float) -> dict:
  return dict(brightness=brightness, contrast=(1 - contrast, 1 + contrast),
              saturation=(1 - saturation, 1 + saturation), hue=hue)


def _blur_sigma(image_size: int) -> tuple[float, float]:
  """SimCLR's and BYOL's sigma range, [0.1, 2.0] pixels of a 224-px view, in pixels of an
  `image_size` view: the same blur relative to the image at any resolution."""
  return (0.1 * image_size / 224, 2.0 * image_size / 224)


def moco_v2(image_size: int, crop_area: tuple[float, float] = (0.2, 1.0)) -> AugmentConfig:
  """MoCo v2's augmentation (VINCE's ResNet-50 recipe, Gordon et al. Appendix 1): crop,
  flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale p=0.2, blur p=0.5."""
  return AugmentConfig(image_size=image_size, crop_area=crop_area, color_prob=0.8,
                       grayscale_prob=0.2, blur_prob=0.5, blur_sigma=_blur_sigma(image_size),
                       **_jitter(0.4, 0.4, 0.4, 0.1))


def byol(image_size: int, view: int, crop_area: tuple[float, float] = (0.08, 1.0)
         ) -> AugmentConfig:
  """BYOL's asymmetric augmentation of view 0 or 1 (views >= 2 take view 1's), as VITO
  uses it (Parthasarathy et al., section 3.1): colour jitter (0.4, 0.4, 0.2, 0.1) with
  p=0.8, grayscale p=0.2, blur p=1.0 / 0.1, solarize p=0.0 / 0.2."""
  first = view == 0
  return AugmentConfig(image_size=image_size, crop_area=crop_area, color_prob=0.8,
                       grayscale_prob=0.2, blur_prob=1.0 if first else 0.1,
                       blur_sigma=_blur_sigma(image_size), solarize_prob=0.0 if first else 0.2,
                       **_jitter(0.4, 0.4, 0.2, 0.1))


PRESETS = ('inception', 'moco_v2', 'byol')


def from_config(options, num_views: int = 1) -> tuple[AugmentConfig, ...]:
  """The views' augmentations of a resolved `config.input` (`samplers.resolve`): `augment`
  'inception' (VIVI, Romijnders et al.; `flip` and `color` switch parts off), 'moco_v2'
  (VINCE's ResNet-50 recipe) or 'byol' (VITO, DetCon; asymmetric views)."""
  crop_area = tuple(options.crop_area)
  if options.augment == 'inception':
    return (AugmentConfig(image_size=options.image_size, crop_area=crop_area, flip=options.flip,
                          color=options.color),)
  if options.augment == 'moco_v2':
    return (moco_v2(options.image_size, crop_area=crop_area),)
  if options.augment == 'byol':
    return tuple(byol(options.image_size, view=v, crop_area=crop_area) for v in range(num_views))
  raise errors.ConfigError(f'config.input.augment={options.augment!r}; valid: {list(PRESETS)}')


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


def grayscale(image: tf.Tensor) -> tf.Tensor:
  """Luma of a float RGB image, repeated over the three channels."""
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
  """Separable Gaussian blur of a float image [S, S, 3] with an odd kernel of side ~S/10
  (as SimCLR and BYOL: 23 pixels at S = 224); edges are mirrored, not zero-padded."""
  radius = max(image.shape[0] // 20, 1)
  x = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-x ** 2 / (2 * tf.cast(sigma, tf.float32) ** 2))
  kernel /= tf.reduce_sum(kernel)
  padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                  mode='REFLECT')
  column = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])   # [2r+1, 1, 3, 1]
  row = tf.reshape(column, [1, 2 * radius + 1, 3, 1])
  out = tf.nn.depthwise_conv2d(padded, column, [1, 1, 1, 1], 'VALID')
  return tf.nn.depthwise_conv2d(out, row, [1, 1, 1, 1], 'VALID')[0]


def solarize(image: tf.Tensor) -> tf.Tensor:
  """BYOL's solarisation of a float image in [0, 1]: pixels >= 0.5 are inverted."""
  return tf.where(image < 0.5, image, 1.0 - image)


def _maybe(prob: float, seed: tf.Tensor, op, image: tf.Tensor) -> tf.Tensor:
  """op(image) with probability `prob`; no draw and no branch when prob is 0 or 1."""
  if prob <= 0:
    return image
  if prob >= 1:
    return op(image)
  apply = tf.random.stateless_uniform([], seed) < prob
  return tf.cond(apply, lambda: op(image), lambda: image)


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


def _resize(image: tf.Tensor, hw: tf.Tensor, size: int) -> tf.Tensor:
  """Bilinear resize to [size, size], antialiased when the image shrinks along either side.

  Enlarging, the antialiased resize (TF's ScaleAndTranslate) computes the same image as the
  plain bilinear one (to 3e-5 on [0, 255]) at twice the cost; it was the input pipeline's
  most expensive op (python -m benchmarks.input_pipeline), and most crops are enlarged.
  """
  shape = [size, size]
  return tf.cond(tf.reduce_any(hw > size),
                 lambda: tf.image.resize(image, shape, antialias=True),
                 lambda: tf.image.resize(image, shape))


def _augment(hw: tf.Tensor, crop, seed: tf.Tensor, cfg: AugmentConfig, rotation=None):
  seeds = tf.random.experimental.stateless_split(seed, 3)
  window = crop_window(hw, seeds[0], cfg)
  image = _resize(crop(window), window[2:], cfg.image_size)
  image = image / 255.0
  flipped = tf.constant(False)
  if cfg.flip:
    flipped = tf.random.stateless_uniform([], seeds[1]) < 0.5
    image = tf.cond(flipped, lambda: tf.image.flip_left_right(image), lambda: image)
  # The options added for MoCo v2 / BYOL draw from a seed of their own (see the docstring).
  extra = tf.random.experimental.stateless_split(
      tf.random.experimental.stateless_fold_in(seed, _EXTRA_SEED_TAG), 5)
  if cfg.color:
    image = _maybe(cfg.color_prob, extra[0], lambda x: color_distort(x, seeds[2], cfg), image)
  image = _maybe(cfg.grayscale_prob, extra[1], grayscale, image)
  sigma = lambda: tf.random.stateless_uniform([], extra[3], *cfg.blur_sigma)
  image = _maybe(cfg.blur_prob, extra[2], lambda x: gaussian_blur(x, sigma()), image)
  image = _maybe(cfg.solarize_prob, extra[4], solarize, image)
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
