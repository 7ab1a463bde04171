"""ImageNet-Vid-Robust and YouTube-BB-Robust: does an ImageNet classifier stay right across
the frames of a video around one it gets right?

Shankar et al. 2019, "Do image classifiers generalize across time?" (arXiv:1906.02168):
each "anchor" frame of a video comes with its pm-set, the frames within 10 frames of it
that human reviewers judged similar to it (different frames, not different objects). An
anchor counts as correct under pm-k only if the classifier is right on the anchor and on
every frame of its pm-set at most k frames away; the anchor accuracy (pm-0) and the pm-k
accuracy, and their difference, measure how much predictions flicker between near-
identical frames. VIVI (Table 3) reports the anchor and pm-10 accuracies of ImageNet-Vid-
Robust with Clopper-Pearson intervals, Romijnders et al. (Table 5) the anchor and pm-k
accuracies of both benchmarks and their difference Delta, VITO (Table 1) pm-0 and pm-10.

The classifier's 1,000 ImageNet logits are scored in the benchmark's label space (30
ImageNet-VID classes; 24 YouTube-BB classes) by the maximum logit over each class's
ImageNet members (superclasses.py; merge_op 'max' of the authors' evaluation code,
github.com/modestyachts/imagenet-testbed, which VITO uses); a class without members is
never predicted (-inf, as that code's fixed version scores it). A frame is right when that
prediction is one of its labels (a frame can have several).

The official release (imagenet_vid_ytbb_robust.tar.gz, unpacked: `release_dir`), per
dataset folder (`benchmarks`: 'imagenet_vid_robust', 'ytbb_robust'):
  imagenet-vid-robust/ (ytbb-robust/)
    metadata/labels.json    {frame: [class, ...]}: the frame's classes in the label space
    metadata/pmsets.json    {anchor: [frame, ...]}: the anchor's pm-set
    val/<video>/<frame number>.JPEG   (the frames, keyed by these paths)
Frames are keyed by their path relative to the dataset folder (YouTube-BB-Robust's also
under ytbb_videos/: '<video>_<ms>/frame-<number>.jpg'); the distance between two frames of
a video is the difference of the numbers their file names end in. A pm-set frame without
its own entry in labels.json is judged against its anchor's labels (the testbed's rule for
YouTube-BB-Robust, whose pm-set frames carry only their anchor's labels).

Frames are resized (shorter side to S / 0.875) and centre-cropped to the classifier's size
S (datasets.resize_center_crop), the standard ImageNet evaluation crop that the testbed
applies to these frames.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re

import numpy as np

from vivi import classifier as classifier_lib
from vivi import errors
from vivi.evaluate import datasets, robustness, stats, superclasses
from vivi.evaluate.evaluators import Evaluator, Result

LABELS_JSON = os.path.join('metadata', 'labels.json')
PMSETS_JSON = os.path.join('metadata', 'pmsets.json')
VID_CLASS_INDEX = os.path.join('misc', 'imagenet_vid_class_index.json')   # Checked if there.
MAX_K = 10   # The release's pm-sets hold the reviewed frames within 10 frames of the anchor.
_NUMBER = re.compile(r'(\d+)$')


@dataclasses.dataclass(frozen=True)
class Benchmark:
  title: str
  folder: str                    # The dataset's folder inside imagenet_vid_ytbb_robust/.
  classes: tuple[str, ...]       # Names, in the order of the labels of labels.json.
  members: tuple[tuple[int, ...], ...]   # ImageNet indices of each class.
  frames: str                            # The frames' layout, for error messages.
  frame_dirs: tuple[str, ...] = ('',)    # Where frame keys are looked up, in this order.


BENCHMARKS = {
  'imagenet_vid_robust': Benchmark(
      'ImageNet-Vid-Robust', 'imagenet-vid-robust',
      tuple(name for _, name in superclasses.VID_CLASSES), superclasses.VID_MEMBERS,
      'val/<video>/<frame number>.JPEG'),
  'ytbb_robust': Benchmark(
      'YouTube-BB-Robust', 'ytbb-robust', superclasses.YTBB_CLASSES,
      superclasses.YTBB_MEMBERS, 'ytbb_videos/<video>_<ms>/frame-<number>.jpg',
      ('', 'ytbb_videos')),
}
DEFAULTS = dict(
  classifier='',        # A classifier folder or fine-tuning workdir; '' = imagenet_linear's.
  benchmarks=('imagenet_vid_robust',),   # And/or 'ytbb_robust' (Romijnders et al.: both).
  release_dir='',       # The unpacked imagenet_vid_ytbb_robust/, which holds both.
  ks=(10,),             # pm-10: VIVI Table 3, Romijnders et al. Table 5, VITO Table 1 (its
                        # pm-0 is pm10/anchor_accuracy).
  confidence=0.95,      # Of the Clopper-Pearson intervals: VIVI Table 3's, of 1,109 anchors.
  limit=0,              # > 0: only the first N anchors (sorted by path; smoke runs).
  batch_size=256,
)


def check(options) -> None:
  names = tuple(options.benchmarks)
  if not names or len(set(names)) < len(names) or not set(names) <= set(BENCHMARKS):
    raise ValueError(f'benchmarks={names}: one or more of {tuple(BENCHMARKS)}, each once')
  ks = tuple(options.ks)
  if not ks or any(int(k) != k or not 0 <= k <= MAX_K for k in ks):
    raise ValueError(f'ks={ks}: one or more integers in [0, {MAX_K}] (the pm-sets of the '
                     f'release hold frames within {MAX_K} frames of their anchor)')
  if not 0 < options.confidence < 1:
    raise ValueError(f'confidence={options.confidence}: must be in (0, 1)')
  if options.limit < 0:
    raise ValueError(f'limit={options.limit}: 0 (every anchor) or more')
  if options.batch_size < 1:
    raise ValueError(f'batch_size={options.batch_size}: must be >= 1')


# ---------------------------------------------------------------------------------------
# Scoring.

def superclass_scores(logits: np.ndarray, members) -> np.ndarray:
  """[N, C] of ImageNet logits [N, 1000]: per class the maximum logit over its ImageNet
  members (`members`: C tuples of indices), -inf for a class without members."""
  logits = np.asarray(logits, np.float64)
  out = np.full((len(logits), len(members)), -np.inf)
  for c, indices in enumerate(members):
    if len(indices):
      out[:, c] = logits[:, list(indices)].max(axis=1)
  return out


def superclass_predictions(logits: np.ndarray, members) -> np.ndarray:
  """The predicted class (index into the benchmark's classes) of each row of logits; ties go
  to the first class."""
  return np.argmax(superclass_scores(logits, members), axis=1)


def frame_number(key: str) -> int | None:
  """The number a frame's file name ends in ('val/v/000442.JPEG' -> 442, 'v_44666/frame-1117
  .jpg' -> 1117), or None."""
  match = _NUMBER.search(os.path.splitext(os.path.basename(key))[0])
  return int(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class Anchor:
  key: str
  labels: frozenset[int]
  frames: tuple[tuple[int, str, frozenset[int]], ...]   # (offset, key, labels) of its pm-set.


def pm_k_counts(anchors: list[Anchor], predictions: dict[str, int], ks=(MAX_K,)) -> dict:
  """{'anchor': (correct anchors, anchors), k: (anchors correct under pm-k, anchors)}.

  A frame is correct when its prediction (`predictions[key]`, a class index) is among its
  labels. Each anchor becomes a sequence over the offsets [-d, d] of its pm-set in which a
  frame the pm-set lacks (judged not similar to the anchor by the reviewers) constrains
  nothing (robustness.NO_LABEL), and robustness.pm_k checks the window [-k, k] around the
  anchor: correct only if the anchor and every pm-set frame in it are."""
  sequences, labels, centres = [], [], []
  for a in anchors:
    d = max([abs(o) for o, _, _ in a.frames], default=0)
    # pm_k compares predictions with labels: 1 (right) or 0 (wrong) against label 1 (a frame
    # that must be right), NO_LABEL where the pm-set has no frame.
    right = np.zeros(2 * d + 1, np.int64)
    present = np.full(2 * d + 1, robustness.NO_LABEL, np.int64)
    for offset, key, frame_labels in ((0, a.key, a.labels), *a.frames):
      right[d + offset] = int(predictions[key] in frame_labels)
      present[d + offset] = 1
    sequences.append(right)
    labels.append(present)
    centres.append([d])
  n = len(anchors)
  counts = {}
  for k in sorted({0, *(int(k) for k in ks)}):
    r = robustness.pm_k(sequences, labels, k, anchors=centres) if n else None
    counts[k] = (int(round(r['pm_k_accuracy'] * n)) if n else 0, n)
  counts['anchor'] = counts[0]
  return counts


# ---------------------------------------------------------------------------------------
# The release.

def dataset_folder(release_dir: str, bench: Benchmark) -> str:
  """The dataset's folder `bench.folder` in `release_dir` (imagenet_vid_ytbb_robust/);
  MissingPathError naming the layout if it or one of its metadata files is missing."""
  root = os.path.join(os.path.expanduser(release_dir), bench.folder) if release_dir else ''
  return datasets.release_folder(
      root, bench.title, 'video_robustness', expected=(LABELS_JSON, PMSETS_JSON),
      layout=(f'imagenet_vid_ytbb_robust/{bench.folder}/{{{LABELS_JSON}, {PMSETS_JSON}, '
              f'{bench.frames}}} (the release of Shankar et al. 2019, imagenet_vid_ytbb_robust'
              f'.tar.gz from the paper\'s website, unpacked; set evaluators.video_robustness'
              f'.release_dir to its imagenet_vid_ytbb_robust folder)'))


def _read_json(folder: str, name: str) -> dict:
  path = os.path.join(folder, name)
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.DatasetError(f'{path}: not a readable JSON file ({e})') from None
  if not isinstance(data, dict) or not data:
    raise errors.DatasetError(f'{path}: expected a non-empty JSON object {{path: [...]}}, got '
                              f'{type(data).__name__} of {len(data)}')
  return data


def read_anchors(folder: str, bench: Benchmark, limit: int = 0) -> list[Anchor]:
  """The anchors of labels.json and pmsets.json (the first `limit` by path, 0: all), each
  with its labels and its pm-set frames' offsets and labels; DatasetError naming the file
  and entry that does not fit the release's format."""
  labels_path, pmsets_path = (os.path.join(folder, n) for n in (LABELS_JSON, PMSETS_JSON))
  labels, pmsets = _read_json(folder, LABELS_JSON), _read_json(folder, PMSETS_JSON)
  num_classes = len(bench.classes)

  def labels_of(key: str, default: frozenset[int] | None = None) -> frozenset[int]:
    value = labels.get(key)
    if value is None:
      if default is None:
        raise errors.DatasetError(f'{labels_path}: no entry for the anchor {key!r} of '
                                  f'{pmsets_path}')
      return default
    if (not isinstance(value, list) or not value
        or any(not isinstance(c, int) or not 0 <= c < num_classes for c in value)):
      raise errors.DatasetError(f'{labels_path}: {key!r} maps to {value!r}; expected a '
                                f'non-empty list of class ids in [0, {num_classes}) '
                                f'({bench.title} classes)')
    return frozenset(value)

  anchors = []
  for key in sorted(pmsets)[:limit or None]:
    frames = pmsets[key]
    number = frame_number(key)
    if number is None or not isinstance(frames, list):
      raise errors.DatasetError(f'{pmsets_path}: {key!r} -> {str(frames)[:80]}; expected '
                                f'"<video>/<frame number>.<ext>": [frame path, ...]')
    own = labels_of(key)
    pm_set = []
    for frame in frames:
      n = frame_number(frame) if isinstance(frame, str) else None
      if n is None or os.path.dirname(frame) != os.path.dirname(key):
        raise errors.DatasetError(f'{pmsets_path}: the pm-set of {key!r} has {frame!r}; '
                                  f'expected frames of the same video, named by number')
      pm_set.append((n - number, frame, labels_of(frame, own)))
    anchors.append(Anchor(key, own, tuple(pm_set)))
  return anchors


def check_class_index(folder: str, bench: Benchmark) -> None:
  """If the release has ImageNet-Vid-Robust's misc/imagenet_vid_class_index.json ({"0":
  [wnid, name], ...}), DatasetError unless its classes are ours, in our order: the ids of
  labels.json index it."""
  path = os.path.join(folder, VID_CLASS_INDEX)
  if bench is not BENCHMARKS['imagenet_vid_robust'] or not os.path.exists(path):
    return
  index = _read_json(folder, VID_CLASS_INDEX)
  theirs = [tuple(index.get(str(i), ('?', '?')))[:1] for i in range(len(index))]
  ours = [(wnid,) for wnid, _ in superclasses.VID_CLASSES]
  if theirs != ours:
    first = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), len(ours))
    raise errors.DatasetError(
        f'{path}: {len(theirs)} classes, class {first} is {index.get(str(first))}; expected '
        f'the 30 ImageNet-VID classes in the order of superclasses.VID_CLASSES '
        f'({first}: {superclasses.VID_CLASSES[min(first, 29)]})')


def frame_paths(folder: str, bench: Benchmark, keys) -> dict[str, str]:
  """The file of each frame key; DatasetError naming the first missing one."""
  out = {}
  for key in keys:
    for sub in bench.frame_dirs:
      path = os.path.join(folder, sub, key)
      if os.path.isfile(path):
        out[key] = path
        break
    else:
      raise errors.DatasetError(
          f'{bench.title}: no frame {key!r} (of {os.path.join(folder, PMSETS_JSON)}) under '
          f'{folder}' + ''.join(f' or {os.path.join(folder, s)}' for s in bench.frame_dirs
                                if s) + '; is the release completely unpacked?')
  return out


def predict_frames(clf: classifier_lib.Classifier, paths: dict[str, str], bench: Benchmark,
                   mesh=None, batch_size: int = 256) -> dict[str, int]:
  """The predicted class of every frame, `batch_size` frames in memory at a time."""
  keys = sorted(paths)
  out = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
    for start in range(0, len(keys), batch_size):
      chunk = keys[start:start + batch_size]
      images = np.stack(list(pool.map(
          lambda k: datasets.read_image_file(paths[k], clf.image_size), chunk)))
      predictions = superclass_predictions(clf.logits(images, mesh, batch_size),
                                           bench.members)
      out.update(zip(chunk, predictions.tolist()))
  return out


def check_label_space(clf: classifier_lib.Classifier, evaluator: str) -> None:
  """ConfigError unless `clf` scores ImageNet's 1,000 classes."""
  space = clf.info.get('label_space')
  if space != classifier_lib.IMAGENET or clf.num_classes != 1000:
    raise errors.ConfigError(
        f'evaluator {evaluator!r} scores a classifier over {classifier_lib.IMAGENET!r} (1000 '
        f'classes); this one is over {space!r} ({clf.num_classes} classes)')


def video_robustness_eval(ctx, options) -> Result:
  """Anchor and pm-k accuracies of the classifier on each benchmark, with intervals."""
  folders = {name: dataset_folder(options.release_dir, BENCHMARKS[name])
             for name in options.benchmarks}
  clf = ctx.classifier(options.classifier)
  check_label_space(clf, 'video_robustness')
  metrics = {}
  for name, folder in folders.items():
    metrics.update(_benchmark_metrics(ctx, clf, name, folder, options))
  return metrics, {}


def _benchmark_metrics(ctx, clf, name: str, folder: str, options) -> dict[str, float]:
  bench = BENCHMARKS[name]
  check_class_index(folder, bench)
  anchors = read_anchors(folder, bench, options.limit)
  keys = {a.key for a in anchors} | {f for a in anchors for _, f, _ in a.frames}
  paths = frame_paths(folder, bench, keys)
  ctx.log(f'{bench.title}: {len(anchors)} anchors, {len(paths)} frames at '
          f'{clf.image_size}px')
  predictions = predict_frames(clf, paths, bench, ctx.mesh, options.batch_size)
  counts = pm_k_counts(anchors, predictions, ks=tuple(options.ks))
  right, n = counts['anchor']
  anchor_acc = right / n
  anchor_low, anchor_high = stats.clopper_pearson(right, n, options.confidence)
  metrics = {}
  for k in (int(k) for k in options.ks):
    k_right, _ = counts[k]
    low, high = stats.clopper_pearson(k_right, n, options.confidence)
    block = {'accuracy': k_right / n, 'ci_low': low, 'ci_high': high,
             'anchor_accuracy': anchor_acc, 'anchor_ci_low': anchor_low,
             'anchor_ci_high': anchor_high, 'drop': anchor_acc - k_right / n}
    for key, value in block.items():
      metrics[f'{name}/pm{k}/{key}'] = float(value)
      ctx.count(f'{name}/pm{k}/{key}', n)
    ctx.log(f'{bench.title}: anchor accuracy {anchor_acc:.4f} [{anchor_low:.4f}, '
            f'{anchor_high:.4f}], pm-{k} {k_right / n:.4f} [{low:.4f}, {high:.4f}] '
            f'({n} anchors)')
  return metrics


VIDEO_ROBUSTNESS = Evaluator(video_robustness_eval, DEFAULTS, check)
