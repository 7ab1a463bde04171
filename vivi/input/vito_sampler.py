"""VITO's marginal temporal sampling (Parthasarathy et al., section 3.1 eq. 1, Figure B.3).

Eq. 1: v^i ~ A_i(x_i), x_i ~ T({x_t}): "the distribution T samples frames uniformly from a
video clip of length T = 2.56s"; appendix B.2 samples "3 views using marginal sampling of
each frame from the video clip". Per video: a clip of `clip_seconds` at a uniformly random
position, then each of `num_views` views at an independent uniform time in the clip, read
as the stored frame nearest to that time. View i is augmented with
`augment[i % len(augment)]`, e.g. BYOL's asymmetric pair (`augment.byol(size, 0)`,
`augment.byol(size, 1)`), as eq. 1's A_1, A_2.

Temporal sampling schemes (`temporal`; VITO Figure B.3 compares them, marginal best):
  'marginal' (VITO's): each view at an independent uniform time in the clip, so the
    pairwise time differences have their mode at 0;
  'delta': fixed spacing, as Gordon et al. (VINCE) sample frames G apart: view i at
    i * T / (n - 1) after a uniform clip start (n = 1: the start), every pair of views
    exactly a multiple of T / (n - 1) apart;
  'uniform': the clip cut into n non-overlapping chunks of T / n, view i uniform within
    chunk i (Xu and Wang's sampling, as Figure B.3 describes it).
`view_offsets` maps n uniforms in [0, 1) to the views' offsets in units of the clip.

Our choice, not the paper's: the clip lies within one shot of the record, since a shot cut
is not a natural transformation of the scene. The clip's position is uniform over all
positions inside shots (a shot is picked with probability proportional to its room for the
clip). A video with no shot at least `clip_seconds` long (between the timestamps of its
first and last stored frame) gives ok=False; the pipeline counts and skips it.
`check_frame_rate` rejects datasets whose frame rate puts fewer than two frames in a clip.

Output per video: 'frames' uint8 [num_views, S, S, 3]. Same sampler protocol as
`vivi_sampler.ViviSampler`: `select` picks frames, `render` decodes only those.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vivi import errors
from vivi.input import augment, frame_times, samplers
from vivi.lazy_import import tensorflow as tf

_ROUNDING = 1e-3  # seconds: float32 timestamps that span exactly clip_seconds still qualify
TEMPORAL = ('marginal', 'delta', 'uniform')   # `VitoSampler.temporal`; module docstring.


def view_offsets(temporal: str, uniforms):
  """The views' times as fractions of the clip, [n] in [0, 1], from n uniforms in [0, 1)
  (a tf or NumPy vector; the result has its type): 'marginal' the uniforms themselves,
  'delta' i / (n - 1) whatever the uniforms, 'uniform' (i + u_i) / n."""
  n = uniforms.shape[0]
  index = tf.range(n, dtype=uniforms.dtype) if tf.is_tensor(uniforms) else np.arange(
      n, dtype=uniforms.dtype)
  if temporal == 'marginal':
    return uniforms
  if temporal == 'delta':
    return index / max(n - 1, 1)
  if temporal == 'uniform':
    return (index + uniforms) / n
  raise ValueError(f'input.temporal must be one of {TEMPORAL}, got {temporal!r}')


def check_frame_rate(fps: float, clip_seconds: float, where: str) -> None:
  """Raises ValueError naming `where` (the dataset) if a clip holds fewer than two frames."""
  if fps * clip_seconds < 2:
    raise errors.DatasetError(
        f'{where}: frames stored at {fps:g} fps put {fps * clip_seconds:.2f} frames in a '
        f'{clip_seconds:g} s clip, fewer than the 2 that VITO\'s temporal sampling needs; '
        f'store the frames at >= {2 / clip_seconds:.3g} fps or lengthen the clip')


@dataclasses.dataclass(frozen=True)
class VitoSampler:
  augment: tuple[augment.AugmentConfig, ...]   # view i uses augment[i % len(augment)]
  num_views: int = 3
  clip_seconds: float = 2.56
  temporal: str = 'marginal'

  def __post_init__(self):
    if isinstance(self.augment, augment.AugmentConfig):
      object.__setattr__(self, 'augment', (self.augment,))
    object.__setattr__(self, 'augment', tuple(self.augment))
    sizes = {a.image_size for a in self.augment}
    if len(sizes) != 1:
      raise ValueError(f'the views\' augmentations must share one image_size, got {sizes}')
    if self.temporal not in TEMPORAL:
      raise ValueError(f'input.temporal must be one of {TEMPORAL}, got {self.temporal!r}')
    if self.num_views < 1 or not self.clip_seconds > 0:
      raise ValueError(f'need num_views >= 1 and clip_seconds > 0, got {self.num_views} and '
                       f'{self.clip_seconds}')

  @property
  def parse_features(self):
    return frame_times.parse_features(['image/encoded', 'image/timestamp', 'shot/id'])

  def requirement(self, fps: float) -> str:
    """What a usable video has (`select`'s 'ok'), and how to make more videos usable."""
    del fps  # Frames are picked by time.
    return (f'one shot whose stored frames span at least input.clip_seconds='
            f'{self.clip_seconds:g} s; to use more videos, shorten the clip or prepare the '
            f'videos with fewer, longer shots (data/prepare_videos.py --shot_threshold)')

  def select(self, parsed: dict, seed: tf.Tensor) -> dict:
    first, last, start, end = frame_times.shot_times(parsed['image/timestamp'],
                                                     parsed['shot/id'])
    room = end - start - self.clip_seconds                         # [num_shots]
    usable = room >= -_ROUNDING
    ok = tf.reduce_any(usable)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    # A uniform clip position over the video's shots: each shot weighted by its room.
    weight = tf.where(usable, tf.maximum(room, 0.0) + _ROUNDING, 0.0)
    logits = tf.where(ok, tf.math.log(weight), tf.zeros_like(weight))
    shot = tf.cast(tf.random.stateless_categorical(logits[None], 1, seeds[0])[0, 0], tf.int32)
    clip_start = start[shot] + (tf.random.stateless_uniform([], seeds[1])
                                * tf.maximum(room[shot], 0.0))
    times = clip_start + self.clip_seconds * view_offsets(
        self.temporal, tf.random.stateless_uniform([self.num_views], seeds[2]))
    frames = tf.clip_by_value(frame_times.nearest_frame(parsed['image/timestamp'], times),
                              first[shot], last[shot])
    return {'ok': ok, 'jpegs': tf.gather(parsed['image/encoded'], frames)}

  def render(self, selected: dict, seed: tf.Tensor) -> dict:
    seeds = tf.random.experimental.stateless_split(seed, self.num_views)
    views = [augment.augment_frame(selected['jpegs'][i], seeds[i],
                                   self.augment[i % len(self.augment)])[0]
             for i in range(self.num_views)]
    return {'frames': tf.stack(views)}


# config.input keys of this sampler beyond samplers.SHARED_KEYS, with VITO's values
# (configs/vito.py says where each comes from).
DEFAULTS = dict(num_views=3, clip_seconds=2.56, temporal='marginal', augment='byol',
                crop_area=(0.4, 1.0))
POSITIVE = ('num_views',)   # Keys that must be >= 1.


def example_spec(options, config) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch, for a resolved `config.input`."""
  return {'frames': ((options.num_views, options.image_size, options.image_size, 3), np.uint8)}


def from_config(options, config, manifest, folder: str) -> VitoSampler:
  """The sampler of a resolved `config.input` for the dataset in `folder`."""
  check_frame_rate(manifest.fps, options.clip_seconds, folder)
  return VitoSampler(num_views=options.num_views, clip_seconds=options.clip_seconds,
                     temporal=options.temporal,
                     augment=augment.from_config(options, options.num_views))


SAMPLER = samplers.Sampler(defaults=DEFAULTS, positive=POSITIVE, example_spec=example_spec,
                           from_config=from_config)
