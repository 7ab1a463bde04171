"""Time-based frame lookup shared by the samplers that pick frames by time, not by index.

VINCE's R2V2 sampling (Gordon et al., section 3.1 step 3) takes frames G seconds apart and
VITO's marginal sampling (Parthasarathy et al., section 3.1 eq. 1) takes frames at uniform
times in a 2.56 s clip. Records store frames at any rate (`video/fps`) with a timestamp each
(`records.py`), so both samplers draw times and read the stored frame nearest to each.

Everything here is graph-only TF (no Python control flow on tensors): the pipeline runs
samplers without AutoGraph.
"""

from __future__ import annotations

from collections.abc import Sequence

from vivi.input import records
from vivi.lazy_import import tensorflow as tf


def parse_features(sequence_keys: Sequence[str]):
  """The record's context features and only the named per-frame features (the boxes of a
  record are not parsed by a sampler that does not use them)."""
  context, sequence = records.parse_features()
  return context, {k: sequence[k] for k in sequence_keys}


def nearest_frame(timestamps: tf.Tensor, times: tf.Tensor) -> tf.Tensor:
  """Index of the stored frame nearest to each query time.

  Args:
    timestamps: [T] float, sorted (non-decreasing), T >= 1 (the schema's guarantee).
    times: [...] float query times in seconds.

  Returns:
    int32 [...] indices into the frames; a tie goes to the earlier frame (as `np.argmin`
    of the absolute differences does).
  """
  timestamps = tf.cast(timestamps, tf.float32)
  times = tf.cast(times, tf.float32)
  flat = tf.reshape(times, [-1])
  last = tf.size(timestamps) - 1
  after = tf.searchsorted(timestamps, flat, side='left', out_type=tf.int32)  # first >= t
  later = tf.minimum(after, last)
  earlier = tf.maximum(after - 1, 0)
  d_later = tf.abs(tf.gather(timestamps, later) - flat)
  d_earlier = tf.abs(tf.gather(timestamps, earlier) - flat)
  nearest = tf.where(d_later < d_earlier, later, earlier)
  # Repeated timestamps: the first frame stored at the chosen time.
  nearest = tf.searchsorted(timestamps, tf.gather(timestamps, nearest), side='left',
                            out_type=tf.int32)
  return tf.reshape(nearest, tf.shape(times))


def shot_frames(shot_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(first, last) frame index [num_shots] int32 of each shot; shot ids are non-decreasing."""
  _, _, lengths = tf.unique_with_counts(shot_ids)
  lengths = tf.cast(lengths, tf.int32)
  first = tf.cumsum(lengths, exclusive=True)
  return first, first + lengths - 1


def shot_times(timestamps: tf.Tensor, shot_ids: tf.Tensor
               ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
  """(first frame, last frame, start time, end time) of each shot, [num_shots] each.

  A shot's start and end are the timestamps of its first and last stored frame, so a time
  in [start, end] has its nearest stored frame inside the shot (up to ties).
  """
  first, last = shot_frames(shot_ids)
  timestamps = tf.cast(timestamps, tf.float32)
  return first, last, tf.gather(timestamps, first), tf.gather(timestamps, last)
