"""Object discovery on COCO (vivi/evaluate/coco_discovery.py): the metrics on hand-made
masks, the panoptic id decoding and geometry, and the evaluator end to end on a tiny
coco/2017_panoptic written in TFDS's own format."""

import os

import ml_collections
import numpy as np
import pytest

from configs import common
from tests import tfds_data
from vivi import encoder as encoder_api
from vivi import errors, parallel
from vivi.evaluate import coco_discovery, discovery, suite


def _box(size, y0, x0, y1, x1):
  mask = np.zeros((size, size), bool)
  mask[y0:y1, x0:x1] = True
  return mask


def test_abo_per_object_per_class_and_per_image_differ_on_hand_masks():
  # Image 1: one cluster; its one object (category 0) is the top half: IoU 32 / 64 = 0.5.
  # Image 2: clusters are the left and right halves; objects: the top-left and bottom-left
  # quadrants (category 1, IoU 16 / 32 = 0.5 each) and the right half (category 2, IoU 1).
  segments = [np.zeros((8, 8), np.int32), np.repeat(np.arange(2), 4)[None].repeat(8, 0)]
  masks = [np.stack([_box(8, 0, 0, 4, 8)]),
           np.stack([_box(8, 0, 0, 4, 4), _box(8, 4, 0, 8, 4), _box(8, 0, 4, 8, 8)])]
  labels = [np.array([0]), np.array([1, 1, 2])]
  best = [discovery.best_overlaps(s, m) for s, m in zip(segments, masks)]
  np.testing.assert_allclose(best[0], [0.5])
  np.testing.assert_allclose(best[1], [0.5, 0.5, 1.0])
  metrics, num_objects, num_images = coco_discovery.scores(best + [np.zeros(0)],
                                                           labels + [np.zeros(0, int)])
  assert (num_objects, num_images) == (4, 2)           # An image without objects: nothing.
  assert metrics['abo'] == pytest.approx((0.5 + 0.5 + 0.5 + 1.0) / 4)        # 0.625
  assert metrics['abo_image'] == pytest.approx((0.5 + 2.0 / 3) / 2)          # 0.583
  assert metrics['abo_class'] == pytest.approx((0.5 + 0.5 + 1.0) / 3)        # 0.667
  assert metrics['object_recovery'] == 0.25            # Only IoU > 0.5 recovers.
  empty, n, m = coco_discovery.scores([np.zeros(0)], [np.zeros(0, int)])
  assert (n, m) == (0, 0) and all(np.isnan(v) for v in empty.values())


def _rgb(ids):
  """COCO panoptic's id2rgb."""
  ids = np.asarray(ids, np.int64)
  return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def test_panoptic_ids_decode_as_r_plus_256_g_plus_256_squared_b():
  rgb = np.array([[[3, 2, 1], [0, 0, 0], [255, 255, 255]]], np.uint8)
  np.testing.assert_array_equal(coco_discovery.decode_panoptic(rgb),
                                [[3 + 2 * 256 + 65536, 0, 256 ** 3 - 1]])
  ids = np.array([[0, 1, 4_000_001, 7_654_321]])
  np.testing.assert_array_equal(coco_discovery.decode_panoptic(_rgb(ids)), ids)


def _example(image, ids, objects, index):
  """A coco/2017_panoptic example: the image, the panoptic PNG of the segment-id map and
  the objects [(id, label, is_crowd)]."""
  import tensorflow_datasets as tfds
  h, w = ids.shape
  records = []
  for segment, label, crowd in objects:
    ys, xs = np.nonzero(ids == segment)
    records.append({'id': segment, 'label': label, 'area': len(ys), 'is_crowd': crowd,
                    'bbox': tfds.features.BBox(ys.min() / h, xs.min() / w,
                                               (ys.max() + 1) / h, (xs.max() + 1) / w)})
  return {'image': image, 'image/filename': f'{index:012d}.jpg', 'image/id': index,
          'panoptic_image': _rgb(ids), 'panoptic_image/filename': f'{index:012d}.png',
          'panoptic_objects': records}


def _scene(index, image):
  """40 x 60 px: a thing on the left edge (cropped away at 32 px: the central 32 x 48 after
  the resize keeps columns 8..40 of 48), a thing in the middle, a crowd, and stuff."""
  ids = np.zeros((40, 60), np.int64)
  ids[:, :8] = 11 + 256 * index                # Thing (label 0), outside the centre crop.
  ids[5:30, 20:40] = 22 + 256 * 300            # Thing (label 5): a big id, G and B used.
  ids[30:, 40:] = 33                           # Crowd (label 0).
  ids[:5, 10:] = 44                            # Stuff (label 80, 'banner').
  objects = [(11 + 256 * index, 0, False), (22 + 256 * 300, 5, False), (33, 0, True),
             (44, 80, False)]
  return _example(image, ids, objects, index)


def _write_coco(data_dir, splits):
  images = iter(tfds_data.sample_images(sum(splits.values()), size=60, seed=4))
  tfds_data.write_tfds(coco_discovery.TFDS_NAME, str(data_dir), {
      split: [_scene(i, next(images)[:40]) for i in range(n)] for split, n in splits.items()})


def test_images_and_masks_share_the_resize_and_crop_and_only_whole_things_count(tmp_path):
  _write_coco(tmp_path, {'validation': 1})
  builder = coco_discovery.tfds.builder(coco_discovery.TFDS_NAME, data_dir=str(tmp_path))
  (example,) = list(coco_discovery.examples(builder, 'validation', 32, 0))
  assert example['image'].shape == (32, 32, 3) and example['ids'].shape == (32, 32)
  masks, labels = coco_discovery.object_masks(example)
  # Left-edge thing: cropped away; crowd and stuff: not objects. The middle thing: rows
  # 5..30 -> 4..24 and columns 20..40 -> 16..32 of the 32 x 48 resize, 8..24 in the crop.
  np.testing.assert_array_equal(labels, [5])
  np.testing.assert_array_equal(masks[0], _box(32, 4, 8, 24, 24))


@pytest.fixture(scope='module')
def tiny_encoder():
  return encoder_api.random_encoder(common.base('tiny').model, 32, seed=0)


def _suite(data_dir, split='test', **kw):
  config = ml_collections.ConfigDict({
      'seed': 0, 'image_size': 32, 'split': split, 'data_dir': str(data_dir),
      'evaluators': {'coco_discovery': {'num_clusters': 3, 'batch_size': 4, **kw}}})
  return suite.Suite(config, parallel.make_mesh())


def test_the_evaluator_end_to_end_on_a_tiny_coco_panoptic(tmp_path, tiny_encoder):
  _write_coco(tmp_path / 'data', {'validation': 3, 'train': 4})
  probes = _suite(tmp_path / 'data')
  metrics, pictures = probes.evaluate(probes.context(tiny_encoder, str(tmp_path)),
                                      'coco_discovery')
  assert set(metrics) == {'abo', 'abo_class', 'abo_image', 'object_recovery'}
  assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
  assert probes.counts['coco_discovery/abo'] == 3           # One thing per image.
  assert probes.counts['coco_discovery/abo_image'] == 3
  assert os.path.getsize(tmp_path / 'coco_discovery.png') > 5_000
  assert pictures['segments'].ndim == 3 and pictures['segments'].dtype == np.uint8
  # split='validation': the held-out end of train (the last tenth, at least one image).
  probes = _suite(tmp_path / 'data', split='validation')
  probes(tiny_encoder)
  assert probes.counts['coco_discovery/abo'] == 1


def test_validation_never_reads_cocos_validation_split(tmp_path, tiny_encoder):
  _write_coco(tmp_path, {'train': 3})
  probes = _suite(tmp_path, split='validation', num_images=1)
  assert set(probes(tiny_encoder)) == {f'coco_discovery/{k}' for k in
                                       ('abo', 'abo_class', 'abo_image', 'object_recovery')}


def test_a_missing_dataset_is_one_line_naming_it_the_data_dir_and_the_command(tmp_path,
                                                                            tiny_encoder):
  with pytest.raises(errors.NotPreparedError) as e:
    _suite(tmp_path)(tiny_encoder)
  message = str(e.value)
  assert '\n' not in message and "'coco/2017_panoptic'" in message
  assert str(tmp_path) in message and 'tfds build coco/2017_panoptic' in message


def test_bad_options_are_config_errors():
  def check(**kw):
    suite.check(ml_collections.ConfigDict({'evaluators': {'coco_discovery': kw}}))
  check()
  with pytest.raises(errors.ConfigError, match=r"coco_discovery: feature='pre_logits'"):
    check(feature='pre_logits')
  with pytest.raises(errors.ConfigError, match=r'num_images=-1: want an integer >= 0'):
    check(num_images=-1)
