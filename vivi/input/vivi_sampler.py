"""VIVI's video -> shot -> frame sampling (VIVI, section 4).

Per video: K consecutive shots that each have at least L frames (shots shorter than L are
passed over, so "consecutive" means consecutive among the video's usable shots; a video with
fewer than K usable shots is skipped and counted, as the paper drops "those videos with
fewer shots"), then L consecutive frames at a random offset within each shot. Only the
sampled frames are decoded. Each frame is augmented once, independently (section 3.2:
"we pick M consecutive frames from the same shot and augment each frame once").

With `objects`, each sampled frame also carries its detector boxes (`objects.py`), moved
through the frame's crop and flip; with `soft_label_classes`, its classifier soft labels.

A sampler is two functions that the generic pipeline (`pipeline.py`) calls:
  `select(parsed, seed) -> dict` (cheap: picks frames, decodes nothing; has key 'ok'),
  `render(selected, seed) -> dict` (decodes and augments the picked frames).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vivi import errors, objectives
from vivi.input import augment, records, samplers
from vivi.input import objects as objects_lib
from vivi.lazy_import import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ViviSampler:
  num_shots: int                  # K
  frames_per_shot: int            # L
  augment: augment.AugmentConfig
  rotate: bool = False            # rotation-prediction variant: frames get quarter turns
  objects: objects_lib.ObjectsConfig | None = None
  soft_label_classes: int = 0     # > 0: frames carry 'soft_labels' (for distillation)

  def __post_init__(self):
    if self.rotate and self.objects:
      raise ValueError('rotated frames cannot carry boxes: use input.rotate without objects')

  @property
  def parse_features(self):
    return records.parse_features(self.soft_label_classes)

  def requirement(self, fps: float) -> str:
    """What a usable video has (`select`'s 'ok'), and how to make more videos usable."""
    k, l = self.num_shots, self.frames_per_shot
    return (f'K={k} shots of at least L={l} stored frames each (at {fps:g} fps: {k} shots of '
            f'{l / fps:g} s or longer); to use more videos, lower input.num_shots or '
            f'input.frames_per_shot, or prepare the videos at a higher frame rate '
            f'(data/prepare_videos.py --fps) or with fewer, longer shots (--shot_threshold, '
            f'--min_shot_seconds)')

  def select(self, parsed: dict, seed: tf.Tensor) -> dict:
    k, l = self.num_shots, self.frames_per_shot
    shot_ids = parsed['shot/id']
    _, _, lengths = tf.unique_with_counts(shot_ids)   # shot ids are non-decreasing
    lengths = tf.cast(lengths, tf.int32)
    starts = tf.cumsum(lengths, exclusive=True)
    usable = tf.cast(tf.where(lengths >= l)[:, 0], tf.int32)
    num_usable = tf.size(usable)
    ok = num_usable >= k

    seeds = tf.random.experimental.stateless_split(seed, 3)
    first = tf.random.stateless_uniform(
        [], seeds[0], 0, tf.maximum(num_usable - k + 1, 1), dtype=tf.int32)
    # Pad so that the gathers below are valid even for a video that will be skipped.
    shots = tf.gather(tf.concat([usable, tf.zeros([k], tf.int32)], 0), first + tf.range(k))
    shot_len = tf.gather(lengths, shots)
    u = tf.random.stateless_uniform([k], seeds[1])
    offset = tf.cast(tf.floor(u * tf.cast(tf.maximum(shot_len - l + 1, 1), tf.float32)),
                     tf.int32)
    frame_idx = tf.gather(starts, shots)[:, None] + offset[:, None] + tf.range(l)[None, :]
    num_frames = tf.size(shot_ids)
    frame_idx = tf.minimum(frame_idx, tf.maximum(num_frames - 1, 0))
    out = {'ok': ok, 'jpegs': tf.gather(parsed['image/encoded'], frame_idx)}  # [K, L]
    if self.objects:
      out.update(objects_lib.select_boxes(parsed, frame_idx, self.objects, seeds[2]))
    if self.soft_label_classes:
      out['soft_labels'] = tf.gather(parsed['image/soft_label'], frame_idx)
    return out

  def render(self, selected: dict, seed: tf.Tensor) -> dict:
    k, l, size = self.num_shots, self.frames_per_shot, self.augment.image_size
    seeds = tf.random.experimental.stateless_split(seed, k * l + 1)
    flat = lambda x: tf.reshape(x, tf.concat([[k * l], tf.shape(x)[2:]], 0))
    out = {}
    rotation = tf.zeros([k * l], tf.int32)
    if self.rotate:
      shift = tf.random.stateless_uniform([k, 1], seeds[-1], 0, 4, dtype=tf.int32)
      rotation = tf.reshape((tf.range(l)[None, :] + shift) % 4, [k * l])
      out['rotation'] = tf.reshape(rotation, [k, l])
    b = self.objects.max_boxes if self.objects else 0
    boxes = flat(selected['boxes']) if b else tf.zeros([k * l, 0, 4])
    valid = flat(selected['box_valid']) if b else tf.zeros([k * l, 0], tf.bool)

    def one(args):
      jpeg, s, r, frame_boxes, frame_valid = args
      image, window, flipped, hw = augment.augment_frame(
          jpeg, s, self.augment, r if self.rotate else None)
      frame_boxes, frame_valid = augment.transform_boxes(frame_boxes, frame_valid, window, hw,
                                                         flipped)
      return image, frame_boxes, frame_valid

    frames, boxes, valid = tf.map_fn(
        one, (flat(selected['jpegs']), seeds[:-1], rotation, boxes, valid),
        fn_output_signature=(tf.TensorSpec([size, size, 3], tf.uint8),
                             tf.TensorSpec([b, 4], tf.float32), tf.TensorSpec([b], tf.bool)))
    out['frames'] = tf.reshape(frames, [k, l, size, size, 3])
    if b:
      out['boxes'] = tf.reshape(boxes, [k, l, b, 4])
      out['box_valid'] = tf.reshape(valid, [k, l, b])
      out['box_labels'] = tf.where(out['box_valid'], selected['box_labels'], 0)
    if self.soft_label_classes:
      out['soft_labels'] = selected['soft_labels']
    return out


# config.input keys of this sampler beyond samplers.SHARED_KEYS, with VIVI's values
# (section 4; configs/vivi.py says where each comes from).
DEFAULTS = dict(num_shots=4, frames_per_shot=8, augment='inception', crop_area=(0.05, 1.0),
                flip=True, color=True, rotate=False, max_boxes=0,
                min_box_score=objects_lib.MIN_SCORE, random_boxes=False, random_labels=False,
                soft_labels=False)
POSITIVE = ('num_shots', 'frames_per_shot')   # Keys that must be >= 1.


def example_spec(options, config) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch, for a resolved `config.input`."""
  frames = (options.num_shots, options.frames_per_shot)
  spec = {'frames': (frames + (options.image_size, options.image_size, 3), np.uint8)}
  if options.rotate:
    spec['rotation'] = (frames, np.int32)
  if options.max_boxes:
    spec['boxes'] = (frames + (options.max_boxes, 4), np.float32)
    spec['box_labels'] = (frames + (options.max_boxes,), np.int32)
    spec['box_valid'] = (frames + (options.max_boxes,), bool)
  if options.soft_labels:   # As wide as the classifier of the objective that reads them.
    readers = objectives.reading(config, 'soft_labels')
    if not readers:
      raise errors.ConfigError('input.soft_labels=True gives soft labels, but none of '
                               f'config.objectives {sorted(config.objectives)} reads them '
                               '(distillation does)')
    width = next(iter(readers.values())).num_classes
    spec['soft_labels'] = (frames + (width,), np.float32)
  return spec


def from_config(options, config, manifest: records.Manifest, folder: str) -> ViviSampler:
  """The sampler of a resolved `config.input` for the dataset in `folder`."""
  boxes = None
  if options.max_boxes:
    if not manifest.label_map:
      raise errors.DatasetError(
          f'input.max_boxes={options.max_boxes}: the config trains on detector boxes, but {folder} '
          f'has none (its manifest has an empty label map: prepared with --detector none); '
          f'prepare it with a detector, or set input.max_boxes=0 without the object level')
    boxes = objects_lib.ObjectsConfig(
        num_classes=len(manifest.label_map), max_boxes=options.max_boxes,
        min_score=options.min_box_score, random_boxes=options.random_boxes,
        random_labels=options.random_labels)
  if options.soft_labels and not manifest.soft_label_map:
    raise errors.DatasetError(f'input.soft_labels=True but {folder} has no soft labels (its '
                              'manifest lists no soft_label_map)')
  return ViviSampler(num_shots=options.num_shots, frames_per_shot=options.frames_per_shot,
                     rotate=options.rotate, augment=augment.from_config(options)[0],
                     objects=boxes,
                     soft_label_classes=len(manifest.soft_label_map) if options.soft_labels
                     else 0)


SAMPLER = samplers.Sampler(defaults=DEFAULTS, positive=POSITIVE, example_spec=example_spec,
                           from_config=from_config)
