"""Shape bias on the cue-conflict stimuli (vivi/evaluate/shape_bias.py): the 16-category map
against Geirhos' file, the mean-probability decision on hand probabilities, the shape
fraction on hand-made decisions, and the evaluator end to end on a tiny stimuli folder in the
official layout (real PNGs: crops of photographs) against a hand computation."""

import os
import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from tests import tfds_data
from tests.evaluate import tiny_classifier
from vivi import classifier, errors, parallel
from vivi.evaluate import datasets, shape_bias, suite, superclasses

CATEGORIES = shape_bias.CATEGORIES


def test_category_map_matches_the_official_file():
  # Sizes of the <category>_indices lists of texture-vs-shape's code/helper/
  # human_categories.py, and the categories get_human_object_recognition_categories sorts.
  sizes = {'airplane': 1, 'bear': 4, 'bicycle': 2, 'bird': 49, 'boat': 5, 'bottle': 7,
           'car': 3, 'cat': 6, 'chair': 4, 'clock': 3, 'dog': 109, 'elephant': 2,
           'keyboard': 2, 'knife': 1, 'oven': 1, 'truck': 8}
  assert tuple(sorted(sizes)) == CATEGORIES and len(CATEGORIES) == 16
  assert {c: len(m) for c, m in superclasses.CUE_CONFLICT_MEMBERS.items()} == sizes
  flat = [i for m in superclasses.CUE_CONFLICT_MEMBERS.values() for i in m]
  assert len(flat) == 207 == len(set(flat)) and all(0 <= i < 1000 for i in flat)
  assert superclasses.CUE_CONFLICT_MEMBERS['knife'] == (499,)
  assert superclasses.CUE_CONFLICT_MEMBERS['dog'][:3] == (152, 153, 154)


def test_decision_is_the_category_with_the_highest_mean_probability():
  # Dog's 109 classes hold 0.436 of the mass (0.004 each), knife's one class 0.05: the mean
  # rule picks knife where a sum would pick dog.
  p = np.full(1000, 0.0)
  p[list(superclasses.CUE_CONFLICT_MEMBERS['dog'])] = 0.004
  p[499] = 0.05
  rest = [i for i in range(1000) if p[i] == 0]
  p[rest] = (1 - p.sum()) / len(rest)
  logits = np.log(p)[None]
  probs = shape_bias.category_probabilities(logits)
  np.testing.assert_allclose(probs[0, CATEGORIES.index('dog')], 0.004, rtol=1e-9)
  np.testing.assert_allclose(probs[0, CATEGORIES.index('knife')], 0.05, rtol=1e-9)
  assert CATEGORIES[shape_bias.decisions(probs)[0]] == 'knife'
  # The softmax is of the logits, so a shift changes nothing; ties go to the first category.
  np.testing.assert_allclose(shape_bias.category_probabilities(logits + 7.0), probs)
  assert shape_bias.decisions(np.ones((1, 16)))[0] == 0


def test_shape_fraction_of_hand_made_decisions():
  c = CATEGORIES.index
  shapes = [c('cat'), c('cat'), c('dog'), c('car'), c('bear'), c('knife')]
  textures = [c('elephant'), c('clock'), c('oven'), c('boat'), c('bear'), c('truck')]
  decided = [c('cat'), c('clock'), c('dog'), c('bird'), c('bear'), c('knife')]
  counts = shape_bias.shape_texture_counts(decided, shapes, textures)
  # bear-bear has no cue conflict; bird is neither car nor boat.
  assert counts == {'images': 5, 'shape': 3, 'texture': 1}
  assert shape_bias.parse_name('cat7-elephant1.png') == ('cat', 'elephant')
  assert shape_bias.parse_name('cat7-elephant1.jpg') is None
  assert shape_bias.parse_name('cat7-zebra1.png') is None


def _stimuli_folder(root):
  folder = root / 'stimuli' / 'style-transfer-preprocessed-512'
  for category in CATEGORIES:
    (folder / category).mkdir(parents=True)
  return folder


def test_a_missing_or_misnamed_stimuli_folder_is_named(tmp_path):
  options = ml_collections.ConfigDict(dict(shape_bias.DEFAULTS,
                                           stimuli_dir=str(tmp_path / 'nowhere')))
  with pytest.raises(errors.MissingPathError, match='cue-conflict stimuli.*no such folder.*'
                     'style-transfer-preprocessed-512/<category>'):
    shape_bias.SHAPE_BIAS.run(None, options)
  folder = _stimuli_folder(tmp_path)
  shutil.rmtree(folder / 'oven')
  options.stimuli_dir = str(folder)
  with pytest.raises(errors.MissingPathError, match="has no 'oven'"):
    shape_bias.SHAPE_BIAS.run(None, options)
  (folder / 'oven').mkdir()
  image = tfds_data.sample_images(1, size=16)[0]
  Image.fromarray(image).save(folder / 'cat' / 'dog1-cat2.png')
  with pytest.raises(errors.DatasetError, match=r'cat/dog1-cat2.png: not a cue-conflict '
                     'stimulus of cat/'):
    shape_bias.read_stimuli(str(folder))


@pytest.mark.slow
def test_evaluator_on_a_tiny_stimuli_folder_matches_a_hand_computation(tmp_path):
  mesh = parallel.make_mesh()
  clf_path = tiny_classifier.save_tiny_classifier(str(tmp_path / 'classifier'), mesh)
  clf = classifier.load_classifier(clf_path, mesh)
  folder = _stimuli_folder(tmp_path)
  staging = tmp_path / 'staging'
  staging.mkdir()
  images = tfds_data.sample_images(7, size=64, seed=1)
  paths = [str(staging / f'{i}.png') for i in range(len(images))]
  for path, image in zip(paths, images):
    Image.fromarray(image).save(path)

  # By hand: each image's category, the mean softmax probability over its members.
  read = np.stack([datasets.read_image_file(p, clf.image_size, crop_fraction=1.0)
                   for p in paths])
  logits = clf.logits(read, mesh).astype(np.float64)
  probs = np.exp(logits - logits.max(axis=1, keepdims=True))
  probs /= probs.sum(axis=1, keepdims=True)
  decided = [max(CATEGORIES, key=lambda c: probs[i, list(
      superclasses.CUE_CONFLICT_MEMBERS[c])].mean()) for i in range(len(paths))]

  # Name each image so that its decision is: the shape (images 0-2), the texture (3, 4),
  # neither (5); image 6 has no cue conflict and is left out.
  other = lambda c, j=1: CATEGORIES[(CATEGORIES.index(c) + j) % 16]
  names = []
  for i, d in enumerate(decided):
    shape, texture = {0: (d, other(d)), 1: (d, other(d, 2)), 2: (d, other(d, 3)),
                      3: (other(d), d), 4: (other(d, 2), d), 5: (other(d), other(d, 2)),
                      6: (d, d)}[i]
    names.append(f'{shape}/{shape}{i + 1}-{texture}{i + 2}.png')
    os.replace(paths[i], folder / names[-1])

  config = ml_collections.ConfigDict(dict(
      seed=0, image_size=32, num_train=0, num_test=0, split='test',
      evaluators={'shape_bias': dict(stimuli_dir=str(folder), classifier=clf_path,
                                     batch_size=4)}))
  evaluation = suite.Suite(config, mesh)
  ctx = evaluation.context(None)   # The evaluator scores the classifier, not the encoder.
  metrics, _ = evaluation.evaluate(ctx, 'shape_bias')
  assert metrics['images'] == 6
  assert metrics['shape_decisions'] == 3 and metrics['texture_decisions'] == 2
  assert metrics['shape_bias'] == pytest.approx(3 / 5)
  assert metrics['shape_accuracy'] == pytest.approx(3 / 6)
  assert metrics['texture_accuracy'] == pytest.approx(2 / 6)
  assert ctx.counts['shape_bias'] == 5 and ctx.counts['shape_accuracy'] == 6
