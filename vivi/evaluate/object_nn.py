"""The object nearest-neighbour diagnostic of Romijnders et al. (Table 2).

For boxes of held-out frames, the fraction whose nearest neighbour in representation space
(block-4 feature column at the box centre, L2-normalised, the box itself excluded) carries
the same detector class label. The object level is meant to raise it.

The held-out set is rendered from the synthetic world with a seed no training set uses:
frames at the probe's resolution with their detector annotations, filtered as training
filters them (score >= 0.05, top 5 per frame).
"""

from __future__ import annotations

import numpy as np

from vivi.evaluate import linear_probe
from vivi.input import synthetic
from vivi.models import box_features, video_model
from vivi.objectives import metric_learning

HELD_OUT_SEED_OFFSET = 10_007  # Keeps the held-out videos apart from any training seed.


def held_out_boxes(num_videos: int, frames_per_video: int, *, image_size: int, seed: int,
                   max_boxes: int = 5, min_score: float = 0.05) -> dict[str, np.ndarray]:
  """Frames uint8 [N, S, S, 3] with 'boxes' [N, B, 4], 'labels' [N, B], 'valid' [N, B]."""
  frames, boxes, labels, valid = [], [], [], []
  for i in range(num_videos):
    video = synthetic.render_video(i, seed=seed + HELD_OUT_SEED_OFFSET, image_size=image_size)
    step = max(1, len(video.frames) // frames_per_video)
    for f in range(0, len(video.frames), step)[:frames_per_video]:
      keep = np.nonzero(video.scores[f] >= min_score)[0]
      keep = keep[np.argsort(-video.scores[f][keep], kind='stable')][:max_boxes]
      b = np.zeros((max_boxes, 4), np.float32)
      l = np.zeros((max_boxes,), np.int32)
      b[:len(keep)], l[:len(keep)] = video.boxes[f][keep], video.labels[f][keep]
      frames.append(synthetic.decode_jpeg(video.frames[f]))
      boxes.append(b)
      labels.append(l)
      valid.append(np.arange(max_boxes) < len(keep))
  return {'frames': np.stack(frames), 'boxes': np.stack(boxes), 'labels': np.stack(labels),
          'valid': np.stack(valid)}


class ObjectNearestNeighbour:
  """Computes the diagnostic for a train state; the held-out set is rendered once."""

  def __init__(self, model, mesh, *, num_videos: int, frames_per_video: int, image_size: int,
               seed: int):
    self.data = held_out_boxes(num_videos, frames_per_video, image_size=image_size, seed=seed)
    self.mesh = mesh

    def encode(variables, inputs):
      grid = model.apply(variables, inputs['frames'],
                         method=video_model.VideoModel.encode)['block4']
      return box_features.gather(grid, inputs['boxes'])

    self.encode = linear_probe.jit_encoder(encode, mesh)

  def __call__(self, state) -> float:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    feats = linear_probe.extract_features(
        self.encode, variables, {'frames': self.data['frames'], 'boxes': self.data['boxes']},
        self.mesh)
    feats = feats.reshape(-1, feats.shape[-1])
    feats = feats / np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)
    return float(metric_learning.nearest_neighbour_agreement(
        feats, self.data['labels'].reshape(-1), self.data['valid'].reshape(-1)))
