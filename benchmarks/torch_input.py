"""The PyTorch-style peer of the VIVI + objects input pipeline (benchmarks/input_pipeline.py).

What a PyTorch user would write for the same records: a `torch.utils.data.IterableDataset`
whose DataLoader worker processes each read their share of the TFRecord shards (framing read
in Python, records parsed with the protobuf classes), sample K consecutive shots with at
least L frames and L consecutive frames from each (NumPy; the rule of
`vivi/input/vivi_sampler.py`), decode the sampled JPEGs with PIL and augment each frame the
way torchvision's PIL transforms do: RandomResizedCrop (area 5-100 %, aspect 3/4-4/3,
bilinear with PIL's antialiasing), horizontal flip, and ColorJitter with PIL's
ImageEnhance (brightness, saturation, contrast) and an HSV hue shift, in the fixed order of
our TF-slim policy (brightness, saturation, hue, contrast). torchvision is not installed
here, so those transforms are written out below with the same PIL calls torchvision's
`functional_pil` makes. Boxes (top 5 with score >= 0.05) follow each frame's crop and flip.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct

import numpy as np
import torch
from PIL import Image, ImageEnhance

BOX_KEYS = ('object/bbox/ymin', 'object/bbox/xmin', 'object/bbox/ymax', 'object/bbox/xmax')


@dataclasses.dataclass(frozen=True)
class PeerConfig:
  num_shots: int = 4          # K
  frames_per_shot: int = 8    # L
  image_size: int = 224
  crop_area: tuple = (0.05, 1.0)
  crop_aspect: tuple = (3 / 4, 4 / 3)
  brightness: float = 0.125   # torchvision's multiplicative [1 - b, 1 + b] (ours: +-32/255)
  saturation: tuple = (0.5, 1.5)
  hue: float = 0.2
  contrast: tuple = (0.5, 1.5)
  max_boxes: int = 5
  min_score: float = 0.05


def read_tfrecords(path: str):
  """Yields the records of a TFRecord file (CRCs not checked, as most readers do)."""
  with open(path, 'rb') as f:
    while True:
      header = f.read(12)
      if not header:
        return
      (length,) = struct.unpack('<Q', header[:8])
      data = f.read(length)
      f.read(4)
      yield data


def random_resized_crop(rng: np.random.Generator, w: int, h: int, cfg: PeerConfig):
  """torchvision's RandomResizedCrop.get_params: (top, left, height, width)."""
  area = w * h
  log_ratio = (math.log(cfg.crop_aspect[0]), math.log(cfg.crop_aspect[1]))
  for _ in range(10):
    target = area * rng.uniform(*cfg.crop_area)
    aspect = math.exp(rng.uniform(*log_ratio))
    cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
  side = min(w, h)  # Fallback: the central square.
  return (h - side) // 2, (w - side) // 2, side, side


def adjust_hue(image: Image.Image, factor: float) -> Image.Image:
  """torchvision's functional_pil.adjust_hue: shift the H channel of PIL's HSV."""
  h, s, v = image.convert('HSV').split()
  shifted = (np.asarray(h, np.uint8).astype(np.int16) + int(factor * 255)) % 256
  return Image.merge('HSV', (Image.fromarray(shifted.astype(np.uint8), 'L'), s, v)
                     ).convert('RGB')


def augment_frame(jpeg: bytes, boxes: np.ndarray, valid: np.ndarray,
                  rng: np.random.Generator, cfg: PeerConfig):
  """Decodes and augments one frame; returns uint8 [S, S, 3], boxes [B, 4], valid [B]."""
  image = Image.open(io.BytesIO(jpeg)).convert('RGB')
  w, h = image.size
  top, left, ch, cw = random_resized_crop(rng, w, h, cfg)
  image = image.resize((cfg.image_size, cfg.image_size), Image.BILINEAR,
                       box=(left, top, left + cw, top + ch))
  flipped = rng.random() < 0.5
  if flipped:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - cfg.brightness,
                                                             1 + cfg.brightness))
  image = ImageEnhance.Color(image).enhance(rng.uniform(*cfg.saturation))
  image = adjust_hue(image, rng.uniform(-cfg.hue, cfg.hue))
  image = ImageEnhance.Contrast(image).enhance(rng.uniform(*cfg.contrast))
  # Boxes through the crop and the flip; a box whose centre leaves the crop is dropped.
  y = (boxes[:, [0, 2]] * h - top) / ch
  x = (boxes[:, [1, 3]] * w - left) / cw
  cy, cx = y.mean(1), x.mean(1)
  valid = valid & (cy >= 0) & (cy < 1) & (cx >= 0) & (cx < 1)
  if flipped:
    x = 1 - x[:, ::-1]
  out = np.clip(np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1), 0, 1).astype(np.float32)
  return np.asarray(image, np.uint8), np.where(valid[:, None], out, 0), valid


def parse(data: bytes):
  """(jpegs, shot ids, per-frame boxes, labels, scores) of one serialized SequenceExample."""
  from tensorflow.core.example import example_pb2  # Protobuf classes only; no TF ops run.
  lists = example_pb2.SequenceExample.FromString(data).feature_lists.feature_list
  jpegs = [f.bytes_list.value[0] for f in lists['image/encoded'].feature]
  shot_ids = np.array([f.int64_list.value[0] for f in lists['shot/id'].feature])
  coords = [[np.array(f.float_list.value, np.float32) for f in lists[k].feature]
            for k in BOX_KEYS]
  boxes = [np.stack(c, axis=1) for c in zip(*coords)]
  labels = [np.array(f.int64_list.value) for f in lists['object/label'].feature]
  scores = [np.array(f.float_list.value, np.float32) for f in lists['object/score'].feature]
  return jpegs, shot_ids, boxes, labels, scores


def sample_video(data: bytes, rng: np.random.Generator, cfg: PeerConfig):
  """One video's [K, L] frames and boxes, or None when it has fewer than K usable shots."""
  jpegs, shot_ids, boxes, labels, scores = parse(data)
  k, l, b = cfg.num_shots, cfg.frames_per_shot, cfg.max_boxes
  _, starts, lengths = np.unique(shot_ids, return_index=True, return_counts=True)
  usable = np.flatnonzero(lengths >= l)
  if len(usable) < k:
    return None
  first = int(rng.integers(0, len(usable) - k + 1))
  frames = np.empty((k, l, cfg.image_size, cfg.image_size, 3), np.uint8)
  out_boxes = np.zeros((k, l, b, 4), np.float32)
  out_labels = np.zeros((k, l, b), np.int64)
  out_valid = np.zeros((k, l, b), bool)
  for s, shot in enumerate(usable[first:first + k]):
    offset = int(rng.integers(0, lengths[shot] - l + 1))
    for f in range(l):
      i = starts[shot] + offset + f
      order = np.argsort(-scores[i], kind='stable')[:b]
      order = order[scores[i][order] >= cfg.min_score]
      n = len(order)
      frame_boxes = np.zeros((b, 4), np.float32)
      frame_boxes[:n] = boxes[i][order]
      valid = np.arange(b) < n
      frames[s, f], out_boxes[s, f], out_valid[s, f] = augment_frame(
          jpegs[i], frame_boxes, valid, rng, cfg)
      out_labels[s, f, :n] = labels[i][order]
  return {'frames': frames, 'boxes': out_boxes, 'box_labels': out_labels,
          'box_valid': out_valid}


class VideoStream(torch.utils.data.IterableDataset):
  """Endless stream of sampled videos; each DataLoader worker reads its share of the shards."""

  def __init__(self, files: list[str], cfg: PeerConfig, seed: int = 0):
    self.files, self.cfg, self.seed = sorted(files), cfg, seed

  def __iter__(self):
    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    rng = np.random.default_rng([self.seed, worker])
    mine = self.files[worker::workers]
    while True:
      for path in rng.permutation(mine):
        for data in read_tfrecords(str(path)):
          video = sample_video(data, rng, self.cfg)
          if video is not None:
            yield {k: torch.from_numpy(v) for k, v in video.items()}


def make_loader(files: list[str], cfg: PeerConfig, *, batch_videos: int, num_workers: int,
                seed: int = 0) -> torch.utils.data.DataLoader:
  """An endless DataLoader of batches [videos, K, L, S, S, 3] (+ boxes) from `files`."""
  if num_workers > len(files):
    raise ValueError(f'{num_workers} workers need at least as many shards, got {len(files)}')
  return torch.utils.data.DataLoader(
      VideoStream(files, cfg, seed), batch_size=batch_videos, num_workers=num_workers,
      persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers else None,
      multiprocessing_context='spawn' if num_workers else None)
