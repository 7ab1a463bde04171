"""ImageNet-Vid-Robust and YouTube-BB-Robust (vivi/evaluate/video_robustness.py): the pm-k
rule on hand-made neighbourhoods, the superclass rule on hand logits, the class maps against
the benchmark's files, and the evaluator end to end on a tiny release in the official layout
(real JPEG frames of a camera panning over photographs) against a hand computation."""

import json
import os

import ml_collections
import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy import stats as scipy_stats

from tests.evaluate import tiny_classifier
from vivi import classifier, errors, parallel
from vivi.evaluate import datasets, stats, suite, superclasses, video_robustness

VID = video_robustness.BENCHMARKS['imagenet_vid_robust']
YTBB = video_robustness.BENCHMARKS['ytbb_robust']


def _anchor(offsets_right: dict[int, bool]) -> tuple[video_robustness.Anchor, dict]:
  """An anchor (label 0) whose pm-set frames sit at the given offsets; predictions 0 where
  the frame is right, 1 where wrong. Offset 0 is the anchor itself."""
  frames = tuple((o, f'v/{100 + o:06d}.JPEG', frozenset({0})) for o in offsets_right if o)
  predictions = {f'v/{100 + o:06d}.JPEG': 0 if right else 1
                 for o, right in offsets_right.items()}
  return video_robustness.Anchor('v/000100.JPEG', frozenset({0}), frames), predictions


def test_pm_k_counts_an_anchor_only_while_every_frame_within_k_is_right():
  # Anchor right, its neighbour at distance 3 wrong, the rest right; the frame at +2 was
  # reviewed out of the pm-set, so nothing is asked of it.
  anchor, predictions = _anchor({0: True, -1: True, 1: True, -3: False, 4: True, -10: True})
  counts = video_robustness.pm_k_counts([anchor], predictions, ks=(0, 2, 3, 4, 10))
  assert counts['anchor'] == (1, 1)
  assert [counts[k][0] for k in (0, 2, 3, 4, 10)] == [1, 1, 0, 0, 0]
  # A wrong anchor is wrong for every k; a right one with a right pm-set for every k.
  wrong, p_wrong = _anchor({0: False, 1: True})
  right, p_right = _anchor({0: True, -2: True, 5: True})
  p_right = {k.replace('v/', 'w/'): v for k, v in p_right.items()}
  right = video_robustness.Anchor('w/000100.JPEG', right.labels,
                                  tuple((o, f.replace('v/', 'w/'), lab)
                                        for o, f, lab in right.frames))
  counts = video_robustness.pm_k_counts([wrong, right], {**p_wrong, **p_right}, ks=(10,))
  assert counts['anchor'] == (1, 2) and counts[10] == (1, 2)


def test_a_frame_is_right_when_its_prediction_is_any_of_its_labels():
  frames = ((1, 'v/000101.JPEG', frozenset({4, 7})),)
  anchor = video_robustness.Anchor('v/000100.JPEG', frozenset({2, 4}), frames)
  counts = video_robustness.pm_k_counts(
      [anchor], {'v/000100.JPEG': 4, 'v/000101.JPEG': 7}, ks=(1,))
  assert counts[1] == (1, 1)
  counts = video_robustness.pm_k_counts(
      [anchor], {'v/000100.JPEG': 4, 'v/000101.JPEG': 2}, ks=(1,))
  assert counts['anchor'] == (1, 1) and counts[1] == (0, 1)


def test_superclass_is_the_class_with_the_highest_member_logit():
  logits = np.zeros((3, 1000), np.float32)
  logits[0, 404] = 5.0                   # airplane's only member.
  logits[1, 200] = 3.0                   # One dog breed...
  logits[1, [147, 148]] = 2.5            # ...beats both whales: the max, not the mean.
  logits[2] = -100.0                     # All equal: the first class.
  names = [VID.classes[i] for i in video_robustness.superclass_predictions(logits,
                                                                           VID.members)]
  assert names == ['airplane', 'dog', 'airplane']
  # A YouTube-BB class without ImageNet members (cow, giraffe, ...) is never predicted, even
  # when every ImageNet logit is far below zero.
  scores = video_robustness.superclass_scores(logits, YTBB.members)
  assert np.isneginf(scores[:, YTBB.classes.index('cow')]).all()
  assert [YTBB.classes[i] for i in video_robustness.superclass_predictions(
      logits, YTBB.members)] == ['airplane', 'dog', 'person']


def test_class_maps_match_the_benchmark_files():
  # Sizes of rev_class_idx_map.json (imagenet-testbed's imagenet-vid-robust_metadata/ and
  # ytbb-robust_metadata/), class by class in the label order, and their totals.
  vid_sizes = [1, 3, 4, 2, 59, 3, 10, 1, 118, 5, 2, 4, 1, 1, 1, 1, 11, 13, 1, 2, 1, 1, 17,
               1, 1, 1, 5, 15, 2, 1]
  ytbb_sizes = [3, 59, 2, 6, 3, 4, 0, 7, 0, 2, 1, 1, 2, 1, 0, 1, 7, 1, 0, 118, 2, 1, 0, 10]
  assert [len(m) for m in superclasses.VID_MEMBERS] == vid_sizes and sum(vid_sizes) == 288
  assert [len(m) for m in superclasses.YTBB_MEMBERS] == ytbb_sizes
  assert sum(ytbb_sizes) == 231
  assert len(VID.classes) == 30 and len(YTBB.classes) == 24
  assert VID.classes[:3] == ('airplane', 'antelope', 'bear') and VID.classes[-1] == 'zebra'
  assert YTBB.classes[22:] == ('none', 'car')
  for members in (superclasses.VID_MEMBERS, superclasses.YTBB_MEMBERS):
    flat = [i for m in members for i in m]
    assert len(flat) == len(set(flat)) and all(0 <= i < 1000 for i in flat)


def test_clopper_pearson_matches_scipy_beta_quantiles():
  for k, n in ((754, 1109), (553, 1109), (0, 7), (7, 7), (1, 3)):
    low, high = stats.clopper_pearson(k, n, 0.95)
    want_low = scipy_stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    want_high = scipy_stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    np.testing.assert_allclose([low, high], [want_low, want_high], rtol=1e-9, atol=1e-12)
  # VIVI Table 3's intervals of 1,109 anchors: 68.0 [65.2, 70.7], 62.2 [59.3, 65.1] and
  # 46.3 [43.3, 49.2] (percent) are 754, 690 and 513 of them at 95%.
  for k, want in ((754, (65.2, 70.7)), (690, (59.3, 65.1)), (513, (43.3, 49.2))):
    assert [round(100 * x, 1) for x in stats.clopper_pearson(k, 1109, 0.95)] == list(want)


# ---------------------------------------------------------------------------------------
# The release layout.

def _write_jpeg(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image).save(path, quality=90)


def _write_json(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(data, f, indent=1)


def test_ytbb_frames_under_ytbb_videos_take_their_anchors_labels(tmp_path):
  folder = tmp_path / 'imagenet_vid_ytbb_robust' / 'ytbb-robust'
  frames = tiny_classifier.pan_frames(skimage.data.coffee(), 5)
  keys = [f'KxDh7a8_AmU_44666/frame-{1115 + i}.jpg' for i in range(5)]
  for key, frame in zip(keys, frames):
    _write_jpeg(str(folder / 'ytbb_videos' / key), frame)
  anchor = keys[2]
  _write_json(str(folder / 'metadata' / 'labels.json'), {anchor: [0, 3]})
  _write_json(str(folder / 'metadata' / 'pmsets.json'), {anchor: [keys[0], keys[1], keys[4]]})
  root = video_robustness.dataset_folder(str(tmp_path / 'imagenet_vid_ytbb_robust'), YTBB)
  (a,) = video_robustness.read_anchors(root, YTBB)
  assert a.key == anchor and a.labels == {0, 3}
  assert [(o, lab) for o, _, lab in a.frames] == [(-2, {0, 3}), (-1, {0, 3}), (2, {0, 3})]
  paths = video_robustness.frame_paths(root, YTBB, [anchor, *(f for _, f, _ in a.frames)])
  assert paths[anchor] == str(folder / 'ytbb_videos' / anchor)
  # Person (0) and boat (3) are both right; at +2 a bird (1) breaks pm-2 but not pm-1.
  predictions = {keys[0]: 3, keys[1]: 0, anchor: 0, keys[4]: 1}
  counts = video_robustness.pm_k_counts([a], predictions, ks=(1, 2))
  assert counts['anchor'] == (1, 1) and counts[1] == (1, 1) and counts[2] == (0, 1)


def test_a_missing_or_malformed_release_is_named(tmp_path):
  options = ml_collections.ConfigDict(dict(video_robustness.DEFAULTS,
                                           release_dir=str(tmp_path / 'nowhere')))
  with pytest.raises(errors.MissingPathError, match='ImageNet-Vid-Robust.*imagenet-vid-robust'
                     r'/\{metadata/labels.json, metadata/pmsets.json'):
    video_robustness.VIDEO_ROBUSTNESS.run(None, options)
  options.release_dir = ''
  with pytest.raises(errors.MissingPathError, match='its folder is not set.*release_dir'):
    video_robustness.VIDEO_ROBUSTNESS.run(None, options)
  folder = tmp_path / 'imagenet-vid-robust'
  _write_json(str(folder / 'metadata' / 'pmsets.json'), {'val/v/000010.JPEG': []})
  _write_json(str(folder / 'metadata' / 'labels.json'), {'val/v/000010.JPEG': [30]})
  with pytest.raises(errors.DatasetError, match=r"labels.json: 'val/v/000010.JPEG' maps to "
                     r'\[30\].*\[0, 30\)'):
    video_robustness.read_anchors(str(folder), VID)
  _write_json(str(folder / 'metadata' / 'labels.json'), {'val/v/000010.JPEG': [3]})
  with pytest.raises(errors.DatasetError, match="no frame 'val/v/000010.JPEG'"):
    video_robustness.frame_paths(str(folder), VID, ['val/v/000010.JPEG'])
  # A class index in another order (the labels' ids would mean other classes).
  swapped = [list(c) for c in superclasses.VID_CLASSES]
  swapped[1], swapped[2] = swapped[2], swapped[1]
  _write_json(str(folder / 'misc' / 'imagenet_vid_class_index.json'),
              {str(i): c for i, c in enumerate(swapped)})
  with pytest.raises(errors.DatasetError, match=r"imagenet_vid_class_index.json: 30 classes, "
                     r"class 1 is \['n02131653', 'bear'\]"):
    video_robustness.check_class_index(str(folder), VID)
  config = ml_collections.ConfigDict(dict(
      seed=0, image_size=32, num_train=0, num_test=0,
      evaluators={'video_robustness': dict(ks=(11,))}))
  with pytest.raises(errors.ConfigError, match=r'video_robustness: ks=\(11,\).*\[0, 10\]'):
    suite.check(config)


def _hand_predictions(clf, paths, mesh, members=VID.members):
  """Each frame's class by the benchmark's rule, written out: the class whose best member
  logit is highest (the first such class; a class without members never)."""
  images = np.stack([datasets.read_image_file(p, clf.image_size) for p in paths])
  logits = clf.logits(images, mesh)
  classes = [c for c in range(len(members)) if members[c]]
  return [max(classes, key=lambda c: max(logits[i, m] for m in members[c]))
          for i in range(len(paths))]


@pytest.mark.slow
def test_evaluator_on_a_tiny_release_matches_a_hand_computation(tmp_path):
  mesh = parallel.make_mesh()
  clf_path = tiny_classifier.save_tiny_classifier(str(tmp_path / 'classifier'), mesh)
  clf = classifier.load_classifier(clf_path, mesh)
  release = tmp_path / 'imagenet_vid_ytbb_robust'
  folder = release / 'imagenet-vid-robust'
  # Three videos of seven frames (numbers 100..106), anchor 103; the frame at +1 of video 1
  # was reviewed out of its pm-set.
  videos = [f'ILSVRC2015_val_{v:08d}' for v in range(3)]
  photos = (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.rocket())
  keys = {}
  for video, photo in zip(videos, photos):
    keys[video] = [f'val/{video}/{100 + i:06d}.JPEG' for i in range(7)]
    for key, frame in zip(keys[video], tiny_classifier.pan_frames(photo, 7)):
      _write_jpeg(str(folder / key), frame)
  all_keys = [k for v in videos for k in keys[v]]
  predicted = dict(zip(all_keys, _hand_predictions(
      clf, [str(folder / k) for k in all_keys], mesh)))
  other = lambda key: (predicted[key] + 1) % 30
  # Labels: video 0 right everywhere; video 1's anchor right (one of two labels) and its
  # frame at -2 wrong; video 2's anchor wrong.
  labels = {k: [predicted[k]] for k in all_keys}
  v1 = keys[videos[1]]
  labels[v1[3]] = [other(v1[3]), predicted[v1[3]]]
  labels[v1[1]] = [other(v1[1])]
  labels[keys[videos[2]][3]] = [other(keys[videos[2]][3])]
  pmsets = {keys[v][3]: [k for i, k in enumerate(keys[v]) if i != 3] for v in videos}
  pmsets[v1[3]].remove(v1[4])
  _write_json(str(folder / 'metadata' / 'labels.json'), labels)
  _write_json(str(folder / 'metadata' / 'pmsets.json'), pmsets)
  _write_json(str(folder / 'misc' / 'imagenet_vid_class_index.json'),
              {str(i): list(c) for i, c in enumerate(superclasses.VID_CLASSES)})
  # YouTube-BB-Robust beside it: two anchors, frames under ytbb_videos/, labels for the
  # anchors only (their pm-set frames are judged against them).
  ytbb = release / 'ytbb-robust'
  ytbb_keys = [[f'{video}/frame-{n + i}.jpg' for i in range(4)]
               for video, n in (('-m2lapVUcdI_3000', 88), ('taPyucc_cOU_13000', 388))]
  for keys_, photo in zip(ytbb_keys, (skimage.data.coffee(), skimage.data.astronaut())):
    for key, frame in zip(keys_, tiny_classifier.pan_frames(photo, 4, step=5)):
      _write_jpeg(str(ytbb / 'ytbb_videos' / key), frame)
  ytbb_predicted = dict(zip(sum(ytbb_keys, []), _hand_predictions(
      clf, [str(ytbb / 'ytbb_videos' / k) for k in sum(ytbb_keys, [])], mesh, YTBB.members)))
  ytbb_labels = {ytbb_keys[0][1]: [ytbb_predicted[ytbb_keys[0][1]]],
                 ytbb_keys[1][1]: [(ytbb_predicted[ytbb_keys[1][1]] + 1) % 24]}
  ytbb_pmsets = {k[1]: [k[0], k[2], k[3]] for k in ytbb_keys}
  _write_json(str(ytbb / 'metadata' / 'labels.json'), ytbb_labels)
  _write_json(str(ytbb / 'metadata' / 'pmsets.json'), ytbb_pmsets)

  config = ml_collections.ConfigDict(dict(
      seed=0, image_size=32, num_train=0, num_test=0, split='test',
      evaluators={'video_robustness': dict(release_dir=str(release), classifier=clf_path,
                                           benchmarks=('imagenet_vid_robust', 'ytbb_robust'),
                                           ks=(0, 1, 2, 10), batch_size=4)}))
  evaluation = suite.Suite(config, mesh)
  ctx = evaluation.context(None)   # The evaluator scores the classifier, not the encoder.
  metrics, _ = evaluation.evaluate(ctx, 'video_robustness')

  # By hand: an anchor is right under pm-k if it and every pm-set frame at most k frames
  # away are predicted one of their labels.
  def hand(k):
    right = 0
    for anchor, frames in pmsets.items():
      n = int(anchor[-9:-5])
      window = [anchor] + [f for f in frames if abs(int(f[-9:-5]) - n) <= k]
      right += all(predicted[f] in labels[f] for f in window)
    return right
  assert [hand(k) for k in (0, 1, 2, 10)] == [2, 2, 1, 1]   # The labels' design.
  for k in (0, 1, 2, 10):
    acc = metrics[f'imagenet_vid_robust/pm{k}/accuracy']
    assert acc == hand(k) / 3
    np.testing.assert_allclose(
        [metrics[f'imagenet_vid_robust/pm{k}/ci_low'],
         metrics[f'imagenet_vid_robust/pm{k}/ci_high']],
        [scipy_stats.beta.ppf(0.025, hand(k), 3 - hand(k) + 1),
         scipy_stats.beta.ppf(0.975, hand(k) + 1, 3 - hand(k)) if hand(k) < 3 else 1.0],
        rtol=1e-9)
    assert metrics[f'imagenet_vid_robust/pm{k}/anchor_accuracy'] == 2 / 3
    assert metrics[f'imagenet_vid_robust/pm{k}/drop'] == pytest.approx(2 / 3 - acc)
    assert ctx.counts[f'imagenet_vid_robust/pm{k}/accuracy'] == 3
  # YouTube-BB-Robust: the second anchor is wrong; the first is right under pm-k while its
  # frames up to k away are predicted its label.
  first = ytbb_keys[0]
  for k in (0, 1, 2, 10):
    window = [first[1]] + [f for i, f in enumerate(first) if i != 1 and abs(i - 1) <= k]
    right = all(ytbb_predicted[f] in ytbb_labels[first[1]] for f in window)
    assert metrics[f'ytbb_robust/pm{k}/accuracy'] == right / 2
    assert metrics[f'ytbb_robust/pm{k}/anchor_accuracy'] == 1 / 2
    assert ctx.counts[f'ytbb_robust/pm{k}/accuracy'] == 2
  # limit: the first anchor by path (video 0, right everywhere).
  config.evaluators.video_robustness.benchmarks = ('imagenet_vid_robust',)
  config.evaluators.video_robustness.limit = 1
  evaluation = suite.Suite(config, mesh)
  metrics, _ = evaluation.evaluate(evaluation.context(None), 'video_robustness')
  assert metrics['imagenet_vid_robust/pm10/accuracy'] == 1.0
