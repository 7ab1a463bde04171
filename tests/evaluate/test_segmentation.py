"""Semantic segmentation transfer (vivi/evaluate/segmentation.py): mIoU on hand-made masks,
the mask readers, the geometry, and the evaluator end to end on tiny ADE20K and VOC release
folders of real JPEG / PNG files."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import common
from tests import tfds_data
from vivi import encoder as encoder_api
from vivi import errors, parallel
from vivi.evaluate import segmentation, suite

IGNORE = segmentation.IGNORE


def test_miou_of_a_hand_computed_confusion_with_ignored_pixels():
  # 3 classes on 12 pixels, two of them void (255): they count nowhere.
  labels = np.array([[0, 0, 0, 1], [1, 1, 2, 2], [IGNORE, IGNORE, 0, 1]])
  predict = np.array([[0, 0, 1, 1], [1, 2, 2, 2], [2, 0, 0, 0]])
  confusion = segmentation.confusion_matrix(labels, predict, 3)
  # Rows: truth, columns: prediction. Class 0: 4 px (3 right, 1 as 1); class 1: 4 px (2
  # right, 1 as 2, 1 as 0); class 2: 2 px (both right).
  np.testing.assert_array_equal(confusion, [[3, 1, 0], [1, 2, 1], [0, 0, 2]])
  # IoU_c = TP / (TP + FP + FN): 3 / (4 + 4 - 3), 2 / (4 + 3 - 2), 2 / (2 + 3 - 2).
  got = segmentation.scores(confusion)
  assert got['miou'] == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
  assert got['pixel_accuracy'] == pytest.approx(7 / 10)


def test_miou_leaves_out_classes_that_occur_nowhere_but_counts_false_positives():
  # Class 2 is neither labelled nor predicted: left out. Class 3 is predicted but never
  # labelled: IoU 0, it counts (a false positive class).
  confusion = segmentation.confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1]), 4)
  assert segmentation.scores(confusion)['miou'] == pytest.approx((1 / 2 + 1 + 0) / 3)
  # Confusion matrices add up over images: the metric is over the whole split.
  twice = confusion + confusion
  assert segmentation.scores(twice) == segmentation.scores(confusion)
  empty = segmentation.scores(np.zeros((3, 3), np.int64))
  assert np.isnan(empty['miou']) and np.isnan(empty['pixel_accuracy'])


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0] * (3 * 250) + [
    224, 224, 192]   # VOC's colours for 0..4, and void (255) cream.


def _write_palette_png(path, labels):
  labels = np.ascontiguousarray(labels, np.uint8)
  image = Image.frombytes('P', labels.shape[::-1], labels.tobytes())
  image.putpalette(VOC_PALETTE)
  image.save(path)


def test_a_voc_palette_png_reads_back_as_its_indices_not_its_colours(tmp_path):
  labels = np.zeros((6, 8), np.uint8)
  labels[1:4, 2:6], labels[4:, :] = 4, IGNORE
  _write_palette_png(tmp_path / 'mask.png', labels)
  with Image.open(tmp_path / 'mask.png') as image:
    assert image.mode == 'P'
    assert np.asarray(image.convert('RGB'))[2, 3].tolist() == [0, 0, 128]   # Its colour.
  np.testing.assert_array_equal(segmentation.read_label_png(str(tmp_path / 'mask.png')),
                                labels)
  Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'rgb.png')
  with pytest.raises(errors.DatasetError, match=r'rgb\.png: a RGB image; segmentation masks '
                     r'are palette \(P\) or greyscale \(L\) PNGs'):
    segmentation.read_label_png(str(tmp_path / 'rgb.png'))


def test_ade20k_other_is_ignored_and_classes_shift_down_by_one():
  raw = np.array([[0, 1, 150]], np.uint8)
  np.testing.assert_array_equal(segmentation.class_labels(raw, 'ade20k', 'a.png'),
                                [[IGNORE, 0, 149]])
  with pytest.raises(errors.DatasetError, match=r'a\.png: label 151 in an ADE20K mask'):
    segmentation.class_labels(np.array([[151]], np.uint8), 'ade20k', 'a.png')
  with pytest.raises(errors.DatasetError, match=r'b\.png: label 21 in a VOC mask'):
    segmentation.class_labels(np.array([[21, 255]], np.uint8), 'pascal_voc', 'b.png')


def test_evaluation_geometry_round_trips_to_the_mask_resolution():
  image = np.zeros((30, 60, 3), np.uint8)
  padded, size = segmentation.eval_input(image, 32)
  assert padded.shape == (32, 32, 3) and size == (16, 32)
  prediction = np.full((32, 32), 7, np.uint8)
  prediction[:, 16:] = 3       # Right half of the image.
  prediction[16:] = 9          # The padding: never scored.
  back = segmentation.prediction_at_mask_size(prediction, size, (30, 60))
  assert back.shape == (30, 60) and set(np.unique(back)) == {3, 7}
  assert (back[:, :30] == 7).all() and (back[:, 30:] == 3).all()


def test_training_views_are_crops_padded_with_the_ignore_label():
  rng = np.random.default_rng(0)
  image, labels = np.full((20, 40, 3), 200, np.uint8), np.ones((20, 40), np.uint8)
  for _ in range(5):
    view, view_labels = segmentation.train_crop(image, labels, 32, (0.5, 0.5), rng)
    assert view.shape == (32, 32, 3) and view_labels.shape == (32, 32)
    # Scaled to 16 x 8 px: the rest of the crop is padding, labelled void and black.
    assert (view_labels == 1).sum() == 16 * 8 and set(np.unique(view_labels)) == {1, IGNORE}
    assert (view[view_labels == IGNORE] == 0).all()


def _voc(root, n_train=5, n_val=3, aug=False):
  voc = root / 'VOCdevkit' / 'VOC2012'
  for d in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    os.makedirs(voc / d)
  images = tfds_data.sample_images(n_train + n_val, size=48, seed=2)
  ids = [f'2007_{i:06d}' for i in range(n_train + n_val)]
  for i, (name, image) in enumerate(zip(ids, images)):
    image = image[:40]                      # Not square: 40 x 48.
    Image.fromarray(image).save(voc / 'JPEGImages' / f'{name}.jpg', quality=90)
    labels = np.zeros((40, 48), np.uint8)
    labels[8:30, 10 + i:40] = 1 + i % 20    # An object, its boundary void.
    labels[7, 10:40] = IGNORE
    _write_palette_png(voc / 'SegmentationClass' / f'{name}.png', labels)
  (voc / 'ImageSets/Segmentation/train.txt').write_text('\n'.join(ids[:n_train]) + '\n')
  (voc / 'ImageSets/Segmentation/val.txt').write_text('\n'.join(ids[n_train:]) + '\n')
  return root / 'VOCdevkit'


def _ade(root, n_train=4, n_val=2):
  ade = root / 'ADEChallengeData2016'
  images = tfds_data.sample_images(n_train + n_val, size=40, seed=3)
  for i, image in enumerate(images):
    subset, k = ('training', i) if i < n_train else ('validation', i - n_train)
    name = f'ADE_{"train" if subset == "training" else "val"}_{k + 1:08d}'
    os.makedirs(ade / 'images' / subset, exist_ok=True)
    os.makedirs(ade / 'annotations' / subset, exist_ok=True)
    Image.fromarray(image[:, :36]).save(ade / 'images' / subset / f'{name}.jpg')
    labels = np.zeros((40, 36), np.uint8)                  # 0: other, ignored.
    labels[:20], labels[20:, :18], labels[20:, 18:] = 1 + i, 150, 0
    Image.fromarray(labels).save(ade / 'annotations' / subset / f'{name}.png')
  return ade


def _settings(**kw):
  return {'crop_size': 32, 'batch_size': 2, 'num_steps': 2, 'eval_batch_size': 2,
          'learning_rate': 0.01, **kw}


def _suite(settings, split='test'):
  config = ml_collections.ConfigDict({'seed': 0, 'image_size': 32, 'split': split,
                                      'evaluators': {'semantic_segmentation': settings}})
  return suite.Suite(config, parallel.make_mesh())


@pytest.fixture(scope='module')
def tiny_encoder():
  return encoder_api.random_encoder(common.base('tiny').model, 32, seed=0)


@pytest.mark.slow
def test_the_evaluator_end_to_end_on_a_voc_release_folder(tmp_path, tiny_encoder):
  voc = _voc(tmp_path)
  probes = _suite(_settings(dataset='pascal_voc', voc_dir=str(voc), head='linear'))
  metrics = probes(tiny_encoder)
  assert set(metrics) == {'semantic_segmentation/pascal_voc/linear/miou',
                          'semantic_segmentation/pascal_voc/linear/pixel_accuracy'}
  assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
  assert probes.counts['semantic_segmentation/pascal_voc/linear/miou'] == 3   # val.txt
  # split='validation' never reads VOC's val list: the last tenth of train is scored.
  os.remove(voc / 'VOC2012/ImageSets/Segmentation/val.txt')
  probes = _suite(_settings(dataset='pascal_voc', voc_dir=str(voc / 'VOC2012')),
                  split='validation')
  probes(tiny_encoder)
  assert probes.counts['semantic_segmentation/pascal_voc/linear/miou'] == 1


@pytest.mark.slow
def test_the_fine_tuned_decoder_end_to_end_on_an_ade20k_release_folder(tmp_path,
                                                                      tiny_encoder):
  ade = _ade(tmp_path)
  before = np.asarray(tiny_encoder.variables['params']['stem_conv']['kernel']).copy()
  probes = _suite(_settings(dataset='ade20k', ade_dir=str(ade), head='decoder',
                            decoder_channels=8))
  metrics = probes(tiny_encoder)
  assert set(metrics) == {'semantic_segmentation/ade20k/decoder/miou',
                          'semantic_segmentation/ade20k/decoder/pixel_accuracy'}
  assert all(0.0 <= v <= 1.0 for v in metrics.values()), metrics
  assert probes.counts['semantic_segmentation/ade20k/decoder/pixel_accuracy'] == 2
  # Fine-tuning trains a copy: the encoder other evaluators see is untouched.
  np.testing.assert_array_equal(tiny_encoder.variables['params']['stem_conv']['kernel'],
                                before)


def test_a_missing_release_folder_is_one_line_naming_it_and_its_layout(tmp_path,
                                                                      tiny_encoder):
  with pytest.raises(errors.MissingPathError) as e:
    _suite(_settings(dataset='ade20k'))(tiny_encoder)
  message = str(e.value)
  assert '\n' not in message and 'ADEChallengeData2016' in message
  assert 'its folder is not set' in message and 'ade_dir' in message
  assert 'scene_parse150' in message and 'nothing is downloaded' in message
  voc = _voc(tmp_path, n_train=2, n_val=1)
  with pytest.raises(errors.MissingPathError,
                     match=r"VOC2012 has no 'SegmentationClassAug'.*train_aug.txt"):
    _suite(_settings(voc_dir=str(voc), voc_train_set='train_aug'))(tiny_encoder)
  missing = tmp_path / 'nowhere'
  with pytest.raises(errors.MissingPathError, match=f'no such folder {str(missing)!r}'):
    _suite(_settings(voc_dir=str(missing)))(tiny_encoder)


def test_bad_options_are_config_errors_naming_what_is_valid():
  def check(**kw):
    suite.check(ml_collections.ConfigDict({'evaluators': {'semantic_segmentation': kw}}))
  check()
  with pytest.raises(errors.ConfigError, match=r"semantic_segmentation: dataset='ade'; "
                     r"valid: \('ade20k', 'pascal_voc'\)"):
    check(dataset='ade')
  with pytest.raises(errors.ConfigError, match=r"head='fcn'; valid: \('linear', 'decoder'\)"):
    check(head='fcn')
  with pytest.raises(errors.ConfigError, match=r'a linear probe reads frozen features'):
    check(encoder='finetuned')
  with pytest.raises(errors.ConfigError, match=r"features=\('block5',\)"):
    check(features=('block5',))
  with pytest.raises(errors.ConfigError, match=r'scale_range=\(2.0, 0.5\)'):
    check(scale_range=(2.0, 0.5))
