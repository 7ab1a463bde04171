"""Frame-to-video retrieval: do a frame's nearest neighbours come from its own video?

A diagnostic of what the VIVI objectives (Tschannen et al. 2020, "Self-supervised learning
of video-induced visual invariances") ask of the representation: frames of one video, which
share a scene and objects, should lie close together. For each query frame, the other
frames are ranked by cosine similarity (the query itself excluded) and recall@k is the
fraction of queries with a frame of the same video among the top k. Chance recall@1 is
about (n - 1) / (N - 1) for videos of n frames out of N.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vivi.evaluate import knn


def frame_to_video_recall(features: np.ndarray, video_ids: np.ndarray,
                          ks: Sequence[int] = (1, 5), batch_size: int = 1024
                          ) -> dict[str, float]:
  """{'recall@k': fraction} for each k in `ks`, over frames features [N, D], ids [N].

  A frame that is alone in its video could never be retrieved by anything; it still serves
  as a distractor for the other queries but is not a query itself (so one-frame videos do
  not pull recall down whatever the representation). Queries are processed `batch_size` at
  a time, so memory is O(batch_size * N). Recall is NaN when there is no query.
  """
  x = knn.l2_normalize(features)
  ids = np.asarray(video_ids).reshape(-1)
  if len(x) != len(ids):
    raise ValueError(f'{len(x)} feature rows for {len(ids)} video ids')
  if not ks or min(ks) < 1:
    raise ValueError(f'need ks >= 1, got {ks}')
  _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
  queries = np.nonzero(counts[inverse] > 1)[0]
  kmax = min(max(ks), len(x) - 1)
  hits = {k: 0 for k in ks}
  for start in range(0, len(queries), batch_size):
    q = queries[start:start + batch_size]
    sims = x[q] @ x.T  # [B, N]
    sims[np.arange(len(q)), q] = -np.inf  # The query is not its own neighbour.
    # The kmax best, then sorted: recall@k for every k needs them in rank order.
    top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind='stable')
    same = ids[np.take_along_axis(top, order, axis=1)] == ids[q][:, None]  # [B, kmax]
    for k in ks:
      hits[k] += int(np.any(same[:, :k], axis=1).sum())
  n = len(queries)
  return {f'recall@{k}': hits[k] / n if n else float('nan') for k in ks}


def recall_at_1(features: np.ndarray, video_ids: np.ndarray) -> float:
  """Fraction of frames whose nearest other frame (cosine) belongs to the same video."""
  return frame_to_video_recall(features, video_ids, ks=(1,))['recall@1']


def held_out_frames(num_videos: int, frames_per_video: int, *, image_size: int, seed: int,
                    return_truth: bool = False):
  """Frames uint8 [N * F, S, S, 3] spread evenly over held-out synthetic videos (so across
  their shots: a new camera, lighting and cast subset each), their video index and label
  (`robustness.frame_label`: the class covering most of the frame, -1 if none); with
  `return_truth` also each frame's truth (`synthetic.render_video_with_truth`: boxes,
  classes, instance masks, ...).

  Spread over shots, finding a frame's own video takes what the video-level objectives
  learn; frames of one shot would be found by near-duplicate matching alone.
  """
  from vivi.evaluate import robustness
  from vivi.input import synthetic
  frames, videos, labels, truths = [], [], [], []
  for i in range(num_videos):
    video, truth = synthetic.render_video_with_truth(
        i, seed=seed + robustness.HELD_OUT_SEED_OFFSET, image_size=image_size)
    picks = np.linspace(0, len(video.frames) - 1, frames_per_video).round().astype(int)
    frames += [synthetic.decode_jpeg(video.frames[f]) for f in picks]
    labels += [robustness.frame_label(truth[f]) for f in picks]
    truths += [truth[f] for f in picks]
    videos += [i] * len(picks)
  out = np.stack(frames), np.asarray(videos), np.asarray(labels)
  return out + (truths,) if return_truth else out
