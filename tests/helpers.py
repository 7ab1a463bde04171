"""What several test files build: the repository root, JPEG frames, hand-made videos, labelled
clusters and resolved objective configs (one definition each)."""

from __future__ import annotations

import io
import os

import ml_collections
import numpy as np
from PIL import Image

from vivi import objectives
from vivi.input import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jpeg(image: np.ndarray, **save_options) -> bytes:
  """uint8 [H, W, 3] -> JPEG bytes (quality 95 unless `save_options` say otherwise)."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='JPEG', **{'quality': 95, **save_options})
  return buf.getvalue()


def coded_jpeg(frame_index: int, shot: int, size: int) -> bytes:
  """A solid frame whose colour encodes its index (red, mod 32) and shot (green), 8 levels
  apart, so tests can read back which frames a sampler took (`decode_coded`)."""
  image = np.zeros((size, size, 3), np.uint8)
  image[..., 0] = 8 * (frame_index % 32)
  image[..., 1] = 8 * shot
  return jpeg(image)


def decode_coded(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(frame index mod 32, shot) of each `coded_jpeg` frame [..., H, W, 3]."""
  mean = frames.astype(np.float32).mean(axis=(-3, -2))
  return np.round(mean[..., 0] / 8).astype(int), np.round(mean[..., 1] / 8).astype(int)


def video(name: str, frames: list[bytes], shot_ids=None, fps: float = 1.0) -> records.Video:
  """A `records.Video` of JPEG `frames` without boxes (one shot unless `shot_ids`)."""
  t = len(frames)
  shot_ids = np.zeros(t, np.int64) if shot_ids is None else np.asarray(shot_ids)
  return records.Video(
      video_id=name, fps=fps, frames=list(frames),
      timestamps=np.arange(t, dtype=np.float32) / fps, shot_ids=shot_ids,
      boxes=[np.zeros((0, 4), np.float32)] * t, labels=[np.zeros(0, np.int64)] * t,
      scores=[np.zeros(0, np.float32)] * t)


def coded_video(name: str, shot_lengths, size: int, fps: float = 1.0) -> records.Video:
  """A video of `coded_jpeg` frames with shots of the given lengths."""
  shot_ids = np.repeat(np.arange(len(shot_lengths)), shot_lengths)
  return video(name, [coded_jpeg(i, s, size) for i, s in enumerate(shot_ids)], shot_ids, fps)


def clusters(rng: np.random.Generator, num_classes: int, per_class: int, dim: int = 16,
             spread: float = 0.05, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian clusters, shuffled: float32 features [C * n, dim] and their labels."""
  centres = scale * rng.normal(size=(num_classes, dim))
  y = rng.permutation(np.repeat(np.arange(num_classes), per_class))
  return (centres[y] + spread * rng.normal(size=(len(y), dim))).astype(np.float32), y


def objective_cfg(name: str, **overrides) -> ml_collections.ConfigDict:
  """One objective's resolved config (its DEFAULTS with `overrides`)."""
  return objectives.resolve(ml_collections.ConfigDict({name: overrides}))[name]
