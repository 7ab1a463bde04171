"""What the evaluators read: data computed once per suite, and features once per encoder.

A `DataCache` belongs to one `suite.Suite` and lives as long as it does: the training loop
probes the encoder at initialisation, midway and at the end on the same rendered images,
and `evaluate.py` evaluates the trained encoder and its baselines on them. It holds the
probe datasets (`dataset`), anything else an evaluator renders or compiles (`get`, under a
key that says what it depends on: held-out videos, compiled segmenters) and is shared by
every `Context`.

A `Context` is what one evaluator sees for one encoder: the encoder, the suite's config
(`seed`, `image_size`, `num_train`, `num_test`, `split`, `data_dir`, `workdir`), the mesh,
the output folder (None for the training probes), the cache, this encoder's pooled
features (`features`, `split_features`: the probe and kNN read the same ones), and `count`,
which records how many examples a metric was measured on (for standard errors).

Datasets: 'synthetic/<task>' (the synthetic world's held-out tasks), 'tfds/<name>' (any
TFDS image classification data set prepared under `data_dir`, its 'train' and 'test'
splits) or a VTAB task, resized to `image_size`. `split='validation'` never reads the test
images: it fits on the first 3/4 of the training images and scores on the last 1/4 (for
choosing hyper-parameters). An encoder may be `baselines.ColourHistogram()`: every feature
is then the image's colour histogram.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vivi import classifier as classifier_lib
from vivi import errors
from vivi.evaluate import baselines, linear_probe, retrieval, vtab_tasks
from vivi.input import labelled, synthetic_tasks
from vivi.models import video_model

# What `Context.features` pools: block 4 averaged over its positions is 'pre_logits'.
POOLED_FEATURES = ('pre_logits', 'block1', 'block2', 'block3')
SPLITS = ('test', 'validation')
T = TypeVar('T')


def log(message: str) -> None:
  """A progress line (evaluators print one per task, so a long one is never silent)."""
  logging.info('  %s', message)


def known_dataset(name: str) -> bool:
  """Whether `name` is a dataset the cache can load (ValueError for an unknown synthetic
  task, naming the valid ones)."""
  return (labelled.synthetic_task(name) is not None or name.startswith('tfds/')
          or name in vtab_tasks.TASKS)


class DataCache:
  """Datasets and other rendered or compiled things, made once per suite."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self._entries: dict[Any, Any] = {}

  @property
  def split(self) -> str:
    return self.config.get('split', 'test')

  def get(self, key: Any, make: Callable[[], T]) -> T:
    """The entry under `key`, made by `make()` the first time it is asked for."""
    if key not in self._entries:
      self._entries[key] = make()
    return self._entries[key]

  def dataset(self, name: str):
    """(train images, train labels, evaluation images, evaluation labels, num classes) of
    `name`; the evaluation images are the test split's, or with split='validation' the last
    quarter of the training images (the probe then fits on the first three quarters)."""

    def make():
      x_tr, y_tr, x_te, y_te, k = self.get(('dataset', name), lambda: self._load(name))
      if self.split == 'validation':
        cut = len(y_tr) * 3 // 4
        x_tr, y_tr, x_te, y_te = x_tr[:cut], y_tr[:cut], x_tr[cut:], y_tr[cut:]
      return x_tr, y_tr, x_te, y_te, k

    return self.get(('dataset', name, self.split), make)

  def _load(self, name: str):
    c = self.config
    test = c.num_test if self.split == 'test' else 0   # Validation: never the test split.
    log(f'loading {name} ({c.num_train} training and {test} test images)')
    task = labelled.synthetic_task(name)
    if task is not None:
      tr = synthetic_tasks.render_downstream(task, 'train', c.num_train,
                                             image_size=c.image_size, seed=c.seed)
      te = synthetic_tasks.render_downstream(task, 'test', test, image_size=c.image_size,
                                             seed=c.seed)
      return (*tr, *te, synthetic_tasks.DOWNSTREAM_TASKS[task])
    if name.startswith('tfds/'):
      dataset = name.split('/', 1)[1]
      read = lambda split, n: labelled.read_tfds(
          dataset, split, data_dir=c.get('data_dir', ''), image_size=c.image_size, limit=n)
      tr = read('train', c.num_train)
      te = read('test', test) if test else (tr[0][:0], tr[1][:0], tr[2])
      return (*tr[:2], *te)
    if name in vtab_tasks.TASKS:  # A VTAB-1k task: its 1000 training examples, its test set.
      t = vtab_tasks.load_task(name, data_dir=c.get('data_dir') or None,
                               image_size=c.image_size, num_test=test)
      return (*t.train800val200, *t.test, t.num_classes)
    raise errors.ConfigError(f"unknown dataset {name!r}: use 'synthetic/<task>' "
                             f"({sorted(synthetic_tasks.DOWNSTREAM_TASKS)}), 'tfds/<name>' or "
                             f"a VTAB task ({sorted(vtab_tasks.TASKS)})")

  def held_out_frames(self, num_videos: int, frames_per_video: int, seed: int | None = None,
                      return_truth: bool = False):
    """`retrieval.held_out_frames` of the world's held-out videos (seed: the suite's)."""
    seed = self.config.seed if seed is None else seed

    def make():
      log(f'rendering {num_videos} held-out videos' + (' with object masks' * return_truth))
      return retrieval.held_out_frames(num_videos, frames_per_video,
                                       image_size=self.config.image_size, seed=seed,
                                       return_truth=return_truth)

    return self.get(('held_out', num_videos, frames_per_video, seed, return_truth), make)


class Context:
  """What one evaluator sees for one encoder (see the module docstring)."""

  def __init__(self, encoder, cache: DataCache, mesh, out_dir: str | None):
    self.encoder, self.cache, self.mesh, self.out_dir = encoder, cache, mesh, out_dir
    self.config = cache.config
    self._features: dict[tuple, np.ndarray] = {}
    self.counts: dict[str, int] = {}
    self.log = log
    # The classifier this encoder's `imagenet_linear` evaluator trained, for the evaluators
    # listed after it that score a classifier (`classifier`).
    self.trained_classifier: classifier_lib.Classifier | None = None

  @property
  def split(self) -> str:
    return self.cache.split

  @property
  def is_histogram(self) -> bool:
    """The colour-histogram baseline: no feature maps, no box features."""
    return isinstance(self.encoder, baselines.ColourHistogram)

  def classifier(self, path: str = '', label_space: str = classifier_lib.IMAGENET
                 ) -> classifier_lib.Classifier:
    """The classifier an evaluator over `label_space` scores (robustness, shape bias):
    `path` (a classifier folder, or a training workdir of configs/imagenet_finetune.py), or
    '' for the one this suite's `imagenet_linear` evaluator trained on this encoder."""
    if path:
      clf = self.cache.get(('classifier', path),
                           lambda: classifier_lib.load_classifier(path, self.mesh))
    elif self.trained_classifier is None:
      raise errors.ConfigError(
          "no classifier to score: set the evaluator's `classifier` option to a classifier "
          'folder (<eval>/step_N/imagenet_linear/classifier) or to a training workdir of '
          'configs/imagenet_finetune.py, or list imagenet_linear before it in '
          'config.evaluators')
    else:
      clf = self.trained_classifier
    if clf.info.get('label_space') != label_space:
      raise errors.ConfigError(
          f'the classifier {path or "imagenet_linear trained"} predicts '
          f'{clf.info.get("label_space")!r} classes; this evaluator scores {label_space!r} '
          'ones (train it on that dataset)')
    return clf

  def count(self, metric: str, n: int) -> None:
    self.counts[metric] = int(n)

  def features(self, images: np.ndarray, feature: str = 'pre_logits', key=None) -> np.ndarray:
    """Pooled features [N, C] of uint8 images: 'pre_logits' (block 4 averaged over its
    positions), or an earlier block ('block1'..'block3') averaged the same way; colour
    histograms for the `baselines.ColourHistogram` encoder. `key` caches them."""
    if feature not in POOLED_FEATURES:
      raise errors.ConfigError(
          f'feature {feature!r}: valid {POOLED_FEATURES}; block 4 averaged over its positions '
          f'is pre_logits itself')
    if key is not None and (key, feature) in self._features:
      return self._features[key, feature]
    if self.is_histogram:
      out = baselines.color_histogram(images)
    else:
      module = self.encoder.module

      def make():
        def encode(variables, x):
          out = module.apply(variables, video_model.normalize_images(x), train=False)[feature]
          return out if out.ndim == 2 else jnp.mean(out, axis=(1, 2))
        return linear_probe.jit_encoder(encode, self.mesh)

      fn = self.cache.get(('pooled', module, feature), make)
      out = linear_probe.extract_features(fn, self.encoder.variables, images, self.mesh)
    if key is not None:
      self._features[key, feature] = out
    return out

  def split_features(self, name: str, feature: str):
    x_tr, y_tr, x_te, y_te, k = self.cache.dataset(name)
    return (self.features(x_tr, feature, (name, 'train')), y_tr,
            self.features(x_te, feature, (name, 'test')), y_te, k)
