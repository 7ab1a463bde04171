"""Shape bias on the cue-conflict stimuli: does an ImageNet classifier decide by an object's
shape or by its texture?

Geirhos et al. 2019, "ImageNet-trained CNNs are biased towards texture; increasing shape
bias improves accuracy and robustness" (ICLR; github.com/rgeirhos/texture-vs-shape): 1,280
images of 16 entry-level categories, each the shape of one image rendered by style transfer
in the texture of another (stimuli/style-transfer-preprocessed-512/<shape category>/
<shape category><n>-<texture category><m>.png, 80 per category). Romijnders et al. (section
5.2) report the shape fraction of their fine-tuned and co-trained models; VITO (Table 3)
evaluates on the same stimuli.

The protocol, as that repository's README states it and its code implements it:
  1. the classifier's softmax over ImageNet's 1,000 classes is mapped to one of the 16
     categories: the category whose member classes (superclasses.CUE_CONFLICT_MEMBERS, from
     code/helper/human_categories.py) have the highest mean probability
     (ImageNetProbabilitiesTo16ClassesMapping with its default np.mean; ties: the first
     category in sorted order, as its strict '>' keeps the first maximum);
  2. images whose shape and texture categories coincide (no cue conflict) are excluded;
  3. of the rest, a decision is a shape decision if it is the shape category, a texture
     decision if it is the texture category (neither: it counts for neither);
  4. shape bias = shape decisions / (shape decisions + texture decisions).
Shape and texture accuracy are those decisions' fractions of the cue-conflict images.

The stimuli are 224 x 224 and shown whole: each is resized to the classifier's size without
a crop (crop_fraction 1), since a centre crop would cut the outline that carries the shape.
"""

from __future__ import annotations

import concurrent.futures
import os
import re

import numpy as np

from vivi import errors
from vivi.evaluate import datasets, superclasses, video_robustness
from vivi.evaluate.evaluators import Evaluator, Result

CATEGORIES = superclasses.CUE_CONFLICT_CATEGORIES
DEFAULTS = dict(
  classifier='',     # A classifier folder or fine-tuning workdir; '' = imagenet_linear's.
  stimuli_dir='',    # texture-vs-shape's stimuli/style-transfer-preprocessed-512 folder.
  limit=0,           # > 0: only the first N cue-conflict images (sorted by path; smoke runs).
  batch_size=256,
)
LAYOUT = ('stimuli/style-transfer-preprocessed-512/<category>/<shape><n>-<texture><m>.png '
          'for the 16 categories (' + ', '.join(CATEGORIES) + ') of the texture-vs-shape '
          'repository of Geirhos et al. 2019 (git clone it; set evaluators.shape_bias'
          '.stimuli_dir to that style-transfer-preprocessed-512 folder)')
_NAME = re.compile(r'^([a-z]+)(\d+)-([a-z]+)(\d+)\.png$')


def check(options) -> None:
  if options.limit < 0:
    raise ValueError(f'limit={options.limit}: 0 (every image) or more')
  if options.batch_size < 1:
    raise ValueError(f'batch_size={options.batch_size}: must be >= 1')


def category_probabilities(logits: np.ndarray) -> np.ndarray:
  """[N, 16] of ImageNet logits [N, 1000]: the softmax over the 1,000 classes averaged over
  each category's member classes (columns in CATEGORIES order)."""
  logits = np.asarray(logits, np.float64)
  z = np.exp(logits - logits.max(axis=1, keepdims=True))
  probabilities = z / z.sum(axis=1, keepdims=True)
  return np.stack([probabilities[:, list(superclasses.CUE_CONFLICT_MEMBERS[c])].mean(axis=1)
                   for c in CATEGORIES], axis=1)


def decisions(probabilities: np.ndarray) -> np.ndarray:
  """The category index (into CATEGORIES) of each row of `category_probabilities`; ties go
  to the first category."""
  return np.argmax(np.asarray(probabilities), axis=1)


def shape_texture_counts(decided, shapes, textures) -> dict:
  """{'images', 'shape', 'texture'}: the cue-conflict images (shape != texture) among the
  given ones, and how many of their decisions are the shape / the texture category."""
  decided, shapes, textures = (np.asarray(x) for x in (decided, shapes, textures))
  conflict = shapes != textures
  return {'images': int(conflict.sum()),
          'shape': int((conflict & (decided == shapes)).sum()),
          'texture': int((conflict & (decided == textures)).sum())}


def parse_name(name: str) -> tuple[str, str] | None:
  """('cat', 'elephant') of 'cat7-elephant1.png'; None if the name is not a stimulus's."""
  match = _NAME.match(name)
  if not match or match.group(1) not in CATEGORIES or match.group(3) not in CATEGORIES:
    return None
  return match.group(1), match.group(3)


def read_stimuli(folder: str) -> list[tuple[str, int, int]]:
  """(path, shape index, texture index) of every stimulus, sorted by path; DatasetError for a
  PNG whose name does not fit the release's naming or whose shape is not its folder's."""
  out = []
  for category in CATEGORIES:
    sub = os.path.join(folder, category)
    for name in sorted(os.listdir(sub)):
      if not name.lower().endswith('.png'):
        continue
      parsed = parse_name(name)
      if parsed is None or parsed[0] != category:
        raise errors.DatasetError(
            f'{os.path.join(sub, name)}: not a cue-conflict stimulus of {category}/; expected '
            f'{category}<n>-<texture><m>.png with <texture> one of the 16 categories')
      out.append((os.path.join(sub, name), CATEGORIES.index(parsed[0]),
                  CATEGORIES.index(parsed[1])))
  if not out:
    raise errors.DatasetError(f'{folder}: its 16 category folders hold no PNG; expected '
                              f'{LAYOUT}')
  return out


def shape_bias_eval(ctx, options) -> Result:
  """Shape bias, shape and texture accuracy of the classifier on the cue-conflict images."""
  folder = datasets.release_folder(options.stimuli_dir, 'the cue-conflict stimuli',
                                   'shape_bias', expected=CATEGORIES, layout=LAYOUT)
  clf = ctx.classifier(options.classifier)
  video_robustness.check_label_space(clf, 'shape_bias')
  stimuli = [s for s in read_stimuli(folder) if s[1] != s[2]][:options.limit or None]
  if not stimuli:
    raise errors.DatasetError(f'{folder}: no cue-conflict image (every stimulus has the same '
                              f'shape and texture category)')
  ctx.log(f'cue-conflict stimuli: {len(stimuli)} images at {clf.image_size}px')
  decided = []
  with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
    for start in range(0, len(stimuli), options.batch_size):
      chunk = stimuli[start:start + options.batch_size]
      images = np.stack(list(pool.map(
          lambda s: datasets.read_image_file(s[0], clf.image_size, crop_fraction=1.0), chunk)))
      logits = clf.logits(images, ctx.mesh, options.batch_size)
      decided.append(decisions(category_probabilities(logits)))
  decided = np.concatenate(decided)
  counts = shape_texture_counts(decided, [s[1] for s in stimuli], [s[2] for s in stimuli])
  n, shape, texture = counts['images'], counts['shape'], counts['texture']
  metrics = {'shape_bias': shape / (shape + texture) if shape + texture else float('nan'),
             'shape_accuracy': shape / n, 'texture_accuracy': texture / n,
             'images': float(n), 'shape_decisions': float(shape),
             'texture_decisions': float(texture)}
  ctx.count('shape_bias', shape + texture)
  for key in ('shape_accuracy', 'texture_accuracy'):
    ctx.count(key, n)
  ctx.log(f'shape bias {metrics["shape_bias"]:.4f} ({shape} shape, {texture} texture '
          f'decisions of {n} cue-conflict images)')
  return metrics, {}


SHAPE_BIAS = Evaluator(shape_bias_eval, DEFAULTS, check)
