"""Object annotation for data preparation: one small interface, three implementations.

Every detector maps an RGB uint8 frame to `Detections` (at most `max_boxes` boxes, normalised
(ymin, xmin, ymax, xmax), scores sorted descending) and reports its label map, which goes into
the manifest; `vivi/input/records.py` stores boxes, labels and scores per frame.

- `none`: no boxes. For methods without an object level (VIVI, VINCE, VITO, DetCon).
- `haar`: OpenCV's bundled Haar cascades (frontal face, full body, upper body, cat face, ...).
  Ships inside the opencv wheel, so it is the offline default: weak but real detections.
- `saved_model`: any TF SavedModel with the signature of the TF-Hub OpenImages V4 detectors
  (`detection_boxes`, `detection_scores`, `detection_class_labels` / `_entities` / `_names`).
  Romijnders et al. annotate with SSD MobileNet v2 trained on OpenImages V4 from TF-Hub;
  download it once and point `create('saved_model', path)` at the unpacked folder.

Scores are stored unthresholded (`min_score` defaults to 0) so that training applies the
paper's 0.05 threshold itself, and keeping the top 5 boxes per frame follows the paper.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

HAAR_DEFAULT = ('frontalface_default', 'fullbody', 'upperbody', 'frontalcatface')
# Haar settings: OpenCV's usual scale step and neighbour count; objects smaller than 8% of
# the shorter side are skipped (too small for a block-4 feature column, and 2-4x faster);
# frames are first shrunk to <= 640 px on the long side, which boxes, being normalised,
# do not notice.
HAAR_SCALE_FACTOR, HAAR_MIN_NEIGHBORS, HAAR_MIN_SIZE, HAAR_MAX_SIDE = 1.1, 3, 0.08, 640


@dataclasses.dataclass
class Detections:
  boxes: np.ndarray   # [n, 4] float32 (ymin, xmin, ymax, xmax) in [0, 1], non-degenerate
  labels: np.ndarray  # [n] int64, ids into the detector's label map
  scores: np.ndarray  # [n] float32 in [0, 1], sorted descending


class Detector(Protocol):
  name: str  # goes into the manifest

  def __call__(self, image: np.ndarray) -> Detections: ...

  def label_names(self) -> dict[int, str]: ...


def _finalise(boxes, labels, scores, max_boxes: int, min_score: float) -> Detections:
  """Clip, drop degenerate / non-finite / low boxes, then keep the top `max_boxes`."""
  boxes = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0.0, 1.0)
  labels = np.asarray(labels, np.int64).reshape(-1)
  scores = np.asarray(scores, np.float32).reshape(-1)
  keep = (np.isfinite(boxes).all(1) & np.isfinite(scores) & (scores >= min_score)
          & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
  boxes, labels, scores = boxes[keep], labels[keep], np.clip(scores[keep], 0.0, 1.0)
  top = np.argsort(-scores, kind='stable')[:max_boxes]  # stable: ties keep detector order
  return Detections(boxes[top], labels[top], scores[top])


class NoDetector:
  name = 'none'

  def __call__(self, image: np.ndarray) -> Detections:
    return _finalise(np.zeros([0, 4]), np.zeros([0]), np.zeros([0]), 0, 0.0)

  def label_names(self) -> dict[int, str]:
    return {}


def haar_available() -> list[str]:
  files = os.listdir(cv2.data.haarcascades)
  return sorted(f[len('haarcascade_'):-4] for f in files if f.startswith('haarcascade_'))


def _last_stage(xml: str) -> tuple[float, float]:
  """(threshold, highest attainable sum) of a cascade's final boosted stage."""
  stage = xml[xml.rfind('<stageThreshold>'):xml.find('<features>')]
  threshold = float(re.search(r'<stageThreshold>([^<]+)<', stage).group(1))
  leaves = re.findall(r'<leafValues>([^<]+)<', stage)
  return threshold, sum(max(map(float, v.split())) for v in leaves)


class HaarDetector:
  """One cv2.CascadeClassifier per name; label id = index of the cascade in `cascades`.

  Score. `detectMultiScale3(outputRejectLevels=True)` gives per box the summed vote w of the
  cascade's final boosted stage (the best in each neighbour group); the box passed because
  w >= that stage's threshold t. We report logistic(4 (w - t) / (w_max - t)), w_max being
  the stage's unanimous vote: 0.5 means "just passed", ~0.98 "every weak classifier agrees".
  Monotone in w, so the ranking is OpenCV's own; dividing by the stage's range makes the
  cascades comparable (their votes live on very different scales, e.g. full body's final
  threshold is -30.8, alt2's +53.8). Every reported box scores >= 0.5 because the cascade
  and the neighbour vote have already thresholded it, so it survives training's 0.05 cut.
  """

  def __init__(self, cascades: Sequence[str], max_boxes: int, min_score: float):
    available = haar_available()
    unknown = [c for c in cascades if c not in available]
    if unknown or not cascades:
      raise ValueError(f'unknown Haar cascade(s) {unknown}; available: {available}')
    self.cascades, self.max_boxes, self.min_score = list(cascades), max_boxes, min_score
    self.name = 'haar:' + ','.join(self.cascades)
    self._models = []
    for c in self.cascades:
      path = os.path.join(cv2.data.haarcascades, f'haarcascade_{c}.xml')
      with open(path) as f:
        threshold, top = _last_stage(f.read())
      self._models.append((cv2.CascadeClassifier(path), threshold, max(top - threshold, 1e-6)))

  def __call__(self, image: np.ndarray) -> Detections:
    grey = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)
    if max(grey.shape) > HAAR_MAX_SIDE:
      f = HAAR_MAX_SIDE / max(grey.shape)
      grey = cv2.resize(grey, (round(grey.shape[1] * f), round(grey.shape[0] * f)),
                        interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)  # the cascades were trained on variance-normalised crops
    h, w = grey.shape
    side = max(1, round(HAAR_MIN_SIZE * min(h, w)))
    boxes, labels, scores = [np.zeros([0, 4])], [np.zeros([0])], [np.zeros([0])]
    for label, (model, threshold, span) in enumerate(self._models):
      rects, _, weights = model.detectMultiScale3(
          grey, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBORS,
          minSize=(side, side), outputRejectLevels=True)
      if len(rects) == 0:
        continue
      x, y, bw, bh = np.asarray(rects, np.float64).reshape(-1, 4).T
      boxes.append(np.stack([y / h, x / w, (y + bh) / h, (x + bw) / w], 1))
      margin = np.maximum(np.asarray(weights, np.float64).reshape(-1) - threshold, 0.0)
      scores.append(1.0 / (1.0 + np.exp(-4.0 * margin / span)))
      labels.append(np.full(len(rects), label))
    return _finalise(np.concatenate(boxes), np.concatenate(labels), np.concatenate(scores),
                     self.max_boxes, self.min_score)

  def label_names(self) -> dict[int, str]:
    return dict(enumerate(self.cascades))


class SavedModelDetector:
  """A TF-Hub OpenImages V4 style detector (signature 'default') loaded from disk.

  Labels are the model's 'detection_class_labels' when it outputs them. Otherwise each
  entity string gets an id in order of first appearance: stable within one process only,
  so shards prepared by separate processes disagree; prefer models that output labels.
  """
  REQUIRED = ('detection_boxes', 'detection_scores')

  def __init__(self, path: str, max_boxes: int, min_score: float):
    import tensorflow as tf  # Only this kind needs TF; keeps the other detectors light.
    if not path or not os.path.exists(path):
      raise ValueError(f'saved_model detector: no SavedModel at path {path!r}')
    try:
      model = tf.saved_model.load(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'saved_model detector: cannot load {path!r}: {e}') from e
    sigs = model.signatures
    if 'default' not in sigs:
      raise ValueError(f'SavedModel {path!r} has no signature "default" (has {list(sigs)})')
    self._model, self._fn = model, sigs['default']  # Keep `model` alive: it owns the vars.
    outputs = set(self._fn.structured_outputs)
    missing = [k for k in self.REQUIRED if k not in outputs]
    if not outputs & {'detection_class_labels', 'detection_class_entities'}:
      missing.append('detection_class_labels or detection_class_entities')
    if missing:
      raise ValueError(f'SavedModel {path!r}: signature "default" lacks outputs {missing} '
                       f'(has {sorted(outputs)})')
    self._input = next(iter(self._fn.structured_input_signature[1]), None)
    self._tf, self.name = tf, f'saved_model:{path}'
    self.max_boxes, self.min_score = max_boxes, min_score
    self._names: dict[int, str] = {}
    self._entity_ids: dict[str, int] = {}

  def __call__(self, image: np.ndarray) -> Detections:
    x = self._tf.constant(np.asarray(image, np.float32)[None] / 255.0)
    out = self._fn(**{self._input: x}) if self._input else self._fn(x)
    get = lambda k: out[k].numpy().reshape(-1) if k in out else None  # drops a batch of 1
    boxes, scores = out['detection_boxes'].numpy().reshape(-1, 4), get('detection_scores')
    entities, names = get('detection_class_entities'), get('detection_class_names')
    labels = get('detection_class_labels')
    if labels is None:
      ids = self._entity_ids  # first appearance order: len() before insertion is the id
      labels = np.array([ids.setdefault(e.decode(), len(ids)) for e in entities], np.int64)
    for i, l in enumerate(labels):
      if int(l) not in self._names:  # first seen name wins; a model's map is fixed anyway
        text = names if names is not None else entities
        self._names[int(l)] = text[i].decode() if text is not None else str(int(l))
    return _finalise(boxes, labels, scores, self.max_boxes, self.min_score)

  def label_names(self) -> dict[int, str]:
    return dict(sorted(self._names.items()))


def create(kind: str = 'none', path: str = '', cascades: Sequence[str] = HAAR_DEFAULT,
           max_boxes: int = 5, min_score: float = 0.0) -> Detector:
  """kind: 'none' | 'haar' (uses `cascades`) | 'saved_model' (uses `path`)."""
  if kind == 'none':
    return NoDetector()
  if kind == 'haar':
    return HaarDetector(cascades, max_boxes, min_score)
  if kind == 'saved_model':
    return SavedModelDetector(path, max_boxes, min_score)
  raise ValueError(f"unknown detector kind {kind!r}; want 'none', 'haar' or 'saved_model'")
