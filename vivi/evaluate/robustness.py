"""Robustness to natural temporal perturbations: the pm-k metric of ImageNet-Vid-Robust.

Shankar et al. 2019, "Do image classifiers generalize across time?" (arXiv:1906.02168):
an anchor frame counts as correct under pm-k only if the classifier is right on every frame
within k frames of it, so the gap between anchor accuracy and pm-k accuracy (the accuracy
drop) measures how much predictions flicker between near-identical frames. Representations
learned from video (VIVI) are meant to shrink that drop.

`synthetic_sequences` renders such sequences from the synthetic world (`input/synthetic.py`)
with a seed no training set uses, labelled with its ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vivi.input import synthetic

# Held-out videos come from seed + this offset, as object_nn.py does with its own offset: no
# training set (seed s) nor the object-NN set (s + 10_007) draws from the same streams.
HELD_OUT_SEED_OFFSET = 20_011
NO_LABEL = -1  # A frame without a visible object: no class to be right or wrong about.


def pm_k(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray], k: int,
         anchors: Sequence[np.ndarray] | None = None) -> dict:
  """Anchor and pm-k accuracy over sequences of frames.

  predictions: per sequence, class ids [T] (or scores [T, C], reduced by argmax).
  labels: per sequence, one label for all frames (a scalar, as in ImageNet-Vid-Robust) or
    one per frame [T]. A label of -1 (`NO_LABEL`) marks a frame that constrains nothing: it
    is never an anchor and, inside another anchor's window, never counts as an error.
  k: the window half-width in frames; the window [a - k, a + k] is clipped to the sequence.
  anchors: per sequence, frame indices (or a boolean mask [T]); default every frame.
  Returns 'anchor_accuracy', 'pm_k_accuracy', 'drop' (their difference, >= 0) and
  'num_anchors'; the accuracies are NaN when there is no anchor.
  """
  if k < 0:
    raise ValueError(f'k must be >= 0, got {k}')
  if len(predictions) != len(labels) or (anchors is not None and len(anchors) != len(labels)):
    raise ValueError('predictions, labels (and anchors) need one entry per sequence')
  anchor_ok, window_ok = [], []
  for i, (pred, label) in enumerate(zip(predictions, labels)):
    pred = np.asarray(pred)
    if pred.ndim == 2:
      pred = np.argmax(pred, axis=-1)
    label = np.broadcast_to(np.asarray(label), pred.shape)
    t = len(pred)
    if anchors is None:
      idx = np.arange(t)
    else:
      idx = np.asarray(anchors[i])
      idx = np.nonzero(idx)[0] if idx.dtype == bool else idx.astype(np.int64)
      if len(idx) and (idx.min() < 0 or idx.max() >= t):
        raise ValueError(f'sequence {i}: anchor outside [0, {t}): {idx.tolist()}')
    idx = idx[label[idx] != NO_LABEL]
    correct = pred == label
    # A cumulative count of errors answers "any error in [lo, hi]" for every anchor at once.
    errors = np.concatenate([[0], np.cumsum(~correct & (label != NO_LABEL))])
    lo, hi = np.maximum(idx - k, 0), np.minimum(idx + k + 1, t)
    anchor_ok.append(correct[idx])
    window_ok.append(errors[hi] - errors[lo] == 0)
  anchor_ok = np.concatenate(anchor_ok) if anchor_ok else np.zeros((0,), bool)
  window_ok = np.concatenate(window_ok) if window_ok else np.zeros((0,), bool)
  n = len(anchor_ok)
  anchor_acc = float(anchor_ok.mean()) if n else float('nan')
  pm_acc = float(window_ok.mean()) if n else float('nan')
  return {'anchor_accuracy': anchor_acc, 'pm_k_accuracy': pm_acc,
          'drop': anchor_acc - pm_acc, 'num_anchors': n}


def frame_label(truth: dict) -> int:
  """The class of the object covering the most pixels of a frame, or -1 if none is seen.

  Each covered pixel is credited to the front-most object whose box holds it (truth lists
  objects front to back) and an object's area is the coverage so credited (the rule from
  before the truth had instance masks, kept so that labels and results stay comparable).
  Unlike raw box area this does not favour sparse shapes (a ring's or a star's box is
  mostly background); its only error is a deeper object's pixels inside a box corner. Ties
  go to the front-most object.
  """
  coverage = truth['coverage']
  size = coverage.shape[0]
  free = np.ones(coverage.shape, bool)
  best, best_area = NO_LABEL, 0.0
  # Truth boxes lie on pixel edges (the extent of pixels more than half covered).
  for cls, box in zip(truth['classes'], np.round(truth['boxes'] * size).astype(int)):
    inside = np.zeros_like(free)
    inside[box[0]:box[2], box[1]:box[3]] = True
    area = float(coverage[inside & free].sum())
    free &= ~inside
    if area > best_area:
      best, best_area = int(cls), area
  return best


def synthetic_sequences(num_videos: int, frames_per_video: int, *, image_size: int, seed: int,
                        fps: float = 4.0, return_info: bool = False):
  """Held-out sequences of consecutive frames, each from one shot of one synthetic video.

  Returns frames uint8 [N, T, S, S, 3] and labels int64 [N, T] (per frame, `frame_label`;
  -1 where nothing is visible), plus with `return_info` a dict of 'video_index',
  'shot_id' [N] and 'timestamps' [N, T] (seconds) saying where each sequence comes from.

  Video i of the held-out world (seed + HELD_OUT_SEED_OFFSET) gives its first shot with at
  least T frames, from that shot's first frame: within a shot the camera, lighting and
  cast are fixed and everything moves smoothly, so neighbours differ only by small natural
  motion, the perturbation pm-k is about; a cut would be a different image. Shots last at
  least 4 s, so with T <= 4 * fps every video qualifies; otherwise videos without a long
  enough shot are skipped. The default 4 fps makes neighbours 0.25 s apart.
  """
  if num_videos < 1 or frames_per_video < 1:
    raise ValueError(f'need num_videos >= 1 and frames_per_video >= 1, got {num_videos}, '
                     f'{frames_per_video}')
  frames, labels = [], []
  info = {'video_index': [], 'shot_id': [], 'timestamps': []}
  max_tries = 10 * num_videos + 20  # Shots last at most 14 s: a hopeless T must not spin.
  index = 0
  while len(frames) < num_videos:
    if index >= max_tries:
      raise ValueError(f'only {len(frames)} of {max_tries} videos have a shot of '
                       f'{frames_per_video} frames at {fps} fps; ask for fewer frames')
    video, truth = synthetic.render_video_with_truth(
        index, seed=seed + HELD_OUT_SEED_OFFSET, image_size=image_size, fps=fps)
    shots, starts, lengths = np.unique(video.shot_ids, return_index=True, return_counts=True)
    long_enough = np.nonzero(lengths >= frames_per_video)[0]
    if len(long_enough):
      shot = long_enough[0]
      span = range(starts[shot], starts[shot] + frames_per_video)
      frames.append(np.stack([synthetic.decode_jpeg(video.frames[f]) for f in span]))
      labels.append(np.array([frame_label(truth[f]) for f in span], np.int64))
      info['video_index'].append(index)
      info['shot_id'].append(int(shots[shot]))
      info['timestamps'].append(video.timestamps[list(span)])
    index += 1
  out = np.stack(frames), np.stack(labels)
  if return_info:
    return out + ({key: np.asarray(v) for key, v in info.items()},)
  return out
