"""Which videos a dataset keeps: the filters the seeds describe, each with its reason.

  static      VINCE/R2V2 (Gordon et al. section 3.1, step 2): drop "videos with static
              images ... a simple threshold over the percent of pixels which change between
              two frames" (music uploads over a still picture). Measured on grey thumbnails
              one second apart: a pixel changes if its value moves by more than
              `pixel_delta`; the score is the mean changed fraction over consecutive pairs.
  duration    VITO/VideoNet (Parthasarathy et al. section 3.2): drop videos under 10 s.
  curation    VideoNet: classify the first 100 frames with an ImageNet classifier and keep
              the video only if its query class is the top-1 prediction of some frame. The
              classifier is a plug-in (`Classifier`); `KerasClassifier` loads one from disk.

Each check returns None (keep) or a reason string 'category: details' for the manifest.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Protocol

import numpy as np


def changed_fraction(thumbnails: np.ndarray, pixel_delta: int = 10) -> float:
  """Mean fraction of pixels whose grey level changes by > `pixel_delta` between
  consecutive thumbnails (one second apart); nan for a video under two seconds."""
  if len(thumbnails) < 2:
    return float('nan')
  diff = np.abs(np.diff(np.asarray(thumbnails, np.int16), axis=0))
  return float(np.mean(diff > pixel_delta))


def check_static(thumbnails: np.ndarray, min_changed: float, pixel_delta: int = 10) -> str | None:
  if min_changed <= 0:
    return None
  fraction = changed_fraction(thumbnails, pixel_delta)
  if fraction < min_changed:  # nan compares False: too short to judge, kept.
    return (f'static: {100 * fraction:.2f}% of pixels change per second, below the '
            f'{100 * min_changed:.2f}% threshold')
  return None


def check_duration(duration: float, min_seconds: float) -> str | None:
  if duration < min_seconds:
    return f'too short: {duration:.2f} s < {min_seconds:g} s'
  return None


class Classifier(Protocol):
  """An image classifier for curation: `labels` names its classes."""
  labels: Sequence[str]

  def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
    """RGB uint8 images of any size -> top-1 class index per image [N]."""


def check_curation(frames: Sequence[np.ndarray], classifier: Classifier,
                   query: str) -> str | None:
  """VideoNet: keep if `query` (a class name, compared case-insensitively, or an index)
  is the top-1 class of at least one of `frames`."""
  if not frames:
    return 'curation: no frames to classify'
  top1 = [str(classifier.labels[int(i)]) for i in classifier(frames)]
  if query.strip().lower() in {name.lower() for name in top1} or query in map(str, top1):
    return None
  common = ', '.join(f'{name} x{n}' for name, n in collections.Counter(top1).most_common(3))
  return f'curation: query {query!r} is the top-1 of none of {len(frames)} frames ({common})'


class KerasClassifier:
  """A Keras image classifier on disk (`.keras`, `.h5` or SavedModel folder) plus a label
  file (one class name per line, in output order).

  `preprocess` is how the model wants its pixels: 'caffe' (BGR minus the ImageNet mean: the
  Keras ResNet50 of VideoNet's curation), 'tf' ([-1, 1]), 'torch' (ImageNet mean/std) or
  'none' (0-255 floats).
  """

  def __init__(self, model_path: str, labels_path: str, input_size: int = 224,
               preprocess: str = 'caffe', batch_size: int = 32):
    import tensorflow as tf
    if preprocess not in ('caffe', 'tf', 'torch', 'none'):
      raise ValueError(f'unknown preprocess {preprocess!r}: caffe | tf | torch | none')
    self.model = tf.keras.models.load_model(model_path, compile=False)
    with open(labels_path) as f:
      self.labels = [line.strip() for line in f if line.strip()]
    self.input_size, self.preprocess, self.batch_size = input_size, preprocess, batch_size

  def _pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
    import tensorflow as tf
    x = np.stack([tf.image.resize(i, [self.input_size] * 2).numpy() for i in images])
    if self.preprocess == 'caffe':
      return x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    if self.preprocess == 'tf':
      return x / 127.5 - 1
    if self.preprocess == 'torch':
      return (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return x

  def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
    out = []
    for start in range(0, len(images), self.batch_size):
      logits = self.model(self._pixels(images[start:start + self.batch_size]), training=False)
      out.append(np.argmax(np.asarray(logits), -1))
    if np.concatenate(out).max(initial=0) >= len(self.labels):
      raise ValueError(f'classifier outputs more classes than its {len(self.labels)} labels')
    return np.concatenate(out)
