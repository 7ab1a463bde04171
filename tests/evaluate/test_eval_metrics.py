"""Evaluation metrics: weighted kNN, pm-k robustness, frame-to-video retrieval."""

import numpy as np
import pytest

from tests import helpers
from vivi.evaluate import knn, retrieval, robustness
from vivi.input import synthetic


def _knn_reference(train_x, train_y, test_x, num_classes, k, temperature):
  """The weighted vote written out, one test example at a time."""
  a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
  b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
  out = []
  for row in b @ a.T:
    nearest = np.argsort(-row)[:k]
    votes = np.zeros(num_classes)
    for j in nearest:
      votes[train_y[j]] += np.exp(row[j] / temperature)
    out.append(np.argmax(votes))
  return np.array(out)


# ---------------------------------------------------------------------------------------
# kNN.


def test_knn_separated_clusters_are_perfect():
  rng = np.random.default_rng(0)
  x, y = helpers.clusters(rng, 5, 40)
  order = rng.permutation(len(x))
  train, test = order[:150], order[150:]
  assert knn.knn_accuracy(x[train], y[train], x[test], y[test], 5) == 1.0
  # Chunking the test set changes nothing.
  assert knn.knn_accuracy(x[train], y[train], x[test], y[test], 5, batch_size=7) == 1.0


def test_knn_shuffled_labels_are_near_chance():
  rng = np.random.default_rng(1)
  x, y = helpers.clusters(rng, 4, 500)
  y = rng.permutation(y)  # The features no longer say anything about the labels.
  acc = knn.knn_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], 4)
  assert abs(acc - 0.25) < 0.1, acc


@pytest.mark.parametrize('k,temperature,batch_size', [(20, 0.07, 1024), (5, 0.5, 13),
                                                      (1, 0.07, 64), (500, 0.1, 50)])
def test_knn_matches_reference(k, temperature, batch_size):
  rng = np.random.default_rng(k)
  train_x, test_x = rng.normal(size=(300, 12)), rng.normal(size=(120, 12))
  train_y = rng.integers(0, 6, 300)
  got = knn.knn_predict(train_x, train_y, test_x, 6, k=k, temperature=temperature,
                        batch_size=batch_size)
  # k = 500 > 300 training examples: clamped to all of them.
  want = _knn_reference(train_x, train_y, test_x, 6, min(k, 300), temperature)
  np.testing.assert_array_equal(got, want)


def test_knn_rejects_out_of_range_labels():
  with pytest.raises(ValueError, match='labels'):
    knn.knn_predict(np.ones((3, 2)), np.array([0, 1, 3]), np.ones((1, 2)), 3)


# ---------------------------------------------------------------------------------------
# pm-k.


def test_pm_k_by_hand():
  r = robustness.pm_k([np.array([1, 1, 0, 1, 1])], [np.ones(5, int)], k=1)
  # Anchors: 4 of 5 right. Windows {0,1} ok; {0,1,2}, {1,2,3}, {2,3,4} hold the error at 2;
  # {3,4} ok. So frames 0 and 4 survive: ends are clipped, not counted as wrong.
  assert r['num_anchors'] == 5
  assert r['anchor_accuracy'] == pytest.approx(4 / 5)
  assert r['pm_k_accuracy'] == pytest.approx(2 / 5)
  assert r['drop'] == pytest.approx(2 / 5)
  # k = 2: every window, clipped or not, reaches frame 2.
  assert robustness.pm_k([np.array([1, 1, 0, 1, 1])], [1], k=2)['pm_k_accuracy'] == 0.0
  # Two sequences pooled, a scalar label for the whole second one: [0, 0, 0, 0] vs 0 has
  # 4 right anchors and 4 right windows, so anchors 8/9, pm-1 6/9.
  r = robustness.pm_k([np.array([1, 1, 0, 1, 1]), np.zeros(4, int)],
                      [np.ones(5, int), 0], k=1)
  assert r['num_anchors'] == 9
  assert r['anchor_accuracy'] == pytest.approx(8 / 9)
  assert r['pm_k_accuracy'] == pytest.approx(6 / 9)


@pytest.mark.parametrize('seed', range(3))
def test_pm_0_is_anchor_accuracy(seed):
  rng = np.random.default_rng(seed)
  preds = [rng.integers(0, 3, n) for n in (7, 1, 12)]
  labels = [rng.integers(0, 3, n) for n in (7, 1, 12)]
  r = robustness.pm_k(preds, labels, k=0)
  assert r['pm_k_accuracy'] == r['anchor_accuracy'] and r['drop'] == 0
  assert r['anchor_accuracy'] == pytest.approx(np.mean(np.concatenate(preds)
                                                       == np.concatenate(labels)))
  # A larger k can only lower pm-k accuracy.
  assert robustness.pm_k(preds, labels, k=3)['pm_k_accuracy'] <= r['pm_k_accuracy']


def test_pm_k_anchors_scores_and_unlabelled_frames():
  preds = np.array([2, 2, 0, 2, 2, 2])
  labels = np.array([2, 2, 2, 2, -1, 2])
  # Chosen anchors only (indices or a mask): frame 0's window {0, 1} is clean, frame 3's
  # {2, 3, 4} holds the error at 2.
  for anchors in (np.array([0, 3]), np.array([1, 0, 0, 1, 0, 0], bool)):
    r = robustness.pm_k([preds], [labels], k=1, anchors=[anchors])
    assert (r['num_anchors'], r['anchor_accuracy'], r['pm_k_accuracy']) == (2, 1.0, 0.5)
  # All frames: frame 4 (label -1) is no anchor, and in the window of frame 5, {4, 5},
  # it is no error although nothing is predicted as -1. Anchors 0, 1, 2, 3, 5: right 4/5;
  # clean windows: {0, 1} and {4, 5} -> 2/5.
  r = robustness.pm_k([preds], [labels], k=1)
  assert r['num_anchors'] == 5
  assert r['anchor_accuracy'] == pytest.approx(4 / 5)
  assert r['pm_k_accuracy'] == pytest.approx(2 / 5)
  # Scores [T, C] are reduced by argmax.
  assert robustness.pm_k([np.eye(3)[preds]], [labels], k=1) == r
  # Nothing labelled: no anchors.
  r = robustness.pm_k([preds], [-1], k=1)
  assert r['num_anchors'] == 0 and np.isnan(r['anchor_accuracy'])


def test_frame_label_credits_pixels_front_to_back():
  coverage = np.zeros((8, 8))
  coverage[0:4, 0:4] = 1.0  # The front object (class 3): 16 pixels.
  coverage[2:8, 2:8] = 1.0  # Behind it (class 5): a box of 36 pixels, 32 of them its own.
  truth = {'classes': np.array([3, 5]), 'coverage': coverage,
           'boxes': np.array([[0, 0, 4, 4], [2, 2, 8, 8]]) / 8}
  assert robustness.frame_label(truth) == 5
  assert robustness.frame_label({'classes': np.zeros((0,), int), 'boxes': np.zeros((0, 4)),
                                 'coverage': np.zeros((8, 8))}) == -1


def test_synthetic_sequences():
  kw = dict(image_size=24, seed=3, fps=2.0)
  frames, labels, info = robustness.synthetic_sequences(3, 6, return_info=True, **kw)
  assert frames.shape == (3, 6, 24, 24, 3) and frames.dtype == np.uint8
  assert labels.shape == (3, 6)
  assert np.all((labels >= -1) & (labels < synthetic.NUM_CLASSES)) and np.any(labels >= 0)
  # Consecutive frames of one shot (T = 6 <= 4 s * 2 fps, so every video qualifies).
  np.testing.assert_allclose(np.diff(info['timestamps'], axis=1), 0.5)
  np.testing.assert_array_equal(info['video_index'], [0, 1, 2])
  video, truth = synthetic.render_video_with_truth(
      1, seed=3 + robustness.HELD_OUT_SEED_OFFSET, image_size=24, fps=2.0)
  at = np.searchsorted(video.timestamps, info['timestamps'][1])
  assert np.all(video.shot_ids[at] == info['shot_id'][1])
  np.testing.assert_array_equal(frames[1], [synthetic.decode_jpeg(video.frames[f]) for f in at])
  np.testing.assert_array_equal(labels[1], [robustness.frame_label(truth[f]) for f in at])
  # Deterministic, and not the training world of the same seed.
  again, labels_again = robustness.synthetic_sequences(3, 6, **kw)
  np.testing.assert_array_equal(again, frames)
  np.testing.assert_array_equal(labels_again, labels)
  train = synthetic.decode_jpeg(synthetic.render_video(0, seed=3, image_size=24, fps=2.0)
                                .frames[0])
  assert not np.array_equal(train, frames[0, 0])
  # A shot longer than any video has is refused, not searched for forever.
  with pytest.raises(ValueError, match='fewer frames'):
    robustness.synthetic_sequences(1, 100, image_size=8, seed=0, fps=0.25)


# ---------------------------------------------------------------------------------------
# Retrieval.


def test_retrieval_clustered_videos_are_found():
  rng = np.random.default_rng(0)
  x, ids = helpers.clusters(rng, 2, 10)
  r = retrieval.frame_to_video_recall(x, ids)
  assert r == {'recall@1': 1.0, 'recall@5': 1.0}
  assert retrieval.recall_at_1(x, ids) == 1.0


def test_retrieval_random_features_are_near_chance():
  rng = np.random.default_rng(0)
  ids = np.repeat(np.arange(50), 8)
  r = retrieval.frame_to_video_recall(rng.normal(size=(400, 32)), ids, batch_size=64)
  assert abs(r['recall@1'] - 7 / 399) < 0.03, r
  assert r['recall@1'] <= r['recall@5'] < 0.2, r


def test_retrieval_excludes_the_query_and_lonely_frames():
  # Frame 0 is alone in its video: a distractor, not a query. Frame 1's nearest other frame
  # is frame 0 (a miss at rank 1, its own video's frame 2 at rank 2); had the query not
  # been excluded, it would have found itself. Frames 2, 3, 4 find their own videos.
  x = np.array([[1.0, 0], [1.0, 0.02], [0.9, 0.15], [0, 1.0], [0.1, 0.9]])
  ids = np.array([9, 1, 1, 2, 2])
  assert retrieval.frame_to_video_recall(x, ids, ks=(1, 2)) == {'recall@1': 0.75,
                                                                'recall@2': 1.0}


def test_color_histogram_equals_numpy_histogramdd():
  from vivi.evaluate import baselines
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 12, 10, 3), np.uint8)
  images[0] = 255                                   # One bin only (the last).
  got = baselines.color_histogram(images)
  assert got.shape == (5, 64) and got.dtype == np.float32
  edges = [np.arange(0, 257, 64)] * 3              # 4 bins per channel: [0,64), ... [192,256).
  for image, hist in zip(images, got):
    expected, _ = np.histogramdd(image.reshape(-1, 3).astype(np.float64), bins=edges)
    np.testing.assert_allclose(hist, expected.ravel() / expected.sum(), rtol=1e-6)
  assert got[0, 63] == 1.0
  with pytest.raises(ValueError, match='uint8'):
    baselines.color_histogram(images.astype(np.float32))


def test_probe_table_standard_errors_and_marks():
  from vivi.evaluate import tables
  assert tables.standard_error(0.5, 1000) == pytest.approx(0.0158114, rel=1e-5)
  table = tables.format_table(
      {'trained': {'class': 0.20, 'count': 0.13}, 'at init': {'class': 0.11, 'count': 0.11}},
      {'class': 1000, 'count': 1000}, gain=('trained', 'at init'))
  rows = {line.split()[0]: line for line in table.splitlines()[1:]}
  # class: +0.09 with se sqrt(.2*.8/1000 + .11*.89/1000) = 0.0163 -> beyond 3 se.
  assert rows['class'].rstrip().endswith('+0.090 ± 0.016 *')
  assert rows['count'].rstrip().endswith('+0.020 ± 0.015')  # 1.3 se: not marked.
