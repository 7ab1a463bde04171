"""Classifiers (vivi/classifier.py): logits are the encoder's pre_logits through the head,
a saved classifier loads back exactly, and a folder that is not one is refused by name; the
shared evaluation preprocessing and release-folder check (vivi/evaluate/datasets.py)."""

import numpy as np
import pytest

from configs import common
from tests import tfds_data
from vivi import classifier, errors, parallel
from vivi import encoder as encoder_api
from vivi.evaluate import datasets


def _classifier(mesh, num_classes=7):
  encoder = encoder_api.random_encoder(common.base('tiny').model, 32, seed=3, mesh=mesh)
  dim = np.asarray(encoder.features(np.zeros((1, 32, 32, 3), np.uint8))['pre_logits']).shape[-1]
  rng = np.random.default_rng(0)
  head = {'kernel': rng.normal(size=(dim, num_classes)).astype(np.float32),
          'bias': rng.normal(size=num_classes).astype(np.float32)}
  return encoder, head, classifier.make_classifier(
      encoder, head, {'label_space': 'imagenet2012', 'image_size': 32})


def test_logits_are_pre_logits_through_the_head_and_a_saved_classifier_loads_back(tmp_path):
  mesh = parallel.make_mesh()
  encoder, head, clf = _classifier(mesh)
  images = np.stack(tfds_data.sample_images(5, size=32))
  features = np.asarray(encoder.features(images)['pre_logits'])
  np.testing.assert_allclose(clf.logits(images, mesh),
                             features @ head['kernel'] + head['bias'], rtol=1e-4, atol=1e-4)
  loaded = classifier.load_classifier(classifier.save_classifier(clf, str(tmp_path / 'c')),
                                      mesh)
  np.testing.assert_array_equal(loaded.logits(images, mesh), clf.logits(images, mesh))
  assert loaded.info['label_space'] == 'imagenet2012' and loaded.num_classes == 7
  assert loaded.image_size == 32


def test_a_folder_that_is_not_a_classifier_is_refused_by_name(tmp_path):
  with pytest.raises(errors.MissingPathError, match='is not a classifier'):
    classifier.load_classifier(str(tmp_path))
  with pytest.raises(ValueError, match="needs 'label_space'"):
    classifier.make_classifier(None, {}, {})


def test_resize_center_crop_keeps_the_centre_at_the_standard_ratio():
  # A 100 x 200 image whose columns encode their index: the shorter side goes to
  # round(32 / 0.875) = 37, the longer to 74, and the central 32 columns of 74 are kept.
  image = np.tile(np.linspace(0, 255, 200)[None, :, None], (100, 1, 3)).astype(np.uint8)
  out = np.asarray(datasets.resize_center_crop(image, 32))
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  columns = out[16, :, 0].astype(float)
  expected = (np.arange(21, 53) + 0.5) * 200 / 74   # Source positions of kept columns.
  np.testing.assert_allclose(columns, expected * 255 / 199, atol=3)
  gray = np.asarray(datasets.resize_center_crop(image[..., :1], 32))
  assert gray.shape == (32, 32, 3)


def test_release_folder_names_the_dataset_the_path_and_the_layout(tmp_path):
  with pytest.raises(errors.MissingPathError) as e:
    datasets.release_folder(str(tmp_path / 'none'), 'ObjectNet', 'objectnet',
                            layout='images/<class>/*.png')
  assert 'ObjectNet' in str(e.value) and 'none' in str(e.value)
  assert 'images/<class>/*.png' in str(e.value)
  (tmp_path / 'images').mkdir()
  with pytest.raises(errors.MissingPathError, match="has no 'mappings'"):
    datasets.release_folder(str(tmp_path), 'ObjectNet', 'objectnet', ('images', 'mappings'))
  assert datasets.release_folder(str(tmp_path), 'ObjectNet', 'objectnet',
                                 ('images',)) == str(tmp_path)
