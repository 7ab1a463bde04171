"""DetCon's input: two augmented views of a frame and aligned segment masks.

DetCon (Hénaff et al., "Efficient visual pretraining with contrastive detection", ICCV 2021,
section 3): an image's unsupervised FH segments (`segments.py`) are carried through each
augmented view's crop and flip, so mask m covers the same image content in both views; the
model pools features under each mask and contrasts masks across views. DetCon samples 16
masks per image. Here the image is one uniformly random stored frame of a video.

Output of `render` (and, with a leading batch axis B, of `pipeline.make_pipeline`):

    frames      uint8 [2, S, S, 3]   view 0 and view 1 (augmented with `augment[0]`, `[1]`)
    segments    int32 [2, S, S]      m in 0 .. M-1 where the pixel belongs to sampled mask m
                                     in that view, -1 where it belongs to no sampled mask
    mask_valid  bool  [M]            mask m was sampled (False pads images with fewer than M
                                     segments present in both views; valid masks come first)

The M masks are drawn uniformly without replacement among the FH segments present in both
views. The model's masked pooling consumes `one_hot(segments, M)` ([2, S, S, M]; -1 gives an
all-zero row) and `mask_valid` to ignore the padding masks.

With `masks='discovered'` (Odin, Hénaff et al., ECCV 2022, section 3) the segments are not
known to the input pipeline: the model discovers them by clustering the EMA network's
features of a third, *discovery* view (a large crop of the frame, not otherwise augmented:
`discovery_crop_area`, no flip, no colour or blur). The sampler then gives, instead of
`segments` and `mask_valid`,

    discovery   uint8 [S, S, 3]      the discovery view
    cells       int32 [2, S, S]      for every pixel of view 0 and view 1, the discovery-view
                                     pixel its content comes from (row * S + column; -1
                                     outside the discovery crop): the views' crops and flips
                                     applied to `segments.discovery_index`

so that the segments found on the discovery view follow each view's crop and flip exactly as
DetCon's FH masks do (vivi/objectives/odin.py maps them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vivi.input import augment as augment_lib
from vivi.input import records, samplers
from vivi.input import segments as segments_lib
from vivi.lazy_import import tensorflow as tf

MASKS = ('fh', 'whole_image', 'discovered')


@dataclasses.dataclass(frozen=True)
class DetconSampler:
  augment: tuple[augment_lib.AugmentConfig, augment_lib.AugmentConfig]  # view 0, view 1
  num_masks: int = 16             # M
  fh: segments_lib.FHConfig = dataclasses.field(default_factory=segments_lib.FHConfig)
  # 'fh': Felzenszwalb-Huttenlocher segments (DetCon). 'whole_image': one mask covering the
  # whole image, i.e. the same objective on whole images (the image-level baseline DetCon
  # is compared against); with num_masks=1.
  masks: str = 'fh'
  # 'discovered' (Odin): the crop-area range of the discovery view.
  discovery_crop_area: tuple[float, float] = (0.5, 1.0)

  def __post_init__(self):
    if self.masks not in MASKS:
      raise ValueError(f'input.masks={self.masks!r}; valid: {MASKS}')
    if len(self.augment) != 2:
      raise ValueError(f'DetCon takes two views, got {len(self.augment)} augmentations')
    if self.augment[0].image_size != self.augment[1].image_size:
      raise ValueError('both views must have one image_size, got '
                       f'{self.augment[0].image_size} and {self.augment[1].image_size}')
    if self.num_masks < 1:
      raise ValueError(f'num_masks must be positive, got {self.num_masks}')

  @property
  def parse_features(self):
    return records.parse_features()

  def requirement(self, fps: float) -> str:
    """What a usable video has (`select`'s 'ok')."""
    del fps
    return 'at least one stored frame'

  def select(self, parsed: dict, seed: tf.Tensor) -> dict:
    jpegs = parsed['image/encoded']
    num_frames = tf.size(jpegs)
    frame = tf.random.stateless_uniform([], seed, 0, tf.maximum(num_frames, 1), dtype=tf.int32)
    # Padded so that the gather is valid for a video without frames (which is skipped).
    jpeg = tf.gather(tf.concat([jpegs, [b'']], 0), frame)
    return {'ok': num_frames > 0, 'jpeg': jpeg}

  def render(self, selected: dict, seed: tf.Tensor) -> dict:
    size = self.augment[0].image_size
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = tf.io.decode_jpeg(selected['jpeg'], channels=3)
    out = {}
    if self.masks == 'whole_image':
      labels = tf.zeros(tf.shape(image)[:2], tf.int32)
    elif self.masks == 'fh':
      labels = segments_lib.fh_segments(image, self.fh)
    else:
      discovery = augment_lib.AugmentConfig(image_size=size, crop_area=self.discovery_crop_area,
                                            flip=False, color=False)
      out['discovery'], window, _, _ = augment_lib.augment_decoded(image, seeds[2], discovery)
      labels = segments_lib.discovery_index(tf.shape(image)[:2], window, size)
    frames, view_labels = [], []
    for view, cfg in enumerate(self.augment):
      frame, window, flipped, _ = augment_lib.augment_decoded(image, seeds[view], cfg)
      frames.append(frame)
      view_labels.append(segments_lib.transform_labels(labels, window, flipped, size))
    out['frames'] = tf.stack(frames)
    if self.masks == 'discovered':
      out['cells'] = tf.stack(view_labels)
    else:
      out['segments'], out['mask_valid'] = segments_lib.sample_shared_segments(
          tf.stack(view_labels), self.num_masks, seeds[2])
    return out


# config.input keys of this sampler beyond samplers.SHARED_KEYS, with DetCon's values
# (configs/detcon.py says where each comes from). With masks='discovered' `num_masks` and
# `fh` are unused (Odin's masks are its objective's num_clusters).
DEFAULTS = dict(num_masks=16, fh=dataclasses.asdict(segments_lib.FHConfig()), masks='fh',
                augment='byol', crop_area=(0.08, 1.0), discovery_crop_area=(0.5, 1.0))
POSITIVE = ('num_masks',)   # Keys that must be >= 1.


def example_spec(options, config) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch, for a resolved `config.input`."""
  s = options.image_size
  if options.masks == 'discovered':
    return {'frames': ((2, s, s, 3), np.uint8), 'discovery': ((s, s, 3), np.uint8),
            'cells': ((2, s, s), np.int32)}
  return {'frames': ((2, s, s, 3), np.uint8), 'segments': ((2, s, s), np.int32),
          'mask_valid': ((options.num_masks,), bool)}


def from_config(options, config, manifest, folder: str) -> DetconSampler:
  """The sampler of a resolved `config.input`."""
  return DetconSampler(augment=augment_lib.from_config(options, 2), num_masks=options.num_masks,
                       fh=segments_lib.FHConfig(**options.fh), masks=options.masks,
                       discovery_crop_area=tuple(options.discovery_crop_area))


SAMPLER = samplers.Sampler(defaults=DEFAULTS, positive=POSITIVE, example_spec=example_spec,
                           from_config=from_config)
