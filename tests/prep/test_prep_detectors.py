"""The detectors of data preparation: Haar cascades on a real photo, the empty detector, and a
TF-Hub-OpenImages-style SavedModel built here (top 5 by score, clipped, degenerate dropped)."""

import numpy as np
import pytest
import skimage.data

from vivi.prep import detectors


def _check_valid(d, max_boxes):
  n = len(d.scores)
  assert n <= max_boxes
  assert d.boxes.shape == (n, 4) and d.boxes.dtype == np.float32
  assert d.labels.shape == (n,) and d.labels.dtype == np.int64
  assert d.scores.shape == (n,) and d.scores.dtype == np.float32
  assert np.all(np.isfinite(d.boxes)) and d.boxes.min(initial=0) >= 0
  assert d.boxes.max(initial=1) <= 1
  assert np.all(d.boxes[:, 2] > d.boxes[:, 0]) and np.all(d.boxes[:, 3] > d.boxes[:, 1])
  assert np.all(np.diff(d.scores) <= 0)


def test_haar_finds_the_astronauts_face():
  det = detectors.create('haar', cascades=['frontalface_default'], max_boxes=3)
  assert det.name == 'haar:frontalface_default'
  assert det.label_names() == {0: 'frontalface_default'}
  d = det(skimage.data.astronaut())
  _check_valid(d, 3)
  assert len(d.scores) >= 1 and np.all((d.scores > 0) & (d.scores < 1))
  assert np.all(d.labels == 0)
  cy, cx = (d.boxes[0, 0] + d.boxes[0, 2]) / 2, (d.boxes[0, 1] + d.boxes[0, 3]) / 2
  assert 0.05 < cy < 0.45 and 0.35 < cx < 0.65, d.boxes


def test_haar_finds_nothing_on_grey_and_rejects_unknown_cascades():
  det = detectors.create('haar', cascades=['frontalface_default', 'fullbody'])
  assert det.label_names() == {0: 'frontalface_default', 1: 'fullbody'}
  d = det(np.full([240, 320, 3], 128, np.uint8))
  _check_valid(d, 5)
  assert len(d.scores) == 0
  with pytest.raises(ValueError, match='frontalface_default'):  # lists what is available
    detectors.create('haar', cascades=['frontalface_default', 'unicorn'])


def test_none():
  det = detectors.create('none')
  d = det(skimage.data.astronaut())
  _check_valid(d, 0)
  assert det.name == 'none' and det.label_names() == {}
  with pytest.raises(ValueError, match='kind'):
    detectors.create('yolo')


# 8 boxes: 1 degenerate (ymax == ymin), 2 partly outside [0, 1]; scores unsorted, 2 < 0.05.
BOXES = [[0.1, 0.1, 0.5, 0.5], [-0.2, 0.3, 0.4, 1.3], [0.2, 0.2, 0.2, 0.6],
         [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0], [0.3, -0.1, 0.7, 0.4],
         [0.6, 0.1, 0.8, 0.3], [0.1, 0.6, 0.3, 0.8]]
SCORES = [0.3, 0.9, 0.99, 0.01, 0.5, 0.7, 0.04, 0.6]
LABELS = [10, 11, 12, 13, 14, 15, 16, 17]
ENTITIES = [f'/m/0{l}' for l in LABELS]
NAMES = [f'Class{l}' for l in LABELS]


@pytest.fixture(scope='module')
def saved_model_path(tmp_path_factory):
  import tensorflow as tf

  class OpenImagesLike(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def detect(self, images):
      del images
      return {
          'detection_boxes': tf.constant(BOXES, tf.float32),
          'detection_scores': tf.constant(SCORES, tf.float32),
          'detection_class_labels': tf.constant(LABELS, tf.int64),
          'detection_class_entities': tf.constant(ENTITIES),
          'detection_class_names': tf.constant(NAMES),
      }

  path = str(tmp_path_factory.mktemp('detector') / 'model')
  module = OpenImagesLike()
  tf.saved_model.save(module, path, signatures={'default': module.detect})
  return path


def test_saved_model_keeps_top5_clipped(saved_model_path):
  det = detectors.create('saved_model', saved_model_path)
  assert det.name == f'saved_model:{saved_model_path}'
  d = det(np.zeros([32, 48, 3], np.uint8))
  _check_valid(d, 5)
  # Degenerate 12 (0.99) is dropped; of the rest, the five best by score.
  np.testing.assert_array_equal(d.labels, [11, 15, 17, 14, 10])
  np.testing.assert_allclose(d.scores, [0.9, 0.7, 0.6, 0.5, 0.3], rtol=1e-6)
  np.testing.assert_allclose(d.boxes[0], [0.0, 0.3, 0.4, 1.0], rtol=1e-6)
  np.testing.assert_allclose(d.boxes[1], [0.3, 0.0, 0.7, 0.4], rtol=1e-6)
  names = det.label_names()
  assert all(names[l] == f'Class{l}' for l in d.labels.tolist())
  d = detectors.create('saved_model', saved_model_path, min_score=0.05, max_boxes=10)(
      np.zeros([8, 8, 3], np.uint8))
  np.testing.assert_array_equal(d.labels, [11, 15, 17, 14, 10])  # 0.04 and 0.01 dropped


def test_saved_model_missing_path():
  with pytest.raises(ValueError, match='/no/such/detector'):
    detectors.create('saved_model', '/no/such/detector')
