"""The video record: the contract between `data/` (writers) and `vivi/input/` (readers).

One `tf.train.SequenceExample` per video (schema version 1):

    context
      video/id            bytes
      video/fps           float   rate of the stored frames (1.0 for VIVI-style data)
      video/num_frames    int
    feature_lists (one entry per stored frame)
      image/encoded       bytes        JPEG
      image/timestamp     float        seconds from the start of the video
      shot/id             int          0, 0, 0, 1, 1, ... (non-decreasing)
      object/bbox/ymin, object/bbox/xmin, object/bbox/ymax, object/bbox/xmax
                          float list   normalised to [0, 1], one value per box
      object/label        int list     ids into the dataset's label map
      object/score        float list   detector confidence
      image/soft_label    float list   optional: a classifier's probabilities over the
                                       manifest's `soft_label_map` (for distillation)

A dataset is a folder of `*.tfrecord` shards plus `manifest.json` (see `Manifest`).
Readers never trust a record: `validate_video` checks every invariant above and names the
record in its error.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np

from vivi import errors

SCHEMA_VERSION = 1
MANIFEST = 'manifest.json'
BOX_KEYS = ('object/bbox/ymin', 'object/bbox/xmin', 'object/bbox/ymax', 'object/bbox/xmax')


@dataclasses.dataclass
class Video:
  """A decoded-on-the-host view of one record (JPEG bytes are kept encoded)."""
  video_id: str
  fps: float
  frames: list[bytes]              # JPEG per frame
  timestamps: np.ndarray           # [T] float
  shot_ids: np.ndarray             # [T] int, non-decreasing
  boxes: list[np.ndarray]          # per frame [n, 4] (ymin, xmin, ymax, xmax) in [0, 1]
  labels: list[np.ndarray]         # per frame [n] int
  scores: list[np.ndarray]         # per frame [n] float
  soft_labels: np.ndarray | None = None  # optional [T, C] probabilities per frame


class RecordError(errors.DatasetError):
  """A record breaks the schema; the message names the file and the record."""


def validate_video(v: Video, where: str = '') -> None:
  """Raises RecordError naming `where` (file and record) and what is wrong."""
  at = f'{where}: video {v.video_id!r}' if where else f'video {v.video_id!r}'
  t = len(v.frames)
  if t == 0:
    raise RecordError(f'{at}: has no frames')
  for name, seq in (('image/timestamp', v.timestamps), ('shot/id', v.shot_ids),
                    ('object boxes', v.boxes), ('object/label', v.labels),
                    ('object/score', v.scores)):
    if len(seq) != t:
      raise RecordError(f'{at}: {name} has {len(seq)} entries for {t} frames')
  if v.soft_labels is not None:
    p = np.asarray(v.soft_labels)
    if p.ndim != 2 or len(p) != t:
      raise RecordError(f'{at}: image/soft_label has shape {p.shape}, want [{t}, classes]')
    if np.any(~np.isfinite(p)) or p.min() < 0 or np.any(np.abs(p.sum(1) - 1) > 1e-3):
      raise RecordError(f'{at}: image/soft_label rows must be probabilities (>= 0, sum 1)')
  if np.any(np.diff(v.shot_ids) < 0):
    raise RecordError(f'{at}: shot/id must be non-decreasing, got {list(v.shot_ids)}')
  if not v.fps > 0:
    raise RecordError(f'{at}: video/fps must be positive, got {v.fps}')
  for f, (b, l, s) in enumerate(zip(v.boxes, v.labels, v.scores)):
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if not len(b) == len(l) == len(s):
      raise RecordError(f'{at} frame {f}: {len(b)} boxes, {len(l)} labels, {len(s)} scores')
    if len(b) and (np.any(~np.isfinite(b)) or b.min() < 0 or b.max() > 1):
      raise RecordError(f'{at} frame {f}: box outside the image [0, 1]: {b.tolist()}')
    if len(b) and np.any((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])):
      raise RecordError(f'{at} frame {f}: box with ymax < ymin or xmax < xmin: {b.tolist()}')


def to_sequence_example(v: Video):
  """Serialises a validated `Video` to a `tf.train.SequenceExample`."""
  import tensorflow as tf  # Writers only; keeps `import vivi.input.records` light.
  validate_video(v)
  feature = tf.train.Feature

  def floats(x):
    return feature(float_list=tf.train.FloatList(value=np.asarray(x, np.float32).ravel()))

  def ints(x):
    return feature(int64_list=tf.train.Int64List(value=np.asarray(x, np.int64).ravel()))

  def bytes_(x):
    return feature(bytes_list=tf.train.BytesList(value=[x]))

  boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in v.boxes]
  lists = {
      'image/encoded': [bytes_(f) for f in v.frames],
      'image/timestamp': [floats([t]) for t in v.timestamps],
      'shot/id': [ints([s]) for s in v.shot_ids],
      'object/label': [ints(l) for l in v.labels],
      'object/score': [floats(s) for s in v.scores],
  }
  for c, key in enumerate(BOX_KEYS):
    lists[key] = [floats(b[:, c]) for b in boxes]
  if v.soft_labels is not None:
    lists['image/soft_label'] = [floats(p) for p in v.soft_labels]
  return tf.train.SequenceExample(
      context=tf.train.Features(feature={
          'video/id': bytes_(v.video_id.encode()),
          'video/fps': floats([v.fps]),
          'video/num_frames': ints([len(v.frames)]),
      }),
      feature_lists=tf.train.FeatureLists(feature_list={
          k: tf.train.FeatureList(feature=fs) for k, fs in lists.items()}))


def parse_features(soft_label_classes: int = 0):
  """(context, sequence) feature specs for `tf.io.parse_single_sequence_example`.

  Soft labels are parsed only when `soft_label_classes` > 0 (a record without them then
  fails to parse: a dataset for distillation must carry them on every frame).
  """
  import tensorflow as tf
  context = {
      'video/id': tf.io.FixedLenFeature([], tf.string),
      'video/fps': tf.io.FixedLenFeature([], tf.float32),
      'video/num_frames': tf.io.FixedLenFeature([], tf.int64),
  }
  sequence = {
      'image/encoded': tf.io.FixedLenSequenceFeature([], tf.string),
      'image/timestamp': tf.io.FixedLenSequenceFeature([], tf.float32),
      'shot/id': tf.io.FixedLenSequenceFeature([], tf.int64),
      'object/label': tf.io.RaggedFeature(tf.int64),
      'object/score': tf.io.RaggedFeature(tf.float32),
  }
  for key in BOX_KEYS:
    sequence[key] = tf.io.RaggedFeature(tf.float32)
  if soft_label_classes:
    sequence['image/soft_label'] = tf.io.FixedLenSequenceFeature([soft_label_classes],
                                                                 tf.float32)
  return context, sequence


def from_serialized(serialized: bytes) -> Video:
  """Parses one serialized record on the host (for tools and tests, not the pipeline)."""
  import tensorflow as tf
  context, seq = tf.io.parse_single_sequence_example(serialized, *parse_features())
  _, soft = tf.io.parse_single_sequence_example(
      serialized, sequence_features={'image/soft_label': tf.io.RaggedFeature(tf.float32)})
  soft = soft['image/soft_label']
  boxes = tf.stack([seq[k] for k in BOX_KEYS], axis=-1)
  return Video(
      video_id=context['video/id'].numpy().decode(),
      fps=float(context['video/fps'].numpy()),
      frames=list(seq['image/encoded'].numpy()),
      timestamps=seq['image/timestamp'].numpy(),
      shot_ids=seq['shot/id'].numpy(),
      boxes=[b.numpy().reshape(-1, 4) for b in boxes],
      labels=[l.numpy() for l in seq['object/label']],
      scores=[s.numpy() for s in seq['object/score']],
      soft_labels=soft.to_tensor().numpy() if soft.nrows() else None)


@dataclasses.dataclass
class Manifest:
  """What a dataset folder holds; written last, so its presence marks a complete dataset."""
  label_map: list[str]
  fps: float
  detector: str
  counts: dict                      # videos, shots, frames, boxes
  shards: list[str]                 # file names relative to the folder
  skipped: list[dict] = dataclasses.field(default_factory=list)  # {'video', 'reason'}
  soft_label_map: list[str] = dataclasses.field(default_factory=list)  # image/soft_label
  # Videos in each shard, in `shards`' order (the input pipeline's record counts; empty:
  # the pipeline counts them from the shards' record headers).
  shard_videos: list[int] = dataclasses.field(default_factory=list)
  schema_version: int = SCHEMA_VERSION
  extra: dict = dataclasses.field(default_factory=dict)

  def write(self, folder: str) -> None:
    write_atomic(os.path.join(folder, MANIFEST), json.dumps(dataclasses.asdict(self), indent=1))

  @classmethod
  def read(cls, folder: str) -> Manifest:
    from tensorflow.io import gfile
    path = os.path.join(folder, MANIFEST)
    if not gfile.exists(path):
      raise errors.DatasetError(f'{folder} is not a dataset: it has no {MANIFEST} (datasets '
                                'are written by data/prepare_videos.py)')
    try:
      with gfile.GFile(path) as f:
        d = json.load(f)
    except ValueError as e:
      raise RecordError(f'{path}: not valid JSON: {e}') from None
    if not isinstance(d, dict) or d.get('schema_version') != SCHEMA_VERSION:
      version = d.get('schema_version') if isinstance(d, dict) else None
      raise RecordError(f'{path}: schema version {version}, this code reads version '
                        f'{SCHEMA_VERSION}')
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown, missing = sorted(set(d) - fields), sorted(
        f.name for f in dataclasses.fields(cls)
        if f.name not in d and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
      raise RecordError(f'{path}: manifest keys {unknown} unknown, {missing} missing')
    return cls(**d)

  def shard_paths(self, folder: str) -> list[str]:
    return [os.path.join(folder, s) for s in self.shards]

  def shard_counts(self, folder: str) -> dict[str, int]:
    """{shard path: videos in it} where the manifest says, else {}."""
    if len(self.shard_videos) != len(self.shards):
      return {}
    return dict(zip(self.shard_paths(folder), self.shard_videos))


def shard_name(k: int, n: int) -> str:
  """File name of shard k of n."""
  return f'train-{k:05d}-of-{n:05d}.tfrecord'


def write_atomic(path: str, text: str) -> None:
  """Writes a text file so that readers see all of it or nothing (local or gs://...)."""
  from tensorflow.io import gfile
  with gfile.GFile(path + '.tmp', 'w') as f:
    f.write(text)
  gfile.rename(path + '.tmp', path, overwrite=True)


def write_shard(path: str, videos: Sequence[Video]) -> None:
  """Writes one shard atomically (to a temporary name, then renamed; local or gs://...)."""
  import tensorflow as tf
  tmp = path + '.tmp'
  with tf.io.TFRecordWriter(tmp) as w:
    for v in videos:
      # Deterministic: map entries sorted, so a shard's bytes do not depend on the process.
      w.write(to_sequence_example(v).SerializeToString(deterministic=True))
  tf.io.gfile.rename(tmp, path, overwrite=True)
