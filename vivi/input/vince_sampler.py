"""VINCE's sampling: R2V2 frames and Multi-Frame Multi-Pair draws (Gordon et al.).

Per video (section 3.1, step 3 of building R2V2): "Pick a random point in the video and
extract T images with a gap of G seconds between each image" (T = 4, G = 5): a start time
uniform in [first timestamp, last timestamp - (T-1) G], and the stored frame nearest to
each of the T times. Like R2V2 this ignores shot boundaries. A video whose stored frames
span less than (T-1) G seconds gives ok=False; the pipeline counts and skips it.

Then the Multi-Frame rule (section 3.3, Table 3; Appendix 1: "When selecting frames from a
video, we pick with replacement"): k = `frames_per_video` anchors and k positives, each
drawn uniformly with replacement from the T frames, so a pair can be one image twice.
`same_frame=True` makes each positive its anchor's frame: Table 3's row 1, "Same Frame",
i.e. MoCo on R2V2. Every drawn image is augmented independently (two draws of one frame get
two augmentations); only drawn frames are decoded.

Output per video: 'frames' uint8 [k, S, S, 3], the anchors (for the online encoder f), and
'target_frames' uint8 [k, S, S, 3], the positives (for the momentum encoder g); positive i
comes from the same video as anchor i (and from the same frame with `same_frame`).

Same sampler protocol as `vivi_sampler.ViviSampler`: `select` picks, `render` decodes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vivi.input import augment, frame_times, samplers
from vivi.lazy_import import tensorflow as tf

_ROUNDING = 1e-3  # seconds: float32 timestamps that span exactly (T-1) G still qualify


@dataclasses.dataclass(frozen=True)
class VinceSampler:
  augment: augment.AugmentConfig
  frames_per_video: int = 4       # k anchors and k positives per video
  num_frames: int = 4             # T, R2V2's frames per video
  gap_seconds: float = 5.0        # G, seconds between R2V2's frames
  same_frame: bool = False        # Table 3 row 1: positive = anchor's frame (MoCo)

  def __post_init__(self):
    if self.frames_per_video < 1 or self.num_frames < 1:
      raise ValueError(f'frames_per_video and num_frames must be >= 1, got '
                       f'{self.frames_per_video} and {self.num_frames}')
    if not self.gap_seconds >= 0:
      raise ValueError(f'gap_seconds must be >= 0, got {self.gap_seconds}')

  @property
  def parse_features(self):
    return frame_times.parse_features(['image/encoded', 'image/timestamp'])

  def requirement(self, fps: float) -> str:
    """What a usable video has (`select`'s 'ok'), and how to make more videos usable."""
    del fps  # Frames are picked by time.
    span = (self.num_frames - 1) * self.gap_seconds
    return (f'stored frames spanning at least (T-1) x G = {span:g} s (T={self.num_frames} '
            f'frames G={self.gap_seconds:g} s apart); to use more videos, lower '
            f'input.num_frames or input.gap_seconds, or prepare longer videos')

  def select(self, parsed: dict, seed: tf.Tensor) -> dict:
    k, t = self.frames_per_video, self.num_frames
    timestamps = parsed['image/timestamp']
    first, last = timestamps[0], timestamps[-1]
    needed = tf.constant((t - 1) * self.gap_seconds, tf.float32)
    slack = last - first - needed
    seeds = tf.random.experimental.stateless_split(seed, 3)
    start = first + tf.random.stateless_uniform([], seeds[0]) * tf.maximum(slack, 0.0)
    times = start + self.gap_seconds * tf.range(t, dtype=tf.float32)
    video_frames = frame_times.nearest_frame(timestamps, times)              # [T]
    anchors = tf.random.stateless_uniform([k], seeds[1], 0, t, dtype=tf.int32)
    positives = anchors if self.same_frame else tf.random.stateless_uniform(
        [k], seeds[2], 0, t, dtype=tf.int32)
    drawn = tf.gather(video_frames, tf.concat([anchors, positives], 0))      # [2k]
    return {'ok': slack >= -_ROUNDING, 'jpegs': tf.gather(parsed['image/encoded'], drawn)}

  def render(self, selected: dict, seed: tf.Tensor) -> dict:
    k, size = self.frames_per_video, self.augment.image_size
    seeds = tf.random.experimental.stateless_split(seed, 2 * k)
    frames = tf.map_fn(
        lambda args: augment.augment_frame(args[0], args[1], self.augment)[0],
        (selected['jpegs'], seeds), fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
    return {'frames': frames[:k], 'target_frames': frames[k:]}


# config.input keys of this sampler beyond samplers.SHARED_KEYS, with VINCE's values
# (configs/vince.py says where each comes from).
DEFAULTS = dict(num_frames=4, gap_seconds=5.0, frames_per_video=4, same_frame=False,
                augment='moco_v2', crop_area=(0.2, 1.0))
POSITIVE = ('num_frames', 'frames_per_video')   # Keys that must be >= 1.


def example_spec(options, config) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch, for a resolved `config.input`."""
  frames = ((options.frames_per_video, options.image_size, options.image_size, 3), np.uint8)
  return {'frames': frames, 'target_frames': frames}


def from_config(options, config, manifest, folder: str) -> VinceSampler:
  """The sampler of a resolved `config.input`."""
  return VinceSampler(num_frames=options.num_frames, gap_seconds=options.gap_seconds,
                      frames_per_video=options.frames_per_video, same_frame=options.same_frame,
                      augment=augment.from_config(options)[0])


SAMPLER = samplers.Sampler(defaults=DEFAULTS, positive=POSITIVE, example_spec=example_spec,
                           from_config=from_config)
