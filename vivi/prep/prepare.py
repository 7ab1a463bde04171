"""One video file -> one training record (or the reason it is skipped).

This is the per-video function both runners call (`runner.py` locally, `beam_pipeline.py`
on a Beam cluster), so the two produce the same records. It is deterministic: the same
file, id and config give the same bytes (the random start of R2V2-style sampling is seeded
by the config's seed and the video id).

Steps: probe -> decode at the chosen rate (`decode.py`) -> filters (`filters.py`) -> shot
boundaries (`shots.py`) -> object boxes on every stored frame (`detectors.py`) -> JPEG.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from typing import Any

import numpy as np

from vivi.input import records
from vivi.prep import decode, filters, shots

# Presets for the seeds' datasets (`--preset`); any field can still be set by its flag.
PRESETS: dict[str, dict[str, Any]] = {
    # VIVI (Tschannen et al. section 4): frames at 1 Hz, shots from colour histograms.
    'vivi': dict(fps=1.0),
    # R2V2 (Gordon et al. section 3.1): T = 4 images G = 5 s apart from a random point,
    # static videos filtered (the paper gives no threshold; 1% of pixels per second is ours).
    'r2v2': dict(fps=0.2, start='random', max_frames=4, min_changed_fraction=0.01),
    # VITO/VideoNet (Parthasarathy et al. section 3.2): whole clips at a rate that resolves
    # the 2.56 s sampling window, videos under 10 s dropped.
    'vito': dict(fps=25.0, min_duration=10.0),
}


@dataclasses.dataclass(frozen=True)
class PrepConfig:
  fps: float = 1.0
  start: str = 'zero'                  # 'zero' | 'random' (seeded per video)
  max_frames: int = 0                  # 0: all; else exactly this many or the video is skipped
  max_short_side: int = 256
  jpeg_quality: int = 90
  analysis_fps: float = 30.0           # Histograms for shot detection (see shots.py).
  shot_threshold: float = 0.2
  min_shot_seconds: float = 1.0
  short_shots: str = 'merge'           # 'merge' | 'drop'
  min_shots: int = 1
  min_duration: float = 0.0            # seconds
  min_changed_fraction: float = 0.0    # static filter (0: off)
  detector: str = 'haar'               # 'none' | 'haar' | 'saved_model'
  detector_path: str = ''
  haar_cascades: tuple[str, ...] = ('frontalface_default', 'fullbody', 'upperbody',
                                    'frontalcatface')
  max_boxes: int = 5
  classifier_model: str = ''           # curation (VideoNet): a Keras model on disk...
  classifier_labels: str = ''          # ... and its label file; '' = no curation
  classifier_preprocess: str = 'caffe'
  curation_frames: int = 100
  seed: int = 0

  @classmethod
  def from_preset(cls, name: str, **overrides) -> PrepConfig:
    if name and name not in PRESETS:
      raise ValueError(f'unknown preset {name!r}; presets: {sorted(PRESETS)}')
    return cls(**{**PRESETS.get(name, {}), **overrides})

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Prepared:
  """What one video gave: a record, or a skip reason; stats either way."""
  video_id: str
  path: str
  video: records.Video | None
  skipped: str | None
  stats: dict
  label_names: dict[int, str]
  detector: str = ''               # the annotating detector's name (for the manifest)


class Workers:
  """The per-process tools a config needs (the detector and the curation classifier),
  built once per worker process rather than once per video."""

  def __init__(self, cfg: PrepConfig):
    from vivi.prep import detectors
    self.detector = detectors.create(cfg.detector, path=cfg.detector_path,
                                     cascades=cfg.haar_cascades, max_boxes=cfg.max_boxes)
    self.classifier = None
    if cfg.classifier_model:
      self.classifier = filters.KerasClassifier(cfg.classifier_model, cfg.classifier_labels,
                                                preprocess=cfg.classifier_preprocess)


def _start_time(cfg: PrepConfig, video_id: str, duration: float) -> float:
  if cfg.start == 'zero':
    return 0.0
  if cfg.start != 'random':
    raise ValueError(f"PrepConfig.start must be 'zero' or 'random', got {cfg.start!r}")
  span = (cfg.max_frames - 1) / cfg.fps if cfg.max_frames else 0.0
  room = duration - span if cfg.max_frames else 1.0 / cfg.fps
  digest = hashlib.sha256(f'{cfg.seed}:{video_id}'.encode()).digest()
  return float(np.random.default_rng(list(digest[:16])).uniform(0, max(room, 0.0)))


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(frame).save(buffer, format='JPEG', quality=quality)
  return buffer.getvalue()


def prepare_video(path: str, video_id: str, cfg: PrepConfig, tools: Workers,
                  query: str = '') -> Prepared:
  """Decodes, filters, splits into shots, annotates and encodes one video."""
  start_clock = time.perf_counter()
  stats: dict[str, Any] = {}

  def skip(reason: str) -> Prepared:
    stats['seconds'] = time.perf_counter() - start_clock
    return Prepared(video_id, path, None, reason, stats, {}, tools.detector.name)

  try:
    declared = decode.probe_duration(path)
    stats['declared_duration'] = declared
    if reason := filters.check_duration(declared, cfg.min_duration):
      return skip(reason)
    sampling = decode.Sampling(
        fps=cfg.fps, start=_start_time(cfg, video_id, declared), max_frames=cfg.max_frames,
        max_short_side=cfg.max_short_side, analysis_fps=cfg.analysis_fps,
        num_first_frames=cfg.curation_frames if tools.classifier else 0)
    decoded = decode.decode(path, sampling)
  except decode.DecodeError as e:
    return skip(f'unreadable: {e}')
  stats.update(decode_seconds=time.perf_counter() - start_clock, duration=decoded.duration,
               native_fps=decoded.native_fps, height=decoded.size[0], width=decoded.size[1])
  # A file cut short (a partial download) often still decodes, up to where it stops.
  if decoded.complete and declared > 0 and decoded.duration < 0.9 * declared - 1.0:
    return skip(f'truncated: decoded {decoded.duration:.2f} s of the {declared:.2f} s the '
                f'container declares')
  if cfg.max_frames and len(decoded.frames) < cfg.max_frames:
    return skip(f'too few frames: {len(decoded.frames)} < {cfg.max_frames} at {cfg.fps:g} fps '
                f'from {sampling.start:.2f} s')
  stats['changed_fraction'] = filters.changed_fraction(decoded.thumbnails)
  if reason := filters.check_static(decoded.thumbnails, cfg.min_changed_fraction):
    return skip(reason)
  if tools.classifier and (reason := filters.check_curation(decoded.first_frames,
                                                            tools.classifier, query)):
    return skip(reason)

  shot_cfg = shots.ShotConfig(cfg.shot_threshold, cfg.min_shot_seconds, cfg.short_shots)
  cuts = shots.cut_times(decoded.histograms, decoded.histogram_times, cfg.shot_threshold)
  shot_ids = shots.assign(decoded.timestamps, shots.segments(cuts, decoded.duration, shot_cfg))
  keep = np.flatnonzero(shot_ids >= 0)
  stats['cuts'] = [round(float(c), 3) for c in cuts]
  num_shots = len(np.unique(shot_ids[keep]))
  if num_shots < max(cfg.min_shots, 1):
    return skip(f'too few shots: {num_shots} < {max(cfg.min_shots, 1)} '
                f'({len(cuts)} cuts at threshold {cfg.shot_threshold:g})')

  detections = [tools.detector(decoded.frames[i]) for i in keep]
  video = records.Video(
      video_id=video_id, fps=min(cfg.fps, decoded.native_fps or cfg.fps),
      frames=[_jpeg(decoded.frames[i], cfg.jpeg_quality) for i in keep],
      timestamps=decoded.timestamps[keep], shot_ids=shot_ids[keep],
      boxes=[d.boxes for d in detections], labels=[d.labels for d in detections],
      scores=[d.scores for d in detections])
  records.validate_video(video, path)
  stats['seconds'] = time.perf_counter() - start_clock
  # The detector's whole label map so far (ids are the detector's), not only what this
  # video used: the manifest's map is the union over all videos.
  return Prepared(video_id, path, video, None, stats, tools.detector.label_names(),
                  tools.detector.name)
