"""ImageNet robustness benchmarks: how well does an ImageNet classifier hold up on test sets
of the same 1,000 classes collected or rendered differently? Three evaluators, each scoring
`ctx.classifier(options.classifier)` (a classifier over 'imagenet2012', TFDS's label order,
which is the devkit's sorted synset order and PyTorch's):

`VARIANTS` ('imagenet_variants'): top-1 accuracy on natural distribution shifts, TFDS
datasets under config.data_dir:
  * imagenet2012 'validation': the clean reference, 50,000 images.
  * imagenet_v2 'test' (Recht et al. 2019, "Do ImageNet classifiers generalize to ImageNet?",
    github.com/modestyachts/ImageNetV2): 10,000 images collected anew by ImageNet's own
    procedure; TFDS's default config is the paper's main MatchedFrequency set
    ('imagenet_v2/threshold-0.7' and 'imagenet_v2/topimages' are the other two).
  * imagenet_a 'test' (Hendrycks et al. 2021, "Natural adversarial examples",
    github.com/hendrycks/natural-adv-examples): 7,500 real photographs of 200 classes that
    ResNets misclassify.
  * imagenet_r 'test' (Hendrycks et al. 2021, "The many faces of robustness",
    github.com/hendrycks/imagenet-r): 30,000 renditions (art, cartoons, sculptures, ...) of
    200 classes.
  * imagenet_sketch 'test' (Wang et al. 2019, "Learning robust global representations by
    penalizing local predictive power", github.com/HaohanWang/ImageNet-Sketch): 50,889
    black-and-white sketches of the 1,000 classes.
ImageNet-A and -R cover 200 classes each (different ones). Their TFDS labels are ImageNet's
1,000-way indices (the builders' ClassLabel is imagenet2012's labels.txt, each image labelled
by its folder's wnid), and they are scored as their authors' eval.py scores them: the 200
columns of the 1,000-way logits (`output[:, indices_in_1k]`, `output[:, imagenet_r_mask]`),
argmax over those (`subset_predictions`). IMAGENET_A_CLASSES and IMAGENET_R_CLASSES are those
repositories' subsets in index form (natural-adv-examples eval.py `thousand_k_to_200`;
imagenet-r eval.py `imagenet_r_wnids` over its `all_wnids`, which is TFDS's order).

`CORRUPTIONS` ('imagenet_c'): ImageNet-C (Hendrycks & Dietterich 2019, "Benchmarking neural
network robustness to common corruptions and perturbations", ICLR;
github.com/hendrycks/robustness): 15 corruptions x 5 severities of the 50,000 validation
images, TFDS imagenet2012_corrupted/<corruption>_<severity> ('validation'). Section 3 of the
paper: with E_{s,c} the top-1 error at severity s of corruption c,
    CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c},   mCE = mean of CE_c over the corruptions,
AlexNet's errors (ALEXNET_ERRORS) making corruptions of different difficulty comparable.
Also the un-normalised mean error (the repository's ImageNet-C/test.py "mCE (unnormalized by
AlexNet errors)") and each corruption's error and CE. The images are the 224-px centre crop
the corruptions were applied to, so they are resized whole (crop_fraction 1), as test.py
feeds them (CenterCrop(224) of a 224-px image). TFDS regenerates the corruptions from the
validation images with the benchmark's code (release 3.1.0); the released JPEG tarballs may
differ slightly. With `dcc_dir` the same evaluator scores ImageNet-3DCC (Kar et al. 2022, "3D
common corruptions and data augmentation", CVPR; github.com/EPFL-VILAB/3DCommonCorruptions):
12 geometry-aware corruptions x 5 severities of the validation images in its release layout
<corruption>/<severity>/<wnid>/<file>.JPEG; it has no AlexNet normalisation, so its numbers
are the mean top-1 error per corruption (over severities) and over corruptions.

`OBJECTNET` ('objectnet'): ObjectNet (Barbu et al. 2019, "ObjectNet: A large-scale bias-
controlled dataset for pushing the limits of object recognition models", NeurIPS): 50,000
photographs of 313 household object classes with controlled rotations, backgrounds and
viewpoints, 113 of the classes overlapping ImageNet's; read from its release folder
objectnet-1.0/ (`read_mappings`, `OBJECTNET_LAYOUT`). The protocol:
  1. every image carries a 1-pixel red border (the release's license requires it on any
     image posted); `border` pixels are cut from each side before the resize (2: what the
     release's own loader crops, github.com/abarbu/objectnet-template-pytorch,
     objectnet_pytorch_dataloader.py);
  2. only images of the 113 classes that overlap ImageNet count (an overlapping class maps
     to one or more ImageNet classes in mappings/objectnet_to_imagenet_1k.json);
  3. `overlap_only=True`: the prediction is the argmax over the ImageNet classes that some
     overlapping class maps to (the others cannot be predicted), right if it is one of the
     image's class's ImageNet classes; this is the ImageNet-class-subset scoring of the
     robustness testbed (Taori et al. 2020, github.com/modestyachts/imagenet-testbed; its
     max over each class's members has the same argmax). `overlap_only=False`: the argmax
     over all 1,000 classes, a class outside the overlap counting as wrong (how the release's
     template objectnet_eval.py maps PyTorch predictions to ObjectNet ids).
Top-1 and top-5 (Barbu et al. report both). Images are resized and centre-cropped
(`crop_fraction` 0.875: the standard ImageNet evaluation crop, as every other evaluator here
and the testbed; 1.0: the release template's Resize(224), CenterCrop(224)).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from vivi import errors
from vivi.evaluate import datasets, video_robustness
from vivi.evaluate.evaluators import Evaluator, Result
from vivi.lazy_import import tensorflow as tf
from vivi.lazy_import import tensorflow_datasets as tfds

NUM_CLASSES = 1000

# ---------------------------------------------------------------------------------------
# The 200-class subsets (ImageNet indices in TFDS's order).

# ImageNet-A: the keys k of natural-adv-examples eval.py's `thousand_k_to_200` with a value
# other than -1 (its `indices_in_1k`); the value of the i-th is i.
IMAGENET_A_CLASSES = (
  6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70, 71, 76, 79, 89, 90, 94, 96, 97,
  99, 105, 107, 108, 110, 113, 124, 125, 130, 132, 143, 144, 150, 151, 207, 234, 235, 254, 277,
  283, 287, 291, 295, 298, 301, 306, 307, 308, 309, 310, 311, 313, 314, 315, 317, 319, 323, 324,
  326, 327, 330, 334, 335, 336, 347, 361, 363, 372, 378, 386, 397, 400, 401, 402, 404, 407, 411,
  416, 417, 420, 425, 428, 430, 437, 438, 445, 456, 457, 461, 462, 470, 472, 483, 486, 488, 492,
  496, 514, 516, 528, 530, 539, 542, 543, 549, 552, 557, 561, 562, 569, 572, 573, 575, 579, 589,
  606, 607, 609, 614, 626, 627, 640, 641, 642, 643, 658, 668, 677, 682, 684, 687, 701, 704, 719,
  736, 746, 749, 752, 758, 763, 765, 768, 773, 774, 776, 779, 780, 786, 792, 797, 802, 803, 804,
  813, 815, 820, 823, 831, 833, 835, 839, 845, 847, 850, 859, 862, 870, 879, 880, 888, 890, 897,
  900, 907, 913, 924, 932, 933, 934, 937, 943, 945, 947, 951, 954, 956, 957, 959, 971, 972, 980,
  981, 984, 986, 987, 988,
)
# ImageNet-R: the positions in imagenet-r eval.py's `all_wnids` of its `imagenet_r_wnids`
# (the `imagenet_r_indices` its comment lists).
IMAGENET_R_CLASSES = (
  1, 2, 4, 6, 8, 9, 11, 13, 22, 23, 26, 29, 31, 39, 47, 63, 71, 76, 79, 84, 90, 94, 96, 97, 99,
  100, 105, 107, 113, 122, 125, 130, 132, 144, 145, 147, 148, 150, 151, 155, 160, 161, 162, 163,
  171, 172, 178, 187, 195, 199, 203, 207, 208, 219, 231, 232, 234, 235, 242, 245, 247, 250, 251,
  254, 259, 260, 263, 265, 267, 269, 276, 277, 281, 288, 289, 291, 292, 293, 296, 299, 301, 308,
  309, 310, 311, 314, 315, 319, 323, 327, 330, 334, 335, 337, 338, 340, 341, 344, 347, 353, 355,
  361, 362, 365, 366, 367, 368, 372, 388, 390, 393, 397, 401, 407, 413, 414, 425, 428, 430, 435,
  437, 441, 447, 448, 457, 462, 463, 469, 470, 471, 472, 476, 483, 487, 515, 546, 555, 558, 570,
  579, 583, 587, 593, 594, 596, 609, 613, 617, 621, 629, 637, 657, 658, 701, 717, 724, 763, 768,
  774, 776, 779, 780, 787, 805, 812, 815, 820, 824, 833, 847, 852, 866, 875, 883, 889, 895, 907,
  928, 931, 932, 933, 934, 936, 937, 943, 945, 947, 948, 949, 951, 953, 954, 957, 963, 965, 967,
  980, 981, 983, 988,
)


@dataclasses.dataclass(frozen=True)
class Benchmark:
  title: str
  tfds_name: str
  split: str
  classes: tuple[int, ...] | None = None   # The ImageNet classes it covers; None: all.


BENCHMARKS = {
  'imagenet2012': Benchmark('ImageNet validation', 'imagenet2012', 'validation'),
  'imagenet_v2': Benchmark('ImageNetV2 MatchedFrequency', 'imagenet_v2', 'test'),
  'imagenet_v2/threshold-0.7': Benchmark('ImageNetV2 Threshold0.7',
                                       'imagenet_v2/threshold-0.7', 'test'),
  'imagenet_v2/topimages': Benchmark('ImageNetV2 TopImages', 'imagenet_v2/topimages', 'test'),
  'imagenet_a': Benchmark('ImageNet-A', 'imagenet_a', 'test', IMAGENET_A_CLASSES),
  'imagenet_r': Benchmark('ImageNet-R', 'imagenet_r', 'test', IMAGENET_R_CLASSES),
  'imagenet_sketch': Benchmark('ImageNet-Sketch', 'imagenet_sketch', 'test'),
}
VARIANTS_DEFAULTS = dict(
  classifier='',     # A classifier folder or fine-tuning workdir; '' = imagenet_linear's.
  # BENCHMARKS keys (named `benchmarks`, as the suite checks a `datasets` option against its
  # own probe data sets).
  benchmarks=('imagenet2012', 'imagenet_v2', 'imagenet_a', 'imagenet_r', 'imagenet_sketch'),
  limit=0,           # > 0: only the first N images of each (in the dataset's order; smoke runs).
  batch_size=256,
)

# ---------------------------------------------------------------------------------------
# ImageNet-C's normalisation: AlexNet's top-1 error (a fraction) at severities 1..5 of each
# of the 15 benchmark corruptions, in the paper's order (noise, blur, weather, digital).
# Their means over the five severities are the per-corruption errors the ImageNet-C
# evaluations normalise by (github.com/google-research/augmix, imagenet.py ALEXNET_ERR, "Raw
# AlexNet errors taken from https://github.com/hendrycks/robustness": 0.886428 for Gaussian
# noise, ..., 0.606500 for JPEG). The per-severity values are not in the paper; these are the
# ones timm-based ImageNet-C evaluation code circulates (`imagenetc_alexnet_error_rates_list`).
# Each is a count of the 50,000 validation images (a multiple of 1/50,000) and their means
# reproduce AugMix's to 1e-6 (tests/evaluate/test_imagenet_robustness.py checks both). With
# all five severities, CE_c depends on their sum alone, i.e. on the published means.
ALEXNET_ERRORS = {
  'gaussian_noise': (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
  'shot_noise': (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
  'impulse_noise': (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
  'defocus_blur': (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
  'glass_blur': (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
  'motion_blur': (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
  'zoom_blur': (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
  'snow': (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
  'frost': (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
  'fog': (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
  'brightness': (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
  'contrast': (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
  'elastic_transform': (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
  'pixelate': (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
  'jpeg_compression': (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}
BENCHMARK_CORRUPTIONS = tuple(ALEXNET_ERRORS)
# The paper's four held-out corruptions (TFDS has them too): errors only, no CE (AlexNet's
# errors on them are not published with the others).
EXTRA_CORRUPTIONS = ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
SEVERITIES = (1, 2, 3, 4, 5)
# ImageNet-3DCC's 12 corruptions (the release's folder names; RobustBench's
# CORRUPTIONS_3DCC).
DCC_CORRUPTIONS = ('near_focus', 'far_focus', 'bit_error', 'color_quant', 'flash', 'fog_3d',
                   'h265_abr', 'h265_crf', 'iso_noise', 'low_light', 'xy_motion_blur',
                   'z_motion_blur')
DCC_LAYOUT = ('<corruption>/<severity 1-5>/<wnid>/<file>.JPEG with <corruption> among '
              + ', '.join(DCC_CORRUPTIONS) + ' (ImageNet-3DCC of Kar et al. 2022, from '
              'datasets.epfl.ch/3dcc; set evaluators.imagenet_c.dcc_dir to the folder that '
              'holds the corruption folders)')
CORRUPTIONS_DEFAULTS = dict(
  classifier='',     # A classifier folder or fine-tuning workdir; '' = imagenet_linear's.
  corruptions=BENCHMARK_CORRUPTIONS,   # ImageNet-C (TFDS); () scores ImageNet-3DCC alone.
  severities=SEVERITIES,               # The mCE of the paper takes all five.
  dcc_dir='',        # ImageNet-3DCC's release folder; '' = not scored.
  dcc_corruptions=DCC_CORRUPTIONS,
  limit=0,           # > 0: only the first N images of each corruption and severity.
  batch_size=256,
)

# ---------------------------------------------------------------------------------------
# ObjectNet's release.

OBJECTNET_IMAGES = 'images'
FOLDER_TO_LABEL = os.path.join('mappings', 'folder_to_objectnet_label.json')
OBJECTNET_TO_IMAGENET = os.path.join('mappings', 'objectnet_to_imagenet_1k.json')
PYTORCH_TO_2012_ID = os.path.join('mappings', 'pytorch_to_imagenet_2012_id.json')
IMAGENET_2012_LABELS = os.path.join('mappings', 'imagenet_to_label_2012_v2')
OBJECTNET_FILES = (OBJECTNET_IMAGES, FOLDER_TO_LABEL, OBJECTNET_TO_IMAGENET, PYTORCH_TO_2012_ID,
                   IMAGENET_2012_LABELS)
OBJECTNET_LAYOUT = (
    'objectnet-1.0/{images/<class folder>/<file>.png, mappings/folder_to_objectnet_label.json '
    '({folder: ObjectNet class}), mappings/objectnet_to_imagenet_1k.json ({ObjectNet class: '
    '"ImageNet class name; ..."}, the 113 overlapping classes), mappings/imagenet_to_label_'
    '2012_v2 (the 1,000 ImageNet class names, one a line, by ILSVRC2012 id), mappings/'
    'pytorch_to_imagenet_2012_id.json ({PyTorch index: ILSVRC2012 id})} (objectnet-1.0.zip '
    'from objectnet.dev, unpacked; set evaluators.objectnet.objectnet_dir to its '
    'objectnet-1.0 folder)')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
OBJECTNET_DEFAULTS = dict(
  classifier='',       # A classifier folder or fine-tuning workdir; '' = imagenet_linear's.
  objectnet_dir='',    # The unpacked release's objectnet-1.0 folder.
  overlap_only=True,   # Predict among the overlapping classes' ImageNet classes only.
  border=2,            # Pixels cut from each side (the 1-pixel red border; the release's
                       # loader cuts 2).
  crop_fraction=datasets.CROP_FRACTION,   # 1.0: the release template's resize and crop.
  limit=0,             # > 0: only the first N images (sorted by path; smoke runs).
  batch_size=256,
)


# ---------------------------------------------------------------------------------------
# Checks.

def _check_common(options) -> None:
  if options.limit < 0:
    raise ValueError(f'limit={options.limit}: 0 (every image) or more')
  if options.batch_size < 1:
    raise ValueError(f'batch_size={options.batch_size}: must be >= 1')


def _check_names(key: str, names, valid, allow_empty: bool = False) -> None:
  names = tuple(names)
  if ((not names and not allow_empty) or len(set(names)) < len(names)
      or not set(names) <= set(valid)):
    raise ValueError(f'{key}={names}: {"zero or " * allow_empty}one or more of '
                     f'{tuple(valid)}, each once')


def check_variants(options) -> None:
  _check_names('benchmarks', options.benchmarks, BENCHMARKS)
  _check_common(options)


def check_corruptions(options) -> None:
  _check_names('corruptions', options.corruptions, BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS,
               allow_empty=True)
  _check_names('severities', options.severities, SEVERITIES)
  _check_names('dcc_corruptions', options.dcc_corruptions, DCC_CORRUPTIONS)
  if not options.corruptions and not options.dcc_dir:
    raise ValueError('corruptions=() and no dcc_dir: nothing to score (name ImageNet-C '
                     'corruptions, or set dcc_dir to ImageNet-3DCC)')
  _check_common(options)


def check_objectnet(options) -> None:
  if int(options.border) != options.border or options.border < 0:
    raise ValueError(f'border={options.border}: an integer >= 0 (pixels cut from each side)')
  if not 0 < options.crop_fraction <= 1:
    raise ValueError(f'crop_fraction={options.crop_fraction}: must be in (0, 1]')
  _check_common(options)


# ---------------------------------------------------------------------------------------
# Scoring (pure).

def subset_predictions(logits: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
  """The ImageNet index of each row's prediction when only `class_indices` (ImageNet
  indices) can be predicted: the argmax over those columns of logits [N, 1000] (ties: the
  first in `class_indices` order), mapped back to the column's ImageNet index."""
  indices = np.asarray(class_indices, np.int64)
  return indices[np.argmax(np.asarray(logits)[:, indices], axis=1)]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
  """[N, k] column indices of the k highest scores of each row, best first (ties: the lower
  column first, so column 0 of the result is np.argmax's)."""
  return np.argsort(-np.asarray(scores, np.float64), axis=1, kind='stable')[:, :k]


def corruption_errors(errors_: dict[str, dict[int, float]]) -> dict:
  """ImageNet-C's numbers of top-1 errors {corruption: {severity: error}} (Hendrycks &
  Dietterich 2019, section 3): {'error': {c: mean over its severities}, 'ce': {c: CE_c =
  sum_s E_{s,c} / sum_s E^AlexNet_{s,c}} for the 15 benchmark corruptions, 'mce': the mean
  CE_c, 'mean_error': the mean error over the same corruptions} (NaN where none is one)."""
  error = {c: float(np.mean(list(e.values()))) for c, e in errors_.items()}
  ce = {c: sum(e.values()) / sum(ALEXNET_ERRORS[c][s - 1] for s in e)
        for c, e in errors_.items() if c in ALEXNET_ERRORS}
  benchmark = [c for c in errors_ if c in ALEXNET_ERRORS]
  return {'error': error, 'ce': ce,
          'mce': float(np.mean([ce[c] for c in benchmark])) if benchmark else float('nan'),
          'mean_error': (float(np.mean([error[c] for c in benchmark])) if benchmark
                         else float('nan'))}


@dataclasses.dataclass(frozen=True)
class ObjectNetClasses:
  """The ObjectNet classes that overlap ImageNet, sorted by image folder."""
  folders: tuple[str, ...]                 # Their folders under images/.
  names: tuple[str, ...]                   # Their ObjectNet names.
  members: tuple[tuple[int, ...], ...]     # The ImageNet indices (TFDS order) of each.

  @property
  def imagenet_classes(self) -> tuple[int, ...]:
    """Every ImageNet class some overlapping class maps to, sorted."""
    return tuple(sorted({i for m in self.members for i in m}))


def objectnet_hits(logits: np.ndarray, labels: Sequence[int], classes: ObjectNetClasses,
                   overlap_only: bool = True, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """(top-1 right, top-k right) [N] bool of ImageNet logits [N, 1000] for images of the
  overlapping classes `labels` (indices into `classes`): a prediction (an ImageNet class;
  with `overlap_only` one that some overlapping class maps to) is right when it is one of
  the image's class's ImageNet classes."""
  logits = np.asarray(logits, np.float64)
  allowed = (np.asarray(classes.imagenet_classes, np.int64) if overlap_only
             else np.arange(logits.shape[1]))
  predicted = allowed[top_k(logits[:, allowed], min(k, len(allowed)))]
  members = [set(classes.members[c]) for c in labels]
  right = np.array([[p in m for p in row] for row, m in zip(predicted, members)], bool)
  right = right.reshape(len(labels), -1)
  return right[:, 0], right.any(axis=1)


# ---------------------------------------------------------------------------------------
# Reading the data.

def _read_json(path: str, what: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise errors.DatasetError(f'{path}: not a readable JSON file ({e}); expected {what}'
                              ) from None


def read_mappings(folder: str) -> ObjectNetClasses:
  """The overlapping classes of an ObjectNet release folder (objectnet-1.0), from its four
  mapping files (OBJECTNET_LAYOUT): each ImageNet class name of objectnet_to_imagenet_1k.json
  is a line of imagenet_to_label_2012_v2 (its ILSVRC2012 id, from 0), which
  pytorch_to_imagenet_2012_id.json maps back to the PyTorch index, TFDS's. DatasetError
  naming the file and entry that does not fit."""
  path = lambda name: os.path.join(folder, name)
  to_label = _read_json(path(FOLDER_TO_LABEL), '{image folder: ObjectNet class}')
  to_imagenet = _read_json(path(OBJECTNET_TO_IMAGENET),
                           '{ObjectNet class: "ImageNet class name; ..."}')
  to_2012 = _read_json(path(PYTORCH_TO_2012_ID), '{"PyTorch index": ILSVRC2012 id}')
  for name, data in ((FOLDER_TO_LABEL, to_label), (OBJECTNET_TO_IMAGENET, to_imagenet),
                     (PYTORCH_TO_2012_ID, to_2012)):
    if not isinstance(data, dict) or not data:
      raise errors.DatasetError(f'{path(name)}: expected a non-empty JSON object')
  try:
    pytorch_of = {int(v): int(k) for k, v in to_2012.items()}
  except (TypeError, ValueError):
    pytorch_of = {}
  if sorted(pytorch_of) != list(range(NUM_CLASSES)) or \
      sorted(pytorch_of.values()) != list(range(NUM_CLASSES)):
    raise errors.DatasetError(f'{path(PYTORCH_TO_2012_ID)}: expected {NUM_CLASSES} entries '
                              f'"index": id, a one-to-one map of 0..{NUM_CLASSES - 1} onto '
                              f'itself')
  with open(path(IMAGENET_2012_LABELS)) as f:
    names = [line.strip() for line in f if line.strip()]
  if len(names) != NUM_CLASSES:
    raise errors.DatasetError(f'{path(IMAGENET_2012_LABELS)}: {len(names)} class names; '
                              f'expected {NUM_CLASSES}, one a line')
  ids_of: dict[str, list[int]] = {}
  for i, name in enumerate(names):
    ids_of.setdefault(name, []).append(i)
  folder_of = {label: f for f, label in to_label.items()}
  out = []
  for label, imagenet_names in to_imagenet.items():
    if label not in folder_of:
      raise errors.DatasetError(f'{path(OBJECTNET_TO_IMAGENET)}: class {label!r} has no '
                                f'folder in {path(FOLDER_TO_LABEL)}')
    members = []
    for name in str(imagenet_names).split('; '):
      ids = ids_of.get(name.strip(), [])
      if len(ids) != 1:   # 'crane' is the name of two classes (bird, machine).
        raise errors.DatasetError(
            f'{path(OBJECTNET_TO_IMAGENET)}: {label!r} maps to {name!r}, which is '
            f'{"no" if not ids else "more than one"} line of {path(IMAGENET_2012_LABELS)}')
      members.append(pytorch_of[ids[0]])
    out.append((folder_of[label], label, tuple(sorted(members))))
  out.sort()
  return ObjectNetClasses(tuple(f for f, _, _ in out), tuple(n for _, n, _ in out),
                          tuple(m for _, _, m in out))


def objectnet_images(folder: str, classes: ObjectNetClasses) -> list[tuple[str, int]]:
  """(path, class index into `classes`) of every image of an overlapping class, sorted by
  path; DatasetError for a class folder that is missing."""
  out = []
  for c, sub in enumerate(classes.folders):
    root = os.path.join(folder, OBJECTNET_IMAGES, sub)
    if not os.path.isdir(root):
      raise errors.DatasetError(f'ObjectNet: no folder {root} for the class '
                                f'{classes.names[c]!r}; is the release completely unpacked?')
    out.extend((os.path.join(root, name), c) for name in sorted(os.listdir(root))
               if name.lower().endswith(IMAGE_EXTENSIONS))
  return sorted(out)


def read_objectnet_image(path: str, image_size: int, border: int = 2,
                         crop_fraction: float = datasets.CROP_FRACTION) -> np.ndarray:
  """uint8 [S, S, 3] of an ObjectNet image: `border` pixels cut from each side, then
  `datasets.resize_center_crop`."""
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  if border:
    image = image[border:-border, border:-border]
  return datasets.resize_center_crop(image, image_size, crop_fraction).numpy()


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
  """ImageNet's 1,000 wnids in TFDS's label order (imagenet2012's labels.txt)."""
  return tuple(tfds.builder('imagenet2012').info.features['label'].names)


def dcc_images(folder: str, corruption: str, severity: int) -> list[tuple[str, int]]:
  """(path, ImageNet index) of the ImageNet-3DCC images of one corruption and severity,
  sorted by path; DatasetError for a folder that is not a wnid."""
  root = os.path.join(folder, corruption, str(severity))
  index = {w: i for i, w in enumerate(imagenet_wnids())}
  out = []
  for wnid in sorted(os.listdir(root)):
    if not os.path.isdir(os.path.join(root, wnid)):
      continue
    if wnid not in index:
      raise errors.DatasetError(f'{os.path.join(root, wnid)}: not an ImageNet wnid folder; '
                                f'expected {DCC_LAYOUT}')
    out.extend((os.path.join(root, wnid, name), index[wnid])
               for name in sorted(os.listdir(os.path.join(root, wnid)))
               if name.lower().endswith(IMAGE_EXTENSIONS))
  if not out:
    raise errors.DatasetError(f'{root}: no images; expected {DCC_LAYOUT}')
  return out


def _folder_hits(ctx, clf, items: list[tuple[str, int]], read: Callable[[str], np.ndarray],
                 score: Callable, batch_size: int) -> np.ndarray:
  """`score(logits, labels)` (bool arrays, concatenated) over the images of `items`, read
  by `read(path)` in threads, `batch_size` in memory at a time."""
  out = []
  workers = min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    for start in range(0, len(items), batch_size):
      chunk = items[start:start + batch_size]
      images = np.stack(list(pool.map(lambda item: read(item[0]), chunk)))
      logits = clf.logits(images, ctx.mesh, batch_size)
      out.append(np.asarray(score(logits, np.array([label for _, label in chunk])), bool))
  return np.concatenate(out, axis=-1) if out else np.zeros(0, bool)


def _tfds_correct(ctx, clf, builder, split: str, options, crop_fraction: float,
                  classes: tuple[int, ...] | None = None) -> tuple[int, int]:
  """(right, images) of top-1 predictions on a TFDS split of ImageNet labels: argmax over
  all 1,000 classes, or over `classes` (`subset_predictions`)."""
  label = builder.info.features['label']
  if getattr(label, 'num_classes', None) != NUM_CLASSES:
    raise errors.DatasetError(f'{builder.name}: labels of {getattr(label, "num_classes", "?")} '
                              f'classes; expected ImageNet\'s {NUM_CLASSES}')
  if split not in builder.info.splits:
    raise errors.DatasetError(f'{builder.name} under {builder.data_dir}: no split {split!r} '
                              f'(has {sorted(builder.info.splits)})')
  prepare = lambda ex: (datasets.resize_center_crop(ex['image'], clf.image_size, crop_fraction),
                        ex['label'])
  right = n = 0
  for images, labels in datasets.tfds_examples(builder, split, prepare, options.batch_size,
                                               options.limit or None):
    logits = clf.logits(images, ctx.mesh, options.batch_size)
    if classes is None:
      predicted = np.argmax(logits, axis=1)
    else:
      outside = labels[~np.isin(labels, classes)]
      if len(outside):
        raise errors.DatasetError(
            f'{builder.name}: an image of class {outside[0]} ({label.names[outside[0]]}), '
            f'which is not one of its {len(classes)} classes')
      predicted = subset_predictions(logits, classes)
    right += int((predicted == labels).sum())
    n += len(labels)
  if not n:
    raise errors.DatasetError(f'{builder.name} under {builder.data_dir}: {split!r} has no '
                              f'images')
  return right, n


# ---------------------------------------------------------------------------------------
# The evaluators.

def _classifier(ctx, options, evaluator: str):
  clf = ctx.classifier(options.classifier)
  video_robustness.check_label_space(clf, evaluator)
  return clf


def variants_eval(ctx, options) -> Result:
  """Top-1 accuracy on each of `benchmarks` (BENCHMARKS)."""
  data_dir = ctx.config.get('data_dir')
  builders = {name: datasets.tfds_builder(BENCHMARKS[name].tfds_name, data_dir,
                                          'imagenet_variants')
              for name in options.benchmarks}
  clf = _classifier(ctx, options, 'imagenet_variants')
  metrics = {}
  for name, builder in builders.items():
    bench = BENCHMARKS[name]
    right, n = _tfds_correct(ctx, clf, builder, bench.split, options,
                             datasets.CROP_FRACTION, bench.classes)
    metrics[f'{name}/top1'] = right / n
    ctx.count(f'{name}/top1', n)
    among = f', predicted among its {len(bench.classes)} classes' if bench.classes else ''
    ctx.log(f'{bench.title}: top-1 {right / n:.4f} ({right} of {n} images{among}; '
            f'{clf.image_size}px)')
  return metrics, {}


def _dcc_metrics(ctx, clf, options) -> dict[str, float]:
  folder = datasets.release_folder(
      options.dcc_dir, 'ImageNet-3DCC', 'imagenet_c',
      expected=[os.path.join(c, str(s)) for c in options.dcc_corruptions
                for s in options.severities], layout=DCC_LAYOUT)
  read = lambda path: datasets.read_image_file(path, clf.image_size, crop_fraction=1.0)
  score = lambda logits, labels: np.argmax(logits, axis=1) == labels
  metrics, total = {}, 0
  for c in options.dcc_corruptions:
    errs, n = [], 0
    for s in options.severities:
      items = dcc_images(folder, c, s)[:options.limit or None]
      hits = _folder_hits(ctx, clf, items, read, score, options.batch_size)
      errs.append(1 - hits.mean())
      n += len(hits)
      ctx.log(f'ImageNet-3DCC {c} severity {s}: error {errs[-1]:.4f} ({len(hits)} images)')
    metrics[f'3dcc/{c}/error'] = float(np.mean(errs))
    ctx.count(f'3dcc/{c}/error', n)
    total += n
  metrics['3dcc/mean_error'] = float(np.mean([metrics[f'3dcc/{c}/error']
                                              for c in options.dcc_corruptions]))
  ctx.count('3dcc/mean_error', total)
  ctx.log(f'ImageNet-3DCC: mean error {metrics["3dcc/mean_error"]:.4f} over '
          f'{len(options.dcc_corruptions)} corruptions x severities {tuple(options.severities)}')
  return metrics


def corruptions_eval(ctx, options) -> Result:
  """ImageNet-C's mCE, mean error and per-corruption errors and CEs (and ImageNet-3DCC's
  errors with `dcc_dir`)."""
  data_dir = ctx.config.get('data_dir')
  builders = {(c, s): datasets.tfds_builder(f'imagenet2012_corrupted/{c}_{s}', data_dir,
                                            'imagenet_c')
              for c in options.corruptions for s in options.severities}
  if options.dcc_dir:   # Its folder checked before the classifier is loaded.
    datasets.release_folder(options.dcc_dir, 'ImageNet-3DCC', 'imagenet_c', layout=DCC_LAYOUT)
  clf = _classifier(ctx, options, 'imagenet_c')
  errors_, counts = {}, {}
  for (c, s), builder in builders.items():
    right, n = _tfds_correct(ctx, clf, builder, 'validation', options, 1.0)
    errors_.setdefault(c, {})[s] = 1 - right / n
    counts[c] = counts.get(c, 0) + n
    ctx.log(f'ImageNet-C {c} severity {s}: error {1 - right / n:.4f} ({n} images)')
  metrics = {}
  if errors_:
    scores = corruption_errors(errors_)
    for c in errors_:
      metrics[f'{c}/error'] = scores['error'][c]
      ctx.count(f'{c}/error', counts[c])
      if c in scores['ce']:
        metrics[f'{c}/ce'] = scores['ce'][c]
        ctx.count(f'{c}/ce', counts[c])
    benchmark = [c for c in errors_ if c in ALEXNET_ERRORS]
    if benchmark:
      metrics['mce'], metrics['mean_error'] = scores['mce'], scores['mean_error']
      for key in ('mce', 'mean_error'):
        ctx.count(key, sum(counts[c] for c in benchmark))
      partial = (len(benchmark) < len(BENCHMARK_CORRUPTIONS)
                 or tuple(sorted(options.severities)) != SEVERITIES)
      ctx.log(f'ImageNet-C: mCE {scores["mce"]:.4f}, mean error {scores["mean_error"]:.4f} '
              f'over {len(benchmark)} corruptions x severities {tuple(options.severities)}'
              + (' (not the benchmark\'s 15 x 5: a partial mCE)' if partial else ''))
  if options.dcc_dir:
    metrics.update(_dcc_metrics(ctx, clf, options))
  return metrics, {}


def objectnet_eval(ctx, options) -> Result:
  """Top-1 and top-5 accuracy on ObjectNet's images of the classes overlapping ImageNet."""
  folder = datasets.release_folder(options.objectnet_dir, 'ObjectNet', 'objectnet',
                                   expected=OBJECTNET_FILES, layout=OBJECTNET_LAYOUT)
  classes = read_mappings(folder)
  items = objectnet_images(folder, classes)[:options.limit or None]
  if not items:
    raise errors.DatasetError(f'{os.path.join(folder, OBJECTNET_IMAGES)}: no image of the '
                              f'{len(classes.folders)} classes overlapping ImageNet')
  clf = _classifier(ctx, options, 'objectnet')
  ctx.log(f'ObjectNet: {len(items)} images of {len(classes.folders)} classes overlapping '
          f'ImageNet ({len(classes.imagenet_classes)} ImageNet classes) at {clf.image_size}px')
  read = lambda path: read_objectnet_image(path, clf.image_size, int(options.border),
                                           options.crop_fraction)
  score = lambda logits, labels: np.stack(objectnet_hits(logits, labels, classes,
                                                         options.overlap_only))
  hits = _folder_hits(ctx, clf, items, read, score, options.batch_size)
  n = hits.shape[1]
  metrics = {'top1': float(hits[0].mean()), 'top5': float(hits[1].mean()),
             'images': float(n), 'classes': float(len(classes.folders))}
  for key in ('top1', 'top5'):
    ctx.count(key, n)
  ctx.log(f'ObjectNet: top-1 {metrics["top1"]:.4f}, top-5 {metrics["top5"]:.4f} ({n} images; '
          f'predictions among {"the overlapping" if options.overlap_only else "all"} ImageNet '
          f'classes)')
  return metrics, {}


VARIANTS = Evaluator(variants_eval, VARIANTS_DEFAULTS, check_variants)
CORRUPTIONS = Evaluator(corruptions_eval, CORRUPTIONS_DEFAULTS, check_corruptions)
OBJECTNET = Evaluator(objectnet_eval, OBJECTNET_DEFAULTS, check_objectnet)
