"""Decoding a video file into the frames a dataset stores, plus what shot detection needs.

One pass over the file with PyAV (FFmpeg's decoders, from the PyPI wheel: no system
ffmpeg), so any container and codec FFmpeg reads works. Three products come out of it:

  stored frames   one frame per target time `start + k / fps` (the frame on screen at that
                  time), resized so the short side is at most `max_short_side`, RGB uint8;
  analysis        for every frame at up to `analysis_fps`: a colour histogram (shot
                  boundaries, `shots.py`) and, once a second, a small grey thumbnail (the
                  static-video filter, `filters.py`);
  first frames    the first `num_first_frames` decoded frames (VideoNet's curation
                  classifies the first 100 frames of a video, VITO section 3.2).

A frame is "on screen at t" if it is the last frame whose presentation time is <= t, so a
requested rate above the native one never stores a frame twice.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Joint RGB colour histograms with this many levels per channel (8 x 8 x 8 = 512 bins), on
# a thumbnail this many pixels wide.
HISTOGRAM_LEVELS = 8
_ANALYSIS_SIDE = 64
_EPS = 1e-6  # Seconds: container timestamps are rationals, our targets floats.


class DecodeError(RuntimeError):
  """The file cannot be decoded (unreadable, not a video, truncated)."""


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Which frames of a video are stored."""
  fps: float = 1.0                 # Target rate of stored frames.
  start: float = 0.0               # Offset of the first target time, seconds.
  max_frames: int = 0              # Stop after this many stored frames (0: no limit).
  max_short_side: int = 256        # Resize so that min(height, width) <= this (0: keep).
  analysis_fps: float = 10.0       # Rate of the histograms for shot detection.
  num_first_frames: int = 0        # Keep the first N decoded frames (curation).


@dataclasses.dataclass
class Decoded:
  frames: list[np.ndarray]         # stored frames, RGB uint8 [h, w, 3]
  timestamps: np.ndarray           # [T] seconds (presentation time of each stored frame)
  histograms: np.ndarray           # [A, HISTOGRAM_LEVELS ** 3], each sums to 1
  histogram_times: np.ndarray      # [A] seconds
  thumbnails: np.ndarray           # [S, h, w] uint8 grey, about one per second
  first_frames: list[np.ndarray]   # the first `num_first_frames` decoded frames, resized
  duration: float                  # end of the last decoded frame, seconds
  complete: bool                   # decoded to the end (False: stopped at max_frames)
  native_fps: float
  size: tuple[int, int]            # (height, width) of the decoded stream


def probe_duration(path: str) -> float:
  """Duration (seconds) the container declares, without decoding; raises DecodeError."""
  import av
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise DecodeError('no video stream')
      stream = container.streams.video[0]
      if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
      return (container.duration or 0) / 1e6
  except av.FFmpegError as e:
    raise DecodeError(f'{type(e).__name__}: {e}') from e


def _resized(height: int, width: int, max_short_side: int) -> tuple[int, int]:
  scale = min(1.0, max_short_side / min(height, width)) if max_short_side else 1.0
  # Even sizes keep FFmpeg's chroma subsampling exact; at least 2 px.
  even = lambda x: max(2, int(round(x * scale / 2)) * 2)
  return even(height), even(width)


def _histogram(rgb: np.ndarray) -> np.ndarray:
  """Joint RGB histogram normalised to sum 1: [HISTOGRAM_LEVELS ** 3]."""
  q = (rgb.reshape(-1, 3).astype(np.int32) * HISTOGRAM_LEVELS) >> 8
  index = (q[:, 0] * HISTOGRAM_LEVELS + q[:, 1]) * HISTOGRAM_LEVELS + q[:, 2]
  return (np.bincount(index, minlength=HISTOGRAM_LEVELS ** 3) / len(q)).astype(np.float32)


def decode(path: str, sampling: Sampling) -> Decoded:
  """Decodes `path` once; raises DecodeError naming what is wrong."""
  import av
  if sampling.fps <= 0:
    raise ValueError(f'sampling.fps must be positive, got {sampling.fps}')
  frames, times, hists, hist_times, thumbs, first = [], [], [], [], [], []
  # Target times on integer grids (no accumulated rounding); a frame at t "reaches" a
  # target within _EPS of it.
  target = lambda k: sampling.start + k / sampling.fps - _EPS
  k_target, k_analysis, k_thumb = 0, 0, 0
  previous = None  # (frame, time) of the last decoded frame: on screen until the next one.
  last_time, frame_period = None, None
  complete = True
  limit = sampling.max_frames or math.inf

  def rgb(frame):
    h, w = _resized(frame.height, frame.width, sampling.max_short_side)
    return frame.to_ndarray(format='rgb24', width=w, height=h, interpolation='AREA')

  def store(frame, t):
    frames.append(rgb(frame))
    times.append(t)

  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise DecodeError('no video stream')
      stream = container.streams.video[0]
      stream.thread_type = 'AUTO'
      native_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
      size = (stream.codec_context.height, stream.codec_context.width)
      for frame in container.decode(stream):
        if frame.time is None:
          continue
        t = float(frame.time)
        if last_time is not None and t <= last_time:
          continue  # Duplicate or out-of-order timestamp: keep the first.
        if last_time is not None:
          frame_period = t - last_time
        last_time = t
        if len(first) < sampling.num_first_frames:
          first.append(rgb(frame))
        # Stored frames: every target time in [previous time, t) shows the previous frame.
        while previous is not None and target(k_target) < t - 2 * _EPS and len(frames) < limit:
          if times[-1:] != [previous[1]]:  # Not stored for the previous target already.
            store(*previous)
          k_target += 1
        if t >= k_analysis / sampling.analysis_fps - _EPS:
          small = frame.to_ndarray(format='rgb24', width=_ANALYSIS_SIDE,
                                   height=_ANALYSIS_SIDE, interpolation='AREA')
          hists.append(_histogram(small))
          hist_times.append(t)
          k_analysis = math.floor(t * sampling.analysis_fps + _EPS) + 1
          if t >= k_thumb - _EPS:
            thumbs.append(small.mean(-1).astype(np.uint8))
            k_thumb = math.floor(t + _EPS) + 1
        previous = (frame, t)
        if len(frames) >= limit and len(first) >= sampling.num_first_frames:
          complete = False
          break
  except av.FFmpegError as e:
    raise DecodeError(f'{type(e).__name__}: {e}') from e
  if previous is None:
    raise DecodeError('no decodable video frames')
  end = previous[1] + (frame_period or (1.0 / native_fps if native_fps else 0.0))
  if target(k_target) < end - 2 * _EPS and len(frames) < limit and times[-1:] != [previous[1]]:
    store(*previous)  # The last frame is on screen until the end of the video.
  if not frames:
    raise DecodeError(f'no frame at or after the start time {sampling.start:.2f} s '
                      f'(video ends at {end:.2f} s)')
  return Decoded(frames=frames, timestamps=np.asarray(times, np.float64),
                 histograms=np.stack(hists), histogram_times=np.asarray(hist_times),
                 thumbnails=np.stack(thumbs), first_frames=first, duration=end, complete=complete,
                 native_fps=native_fps, size=size)
