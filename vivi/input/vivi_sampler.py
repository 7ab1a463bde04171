"""VIVI's video -> shot -> frame sampling (seed 001, section 4).

Per video: K consecutive shots that each have at least L frames (shots shorter than L are
passed over, so "consecutive" means consecutive among the video's usable shots; a video with
fewer than K usable shots is skipped and counted, as the paper drops "those videos with
fewer shots"), then L consecutive frames at a random offset within each shot. Only the
sampled frames are decoded. Each frame is augmented once, independently (section 3.2:
"we pick M consecutive frames from the same shot and augment each frame once").

A sampler is two functions that the generic pipeline (`pipeline.py`) calls:
  `select(parsed, seed) -> dict` (cheap: picks frames, decodes nothing; has key 'ok'),
  `render(selected, seed) -> dict` (decodes and augments the picked frames).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from vivi.input import augment


@dataclasses.dataclass(frozen=True)
class ViviSampler:
  num_shots: int                  # K
  frames_per_shot: int            # L
  augment: augment.AugmentConfig
  rotate: bool = False            # rotation-prediction variant: frames get quarter turns

  def select(self, parsed: dict, seed: tf.Tensor) -> dict:
    k, l = self.num_shots, self.frames_per_shot
    shot_ids = parsed['shot/id']
    _, _, lengths = tf.unique_with_counts(shot_ids)   # shot ids are non-decreasing
    lengths = tf.cast(lengths, tf.int32)
    starts = tf.cumsum(lengths, exclusive=True)
    usable = tf.cast(tf.where(lengths >= l)[:, 0], tf.int32)
    num_usable = tf.size(usable)
    ok = num_usable >= k

    seeds = tf.random.experimental.stateless_split(seed, 2)
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
    return {'ok': ok, 'jpegs': tf.gather(parsed['image/encoded'], frame_idx)}  # [K, L]

  def render(self, selected: dict, seed: tf.Tensor) -> dict:
    k, l = self.num_shots, self.frames_per_shot
    seeds = tf.random.experimental.stateless_split(seed, k * l + 1)
    jpegs = tf.reshape(selected['jpegs'], [k * l])
    out = {}
    rotation = tf.zeros([k * l], tf.int32)
    if self.rotate:
      shift = tf.random.stateless_uniform([k, 1], seeds[-1], 0, 4, dtype=tf.int32)
      rotation = tf.reshape((tf.range(l)[None, :] + shift) % 4, [k * l])
      out['rotation'] = tf.reshape(rotation, [k, l])

    def one(args):
      jpeg, s, r = args
      image, *_ = augment.augment_frame(jpeg, s, self.augment, r if self.rotate else None)
      return image

    frames = tf.map_fn(one, (jpegs, seeds[:-1], rotation),
                       fn_output_signature=tf.TensorSpec(
                           [self.augment.image_size, self.augment.image_size, 3], tf.uint8))
    out['frames'] = tf.reshape(frames, [k, l, self.augment.image_size,
                                        self.augment.image_size, 3])
    return out
