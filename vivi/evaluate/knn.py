"""Weighted k-nearest-neighbour classification on frozen features.

The protocol of Wu et al. 2018 ("Unsupervised feature learning via non-parametric instance
discrimination", Sec. 3.4), used by DINO (Caron et al. 2021) as its k-NN evaluation:
features are L2-normalised, each test example takes the k training examples of highest
cosine similarity s, each of them votes for its class with weight exp(s / T), and the class
with the largest summed weight is predicted. Unlike the linear probe there is nothing to fit
and no hyperparameter tuned on the test set (k=20, T=0.07 are the published defaults).
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
  """Rows of x as float32 unit vectors (the evaluators' one L2 normalisation)."""
  x = np.asarray(x, np.float32)
  # The floor keeps an all-zero feature (e.g. a dead ReLU column) finite instead of NaN.
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                num_classes: int, k: int = 20, temperature: float = 0.07,
                batch_size: int = 1024) -> np.ndarray:
  """Predicted class [M] for each of the M rows of `test_x` (see the module docstring).

  train_x [N, D], train_y [N] ints in [0, num_classes), test_x [M, D]. k is clamped to N.
  Test rows are processed `batch_size` at a time, so memory is O(batch_size * N) whatever M.
  Ties between classes go to the smallest class id (np.argmax).
  """
  train_y = np.asarray(train_y).reshape(-1)
  if len(train_x) == 0 or len(train_x) != len(train_y):
    raise ValueError(f'need matching, non-empty training features and labels, got '
                     f'{len(train_x)} and {len(train_y)}')
  if train_y.min() < 0 or train_y.max() >= num_classes:
    raise ValueError(f'training labels must lie in [0, {num_classes}), got '
                     f'[{train_y.min()}, {train_y.max()}]')
  if k < 1 or temperature <= 0 or batch_size < 1:
    raise ValueError(f'need k >= 1, temperature > 0, batch_size >= 1; got {k}, '
                     f'{temperature}, {batch_size}')
  train, test = l2_normalize(train_x), l2_normalize(test_x)
  k = min(k, len(train))
  out = np.empty((len(test),), np.int64)
  for start in range(0, len(test), batch_size):
    sims = test[start:start + batch_size] @ train.T  # [B, N]
    if k < len(train):
      # argpartition finds the k largest in O(N); their order does not matter for a sum.
      top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
      top = np.broadcast_to(np.arange(len(train)), sims.shape)
    s = np.take_along_axis(sims, top, axis=1).astype(np.float64)
    # exp((s - max s) / T) is exp(s / T) times a constant per row, so the argmax is the
    # same, but it neither overflows nor underflows to all-zero votes at a tiny T.
    w = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    # One bincount over (row, class) cells sums every row's votes at once.
    cells = np.arange(len(s))[:, None] * num_classes + train_y[top]
    votes = np.bincount(cells.ravel(), w.ravel(), len(s) * num_classes)
    votes = votes.reshape(len(s), num_classes)
    out[start:start + len(s)] = np.argmax(votes, axis=1)
  return out


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, num_classes: int, k: int = 20, temperature: float = 0.07,
                 batch_size: int = 1024) -> float:
  """Fraction of test rows whose `knn_predict` class equals `test_y`."""
  pred = knn_predict(train_x, train_y, test_x, num_classes, k=k, temperature=temperature,
                     batch_size=batch_size)
  return float(np.mean(pred == np.asarray(test_y).reshape(-1)))
