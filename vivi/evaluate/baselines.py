"""Reference features that need no learning, for the rows a learned encoder must beat.

`color_histogram`: the joint RGB histogram of an image (4 bins per channel, 64 bins),
normalised to sum to 1. It carries colour and no shape at all, so a method whose probe is
not above the histogram's has not shown that it learned more than colour (on the synthetic
world colour alone finds a frame of the same shot far above chance, so it solves much of
the pretext tasks there).
"""

from __future__ import annotations

import numpy as np

BINS_PER_CHANNEL = 4


def color_histogram(images: np.ndarray, bins_per_channel: int = BINS_PER_CHANNEL
                    ) -> np.ndarray:
  """uint8 images [N, H, W, 3] -> float32 [N, bins**3] joint RGB histograms summing to 1.

  Bin of a pixel: (r * bins // 256) * bins**2 + (g * bins // 256) * bins + b * bins // 256.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'want uint8 images [N, H, W, 3], got {images.dtype} {images.shape}')
  q = (images.astype(np.int32) * bins_per_channel) // 256                # [N, H, W, 3]
  index = (q[..., 0] * bins_per_channel + q[..., 1]) * bins_per_channel + q[..., 2]
  n, k = len(images), bins_per_channel ** 3
  flat = index.reshape(n, -1) + k * np.arange(n)[:, None]
  counts = np.bincount(flat.ravel(), minlength=n * k).reshape(n, k)
  return (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)


class ColourHistogram:
  """The histogram as an encoder for the evaluation suite (`suite.Suite`): every feature it
  is asked for is `color_histogram`, so any probe gives the no-learning, no-shape row."""
  module = None
  variables: dict = {}
  info = {'source': 'colour histogram (no learning, no shape)', 'step': 0}
