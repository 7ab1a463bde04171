"""The ImageNet robustness evaluators (vivi/evaluate/imagenet_robustness.py): the 200-class
subsets against the benchmarks' files, their masking, ImageNet-C's mCE and ObjectNet's
scoring on hand numbers, ObjectNet's mapping files, the missing-data messages, and each
evaluator end to end (TFDS datasets written with the installed builders' features, folders
in the official release layouts, real pixels) against a hand computation from the tiny
classifier's logits."""

import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from tests import tfds_data
from tests.evaluate import tiny_classifier
from vivi import classifier, errors, parallel
from vivi.evaluate import datasets, imagenet_robustness, suite
from vivi.lazy_import import tensorflow_datasets as tfds

R = imagenet_robustness
SIZE = tiny_classifier.IMAGE_SIZE
BATCH = 4   # Every split holds 4 images: one compiled batch shape for the whole file.


def test_200_class_subsets_match_the_benchmarks_files():
  wnids = R.imagenet_wnids()
  assert len(wnids) == 1000 and wnids[0] == 'n01440764' and wnids[-1] == 'n15075141'
  for classes in (R.IMAGENET_A_CLASSES, R.IMAGENET_R_CLASSES):
    assert len(classes) == 200 and list(classes) == sorted(set(classes))
    assert classes[0] >= 0 and classes[-1] < 1000
  # natural-adv-examples eval.py: thousand_k_to_200 = {..., 6: 0, ..., 11: 1, ..., 13: 2,
  # ..., 988: 199, ...}; imagenet-r eval.py's imagenet_r_indices: [1, 2, 4, ..., 983, 988].
  assert [wnids[i] for i in R.IMAGENET_A_CLASSES[:3]] == ['n01498041', 'n01531178',
                                                          'n01534433']
  assert [wnids[i] for i in R.IMAGENET_R_CLASSES[:3]] == ['n01443537', 'n01484850',
                                                          'n01494475']
  assert R.IMAGENET_A_CLASSES[-1] == R.IMAGENET_R_CLASSES[-1] == 988   # n12267677, acorn.
  assert len(set(R.IMAGENET_A_CLASSES) & set(R.IMAGENET_R_CLASSES)) == 86
  # The TFDS builders label both with ImageNet's 1,000 wnids, in this order.
  for name in ('imagenet_a', 'imagenet_r', 'imagenet_sketch', 'imagenet_v2'):
    assert tuple(tfds.builder(name).info.features['label'].names) == wnids


def test_the_200_class_prediction_is_the_argmax_over_their_columns():
  logits = np.zeros((3, 1000), np.float32)
  logits[0, 0] = 10.0                  # Tench, not an ImageNet-A class: never predicted...
  logits[0, [11, 13]] = 3.0            # ...a tie between two that are: the first.
  logits[1, 988] = -1.0                # All others 0: the first class of the subset.
  logits[2, 13] = 2.0
  np.testing.assert_array_equal(R.subset_predictions(logits, R.IMAGENET_A_CLASSES),
                                [11, 6, 13])
  np.testing.assert_array_equal(R.subset_predictions(logits, (988, 13, 0)), [0, 13, 13])
  # Ties in a subset given out of order go to the first it lists.
  np.testing.assert_array_equal(R.subset_predictions(logits[:1], (13, 11)), [13])


def test_alexnet_errors_are_image_counts_that_average_to_the_published_values():
  from tensorflow_datasets.datasets.imagenet2012_corrupted import (
    imagenet2012_corrupted_dataset_builder as tfds_c,
  )
  assert list(R.BENCHMARK_CORRUPTIONS) == tfds_c.BENCHMARK_CORRUPTIONS
  assert set(R.EXTRA_CORRUPTIONS) == set(tfds_c.EXTRA_CORRUPTIONS)
  # github.com/google-research/augmix imagenet.py ALEXNET_ERR (averaged over severities).
  published = [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
               0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840,
               0.606500]
  table = np.array([R.ALEXNET_ERRORS[c] for c in R.BENCHMARK_CORRUPTIONS])
  assert table.shape == (15, 5)
  np.testing.assert_allclose(table.mean(axis=1), published, atol=1e-6)
  np.testing.assert_allclose(table * 50_000, np.round(table * 50_000), atol=1e-6)


def test_mce_of_a_two_corruption_table_by_hand():
  table = {'gaussian_noise': {1: 0.5, 2: 0.7}, 'brightness': {1: 0.2, 2: 0.3},
           'spatter': {1: 0.4}}
  out = R.corruption_errors(table)
  ce_noise = (0.5 + 0.7) / (0.69528 + 0.82542)
  ce_bright = (0.2 + 0.3) / (0.45140 + 0.48502)
  assert out['ce'] == pytest.approx({'gaussian_noise': ce_noise, 'brightness': ce_bright})
  assert out['mce'] == pytest.approx((ce_noise + ce_bright) / 2)
  assert out['mean_error'] == pytest.approx((0.6 + 0.25) / 2)    # Spatter: no AlexNet.
  assert out['error'] == pytest.approx({'gaussian_noise': 0.6, 'brightness': 0.25,
                                        'spatter': 0.4})
  # With the five severities CE is the mean error over AlexNet's published mean.
  five = R.corruption_errors({'fog': dict.fromkeys(R.SEVERITIES, 0.41)})
  assert five['mce'] == pytest.approx(0.41 / 0.819324, rel=1e-6)


def test_objectnet_prediction_among_the_overlapping_classes_by_hand():
  classes = R.ObjectNetClasses(('alarm_clock', 'banana'), ('Alarm clock', 'Banana'),
                               ((409, 530), (954,)))
  logits = np.zeros((3, 1000))
  logits[0, 100] = 9.0    # Outside the overlap, then digital clock.
  logits[0, 530] = 5.0
  logits[1, 954] = 1.0    # Banana, but labelled alarm clock.
  logits[2] = -1.0        # Ties among the three: analog clock (409) first.
  top1, top5 = R.objectnet_hits(logits, [0, 0, 1], classes)
  np.testing.assert_array_equal(top1, [True, False, False])
  np.testing.assert_array_equal(top5, [True, True, True])   # Only 3 classes to predict.
  top1, top5 = R.objectnet_hits(logits, [0, 0, 1], classes, overlap_only=False)
  np.testing.assert_array_equal(top1, [False, False, False])
  # Image 0: 100 then 530 (right); image 1: 954 first, then 0, 1, 2, 3; image 2: columns
  # 0..4 (none overlapping).
  np.testing.assert_array_equal(top5, [True, False, False])


# ---------------------------------------------------------------------------------------
# ObjectNet's release folder.

def _imagenet_names(perm):
  """imagenet_to_label_2012_v2 and pytorch_to_imagenet_2012_id.json for a permutation
  (PyTorch index p is ILSVRC2012 id perm[p]); names 'class <p>', two of them 'crane' (the
  real file's one duplicated name)."""
  lines = [''] * 1000
  for p, i in enumerate(perm):
    lines[i] = f'class {p}'
  lines[perm[134]] = lines[perm[517]] = 'crane'
  return lines, {str(p): int(i) for p, i in enumerate(perm)}


def _write_release(root, folders, overlap, perm, images):
  """objectnet-1.0 in the release's layout: `folders` {folder: ObjectNet class},
  `overlap` {ObjectNet class: PyTorch indices}, `images` {folder: [uint8 image]} as PNGs."""
  lines, pytorch = _imagenet_names(perm)
  (root / 'mappings').mkdir(parents=True)
  with open(root / R.FOLDER_TO_LABEL, 'w') as f:
    json.dump(folders, f, indent=2)
  with open(root / R.OBJECTNET_TO_IMAGENET, 'w') as f:
    json.dump({label: '; '.join(lines[perm[p]] for p in members)
               for label, members in overlap.items()}, f, indent=2)
  with open(root / R.PYTORCH_TO_2012_ID, 'w') as f:
    json.dump(pytorch, f, indent=2)
  (root / R.IMAGENET_2012_LABELS).write_text('\n'.join(lines) + '\n')
  for folder, pictures in images.items():
    (root / 'images' / folder).mkdir(parents=True)
    for i, picture in enumerate(pictures):
      Image.fromarray(picture).save(root / 'images' / folder / f'{i:03d}{folder[:4]}.png')
  return root


def _red_border(image):
  out = image.copy()
  out[[0, -1]] = out[:, [0, -1]] = (255, 0, 0)
  return out


def test_the_overlapping_classes_are_counted_from_the_mapping_files(tmp_path):
  perm = np.random.default_rng(0).permutation(1000)
  folders = {'alarm_clock': 'Alarm clock', 'banana': 'Banana', 'dog_bed': 'Dog bed',
             'squeegee': 'Squeegee', 'bucket': 'Bucket'}
  overlap = {'Alarm clock': (409, 530), 'Banana': (954,), 'Bucket': (463,)}
  root = _write_release(tmp_path / 'objectnet-1.0', folders, overlap, perm,
                        {'banana': [], 'bucket': [], 'alarm_clock': []})
  classes = R.read_mappings(str(root))
  assert classes.folders == ('alarm_clock', 'banana', 'bucket')   # 3 of the 5 overlap.
  assert classes.names == ('Alarm clock', 'Banana', 'Bucket')
  assert classes.members == ((409, 530), (954,), (463,))   # Through the permutation.
  assert classes.imagenet_classes == (409, 463, 530, 954)
  # A class that maps to 'crane', two lines of imagenet_to_label_2012_v2, is an error.
  with open(root / R.OBJECTNET_TO_IMAGENET, 'w') as f:
    json.dump({'Banana': 'crane'}, f)
  with pytest.raises(errors.DatasetError, match="'Banana' maps to 'crane', which is more "
                     'than one line'):
    R.read_mappings(str(root))
  with open(root / R.OBJECTNET_TO_IMAGENET, 'w') as f:
    json.dump({'Kettle': 'class 3'}, f)
  with pytest.raises(errors.DatasetError, match="class 'Kettle' has no folder"):
    R.read_mappings(str(root))


def _config(evaluator, data_dir='', **options):
  return ml_collections.ConfigDict(dict(
      seed=0, image_size=SIZE, num_train=0, num_test=0, split='test', data_dir=str(data_dir),
      evaluators={evaluator: dict(batch_size=BATCH, **options)}))


def test_missing_data_is_one_line_naming_it(tmp_path):
  mesh = parallel.make_mesh()

  def run(evaluator, **options):
    evaluation = suite.Suite(_config(evaluator, tmp_path, **options), mesh)
    evaluation.evaluate(evaluation.context(None), evaluator)

  with pytest.raises(errors.NotPreparedError) as e:
    run('imagenet_variants', benchmarks=('imagenet_a',))
  message = str(e.value)
  assert '\n' not in message and "evaluator 'imagenet_variants' needs the TFDS dataset " \
      "'imagenet_a'" in message
  assert f'tfds build imagenet_a --data_dir={tmp_path}' in message
  with pytest.raises(errors.NotPreparedError) as e:
    run('imagenet_c', corruptions=('fog',), severities=(3,))
  message = str(e.value)
  assert '\n' not in message and "'imagenet2012_corrupted/fog_3'" in message
  assert 'tfds build imagenet2012_corrupted/fog_3' in message
  assert 'downloaded by hand' in message   # ImageNet's validation tarball.
  with pytest.raises(errors.MissingPathError, match=r"'objectnet' reads ObjectNet .*: no "
                     r'such folder .*mappings/folder_to_objectnet_label.json'):
    run('objectnet', objectnet_dir=str(tmp_path / 'objectnet-1.0'))
  with pytest.raises(errors.MissingPathError, match='ObjectNet .*its folder is not set'):
    run('objectnet')
  with pytest.raises(errors.MissingPathError, match=r"ImageNet-3DCC .*no such folder.*"
                     r'<corruption>/<severity 1-5>/<wnid>'):
    run('imagenet_c', corruptions=(), dcc_dir=str(tmp_path / '3dcc'))


def test_bad_options_are_config_errors():
  def check(evaluator, **options):
    suite.check(ml_collections.ConfigDict({'evaluators': {evaluator: options}}))
  for evaluator in ('imagenet_variants', 'imagenet_c', 'objectnet'):
    check(evaluator)
    with pytest.raises(errors.ConfigError, match=f'{evaluator}: limit=-1'):
      check(evaluator, limit=-1)
  with pytest.raises(errors.ConfigError, match=r"benchmarks=\('objectnet',\): one or more of"):
    check('imagenet_variants', benchmarks=('objectnet',))
  with pytest.raises(errors.ConfigError, match=r'severities=\(0, 1\)'):
    check('imagenet_c', severities=(0, 1))
  with pytest.raises(errors.ConfigError, match=r"corruptions=\('fog', 'fog'\)"):
    check('imagenet_c', corruptions=('fog', 'fog'))
  with pytest.raises(errors.ConfigError, match='nothing to score'):
    check('imagenet_c', corruptions=())
  check('imagenet_c', corruptions=('spatter',))
  with pytest.raises(errors.ConfigError, match='border=-1'):
    check('objectnet', border=-1)
  with pytest.raises(errors.ConfigError, match='crop_fraction=0'):
    check('objectnet', crop_fraction=0.0)


# ---------------------------------------------------------------------------------------
# End to end.

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """(mesh, classifier folder, classifier) of the tiny random ImageNet classifier."""
  mesh = parallel.make_mesh()
  path = tiny_classifier.save_tiny_classifier(str(tmp_path_factory.mktemp('clf')), mesh)
  return mesh, path, classifier.load_classifier(path, mesh)


def _examples(images, labels):
  return [{'image': im, 'label': int(label), 'file_name': f'n{i:08d}.JPEG'}
          for i, (im, label) in enumerate(zip(images, labels))]


def _written_images(name, data_dir, split, images, crop_fraction=datasets.CROP_FRACTION):
  """Writes `images` as the TFDS dataset `name` (labels 0) and reads them back as the
  evaluators read them (JPEG-decoded, resized, centre-cropped)."""
  tfds_data.write_tfds(name, data_dir, {split: _examples(images, [0] * len(images))})
  builder = tfds.builder(name, data_dir=data_dir)
  prepare = lambda ex: (datasets.resize_center_crop(ex['image'], SIZE, crop_fraction),
                        ex['label'])
  return np.concatenate([b[0] for b in datasets.tfds_examples(builder, split, prepare, BATCH)])


@pytest.mark.slow
def test_variants_end_to_end_match_a_hand_computation(tmp_path, tiny):
  mesh, clf_path, clf = tiny
  data_dir = str(tmp_path / 'tfds')
  sets = {'imagenet2012': 'validation', 'imagenet_v2': 'test', 'imagenet_a': 'test',
          'imagenet_r': 'test', 'imagenet_sketch': 'test'}
  subsets = {'imagenet_a': R.IMAGENET_A_CLASSES, 'imagenet_r': R.IMAGENET_R_CLASSES}
  expected, masked = {}, 0
  for seed, (name, split) in enumerate(sets.items()):
    photos = [im[:40] for im in tfds_data.sample_images(BATCH, size=48, seed=seed)]
    logits = clf.logits(_written_images(name, data_dir, split, photos), mesh, BATCH)
    # By hand: the best class among the dataset's classes (ImageNet-A/-R: their 200).
    candidates = subsets.get(name, range(1000))
    predicted = [max(candidates, key=lambda c, row=row: row[c]) for row in logits]
    # Labels: each image's prediction, but image 1's: another class of the dataset.
    other = lambda c, candidates=tuple(candidates): candidates[
        (candidates.index(c) + 1) % len(candidates)]
    labels = [other(p) if i == 1 else p for i, p in enumerate(predicted)]
    tfds_data.write_tfds(name, data_dir, {split: _examples(photos, labels)})
    expected[name] = np.mean(np.array(predicted) == labels)
    # Images labelled with a 200-class prediction that the 1,000-way argmax would miss.
    masked += sum(label == p != int(np.argmax(row))
                  for label, p, row in zip(labels, predicted, logits))
  assert masked > 0
  assert set(expected.values()) == {0.75}

  evaluation = suite.Suite(_config('imagenet_variants', data_dir, classifier=clf_path,
                                   benchmarks=tuple(sets)), mesh)
  ctx = evaluation.context(None)   # The evaluator scores the classifier, not the encoder.
  metrics, _ = evaluation.evaluate(ctx, 'imagenet_variants')
  assert metrics == pytest.approx({f'{name}/top1': acc for name, acc in expected.items()})
  assert all(isinstance(v, float) for v in metrics.values())
  assert ctx.counts == {f'{name}/top1': BATCH for name in sets}
  # limit: the first two images of each (image 1 is the wrong one).
  evaluation = suite.Suite(_config('imagenet_variants', data_dir, classifier=clf_path,
                                   benchmarks=('imagenet_a', 'imagenet_v2'), limit=2), mesh)
  ctx = evaluation.context(None)
  metrics, _ = evaluation.evaluate(ctx, 'imagenet_variants')
  assert metrics == {'imagenet_a/top1': 0.5, 'imagenet_v2/top1': 0.5}
  assert ctx.counts == {'imagenet_a/top1': 2, 'imagenet_v2/top1': 2}


@pytest.mark.slow
def test_corruptions_end_to_end_match_a_hand_computation(tmp_path, tiny):
  mesh, clf_path, clf = tiny
  data_dir = str(tmp_path / 'tfds')
  wnids = R.imagenet_wnids()
  # ImageNet-C: 2 corruptions x 2 severities, 224-px images (the builder's fixed shape); by
  # hand, k of the 4 images labelled with their prediction (error 1 - k / 4).
  rights = {('gaussian_noise', 1): 3, ('gaussian_noise', 2): 1, ('brightness', 1): 4,
            ('brightness', 2): 2}
  hand = {}
  for seed, ((c, s), k) in enumerate(rights.items()):
    name = f'imagenet2012_corrupted/{c}_{s}'
    photos = tfds_data.sample_images(BATCH, size=224, seed=10 + seed)
    predicted = clf.logits(_written_images(name, data_dir, 'validation', photos, 1.0), mesh,
                           BATCH).argmax(1)
    labels = [p if i < k else (p + 1) % 1000 for i, p in enumerate(predicted)]
    tfds_data.write_tfds(name, data_dir, {'validation': _examples(photos, labels)})
    hand.setdefault(c, {})[s] = 1 - k / BATCH
  # ImageNet-3DCC: near_focus at severities 1 and 2, JPEGs in wnid folders; by hand 1 of 4
  # and 2 of 4 in their predicted class's folder.
  dcc = tmp_path / 'ImageNet-3DCC'
  dcc_error = {}
  for s, k in ((1, 1), (2, 2)):
    staging = tmp_path / f'staging{s}'
    staging.mkdir()
    paths = []
    for i, photo in enumerate(tfds_data.sample_images(BATCH, size=56, seed=20 + s)):
      paths.append(staging / f'ILSVRC2012_val_{i:08d}.JPEG')
      Image.fromarray(photo).save(paths[-1], quality=90)
    images = np.stack([datasets.read_image_file(str(p), SIZE, crop_fraction=1.0)
                       for p in paths])
    for i, (path, p) in enumerate(zip(paths, clf.logits(images, mesh, BATCH).argmax(1))):
      folder = dcc / 'near_focus' / str(s) / wnids[p if i < k else (p + 7) % 1000]
      folder.mkdir(parents=True, exist_ok=True)
      os.replace(path, folder / path.name)
    dcc_error[s] = 1 - k / BATCH

  evaluation = suite.Suite(_config(
      'imagenet_c', data_dir, classifier=clf_path, corruptions=('gaussian_noise', 'brightness'),
      severities=(1, 2), dcc_dir=str(dcc), dcc_corruptions=('near_focus',)), mesh)
  ctx = evaluation.context(None)
  metrics, _ = evaluation.evaluate(ctx, 'imagenet_c')
  ce_noise = (hand['gaussian_noise'][1] + hand['gaussian_noise'][2]) / (0.69528 + 0.82542)
  ce_bright = (hand['brightness'][1] + hand['brightness'][2]) / (0.45140 + 0.48502)
  assert metrics == pytest.approx({
      'gaussian_noise/error': (0.25 + 0.75) / 2, 'brightness/error': (0.0 + 0.5) / 2,
      'gaussian_noise/ce': ce_noise, 'brightness/ce': ce_bright,
      'mce': (ce_noise + ce_bright) / 2, 'mean_error': (0.5 + 0.25) / 2,
      '3dcc/near_focus/error': (dcc_error[1] + dcc_error[2]) / 2,
      '3dcc/mean_error': (0.75 + 0.5) / 2})
  assert all(isinstance(v, float) for v in metrics.values())
  assert ctx.counts['mce'] == 16 and ctx.counts['gaussian_noise/ce'] == 8
  assert ctx.counts['3dcc/near_focus/error'] == 8


@pytest.mark.slow
def test_objectnet_end_to_end_matches_a_hand_computation(tmp_path, tiny):
  mesh, clf_path, clf = tiny
  # Photographs with the release's 1-pixel red border, read by hand as the release's loader
  # reads them (2 pixels cut from each side), then resized and centre-cropped.
  photos = [_red_border(im[:, :52]) for im in tfds_data.sample_images(8, size=60, seed=3)]
  crops = np.stack([np.asarray(datasets.resize_center_crop(im[2:-2, 2:-2], SIZE))
                    for im in photos])
  logits = clf.logits(crops, mesh, BATCH)
  ranked = np.argsort(-logits, axis=1, kind='stable')
  # Roles: photo a (an alarm clock) is right, its best class the alarm clock's one; photo q
  # (a bucket) is right among the overlap only: its best class is outside it, its second
  # the bucket's; photo w (a banana) is wrong: the banana's class is its worst; photo z (an
  # alarm clock) is whatever the rule makes it; photo x is of a class ImageNet lacks.
  a, q = next((a, q) for a in range(8) for q in range(8)
              if ranked[a, 0] not in (ranked[q, 0], ranked[q, 1]))
  w, z, x = [j for j in range(8) if j not in (a, q)][:3]
  t = int(ranked[w, -1])
  assert t not in {ranked[a, 0], ranked[q, 0], ranked[q, 1]}
  overlap = {'Alarm clock': (int(ranked[a, 0]),), 'Banana': (t,),
             'Bucket': (int(ranked[q, 1]),)}
  folders = {'alarm_clock': 'Alarm clock', 'banana': 'Banana', 'bucket': 'Bucket',
             'dog_bed': 'Dog bed', 'squeegee': 'Squeegee'}
  perm = np.random.default_rng(1).permutation(1000)
  root = _write_release(tmp_path / 'objectnet-1.0', folders, overlap, perm,
                        {'alarm_clock': [photos[a], photos[z]], 'banana': [photos[w]],
                         'bucket': [photos[q]], 'dog_bed': [photos[x]]})
  rows, labels = logits[[a, z, w, q]], [0, 0, 1, 2]   # In path order.
  members = list(overlap.values())
  allowed = sorted({i for m in members for i in m})

  def hand(candidates, k):
    """Right when one of the k best candidates is one of the label's ImageNet classes."""
    best = [sorted(candidates, key=lambda c, row=row: -row[c])[:k] for row in rows]
    return [any(p in members[y] for p in b) for b, y in zip(best, labels)]

  assert hand(allowed, 1)[::2] == [True, False] and hand(allowed, 1)[3]
  assert not any(hand(range(1000), 1)[2:])
  for overlap_only in (True, False):
    candidates = allowed if overlap_only else range(1000)
    evaluation = suite.Suite(_config('objectnet', objectnet_dir=str(root),
                                     classifier=clf_path, overlap_only=overlap_only), mesh)
    ctx = evaluation.context(None)
    metrics, _ = evaluation.evaluate(ctx, 'objectnet')
    assert metrics == pytest.approx({'top1': np.mean(hand(candidates, 1)),
                                     'top5': np.mean(hand(candidates, 5)),
                                     'images': 4.0, 'classes': 3.0})
    assert ctx.counts == {'top1': 4, 'top5': 4}
