"""Object discovery: k-means segments of an encoder's feature map against true object masks.

The evaluation of Hénaff et al., "Object discovery and representation networks" (Odin),
ECCV 2022, section 4 (its talk: "Evaluate on COCO, cluster features using k-means, report
best overlap"), on held-out frames of the synthetic world:

  1. the encoder's spatial feature map of each frame (`feature`, by default block 4, the map
     the other evaluators pool; optionally upsampled bilinearly by `upsample` first);
  2. each frame's feature columns clustered on their own into K segments by the on-device
     cosine k-means (`kmeans.segment_feature_map`: farthest-point seeding, fixed Lloyd
     iterations);
  3. the cluster map upsampled to the image by nearest neighbour: each feature cell covers
     its stride x stride block of pixels;
  4. each ground-truth object (its instance mask: `synthetic.render_video_with_truth`,
     every object with a pixel more than half covered, after occlusion) matched with the
     cluster of best IoU.

Odin's metrics over object instances: ABO^i, the average best overlap (mean best IoU), and
OR, object recovery (the fraction of objects whose best IoU exceeds 0.5).

K (`num_clusters`) is `synthetic.MAX_CAST + 1` = 5: a frame shows at most MAX_CAST objects,
so K segments let each object have its own cluster and the background one more. Fewer
would force objects to share a cluster whatever the encoder; more would raise the best
overlaps of any encoder, since smaller clusters fit small objects better by chance.

The reference that needs no encoder: a fixed grid of K blocks (`grid_segments`), what
clustering positions alone would give. An encoder that discovers objects beats it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from vivi.evaluate import linear_probe
from vivi.input import synthetic
from vivi.models import kmeans, video_model

FEATURES = ('block1', 'block2', 'block3', 'block4')
# The evaluator's settings (config.evaluators.object_discovery): the configs spell them all
# out (configs/common.py OBJECT_DISCOVERY, with why block 4); these fill in what a hand-made
# config leaves out.
DEFAULTS = dict(
    num_videos=60, frames_per_video=4,        # held-out frames across shots (retrieval.py)
    num_clusters=synthetic.MAX_CAST + 1,      # see the module docstring
    # Lloyd iterations: on the tiny encoder's 4x4 maps the clusters settle well before.
    num_iterations=10,
    feature='block4', upsample=1)


def check(cfg) -> None:
  """Raises ValueError naming what is wrong with object_discovery's settings (its keys are
  checked against DEFAULTS by the evaluator registry, vivi/evaluate/evaluators.py)."""
  settings = {**DEFAULTS, **cfg}
  if settings['feature'] not in FEATURES:
    raise ValueError(f'feature={settings["feature"]!r}; valid: {FEATURES}')
  for key in ('num_clusters', 'num_iterations', 'upsample'):
    if not (isinstance(settings[key], int) and settings[key] >= 1):
      raise ValueError(f'{key}={settings[key]!r}: want an integer >= 1')


def segmenter(encoder, mesh, *, feature: str, upsample: int, num_clusters: int,
              num_iterations: int) -> Callable:
  """A `linear_probe.jit_encoder` function: (variables, uint8 frames [B, S, S, 3]) ->
  cluster ids int32 [B, h, w] of the frames' `feature` maps (h, w: the map's size times
  `upsample`), encoder and k-means in one compiled program on the mesh."""

  def segment(variables, frames):
    fmap = encoder.apply(variables, video_model.normalize_images(frames), train=False)[feature]
    if upsample > 1:
      b, h, w, c = fmap.shape
      fmap = jax.image.resize(fmap, (b, h * upsample, w * upsample, c), 'bilinear')
    return kmeans.segment_feature_map(fmap, num_clusters, num_iterations)

  return linear_probe.jit_encoder(segment, mesh)


def upsample_nearest(segments: np.ndarray, size: int) -> np.ndarray:
  """Cluster maps [N, h, w] -> [N, size, size]: pixel (y, x) takes cell (y h // size,
  x w // size), so each cell covers its block of pixels (size / h on a side)."""
  _, h, w = segments.shape
  rows, cols = np.arange(size) * h // size, np.arange(size) * w // size
  return segments[:, rows[:, None], cols[None, :]]


def grid_segments(size: int, num_clusters: int) -> np.ndarray:
  """A segmentation that ignores the image: K near-square blocks, int32 [size, size].
  round(sqrt(K)) bands of rows; band i holds K // bands (+1 for the first K % bands) blocks
  of equal width."""
  bands = max(1, round(num_clusters ** 0.5))
  out = np.zeros((size, size), np.int32)
  first = 0
  for i, lo in enumerate(np.arange(bands) * size // bands):
    hi = (i + 1) * size // bands
    n = num_clusters // bands + (i < num_clusters % bands)
    out[lo:hi] = first + np.arange(size) * n // size
    first += n
  return out


def best_overlaps(segments: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """Each object's best IoU with any segment: segments int [H, W], masks bool [m, H, W] ->
  float [m]. IoU = |mask & segment| / |mask | segment|."""
  masks = masks.reshape(len(masks), segments.size).astype(np.float64)
  ids = segments.reshape(-1)
  one_hot = np.zeros((len(ids), int(ids.max()) + 1))
  one_hot[np.arange(len(ids)), ids] = 1.0
  inter = masks @ one_hot                                                 # [m, K]
  union = masks.sum(1)[:, None] + one_hot.sum(0)[None, :] - inter
  return (inter / np.maximum(union, 1.0)).max(axis=1, initial=0.0)


def scores(segments: np.ndarray, masks: list[np.ndarray]) -> tuple[dict[str, float], int]:
  """({'abo', 'object_recovery'}, number of objects) of segmentations [N, H, W] against each
  frame's masks [m_i, H, W]; a frame without objects adds nothing. NaN without objects."""
  best = np.concatenate([np.zeros(0)] + [best_overlaps(s, m) for s, m in zip(segments, masks)])
  if not len(best):
    return {'abo': float('nan'), 'object_recovery': float('nan')}, 0
  return {'abo': float(best.mean()), 'object_recovery': float(np.mean(best > 0.5))}, len(best)


def picture(frames, masks: list[np.ndarray], segments, settings: dict, out_png: str,
            num_rows: int = 6) -> np.ndarray | None:
  """`pictures.segmentation_figure` of `num_rows` frames with objects, spread evenly over
  the held-out set: image | true masks | clusters, each titled with its best IoUs (None
  when no frame has an object)."""
  from vivi.evaluate import pictures  # Lazy: matplotlib only when a picture is drawn.
  rows = np.flatnonzero([len(m) > 0 for m in masks])
  if not len(rows):
    return None
  if len(rows) > num_rows:
    rows = rows[np.linspace(0, len(rows) - 1, num_rows).round().astype(int)]
  upsampled = f' upsampled x{settings["upsample"]}' if settings['upsample'] > 1 else ''
  return pictures.segmentation_figure(
      frames[rows], [masks[i] for i in rows], segments[rows], out_png,
      overlaps=[best_overlaps(segments[i], masks[i]) for i in rows],
      title=f'k-means (K={settings["num_clusters"]}) of {settings["feature"]}{upsampled}')
