"""The shared contrastive math against NumPy references (tests/references.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import references
from vivi.objectives import losses


def _normalise(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize('seed', range(4))
def test_semihard_matches_reference_random(seed):
  rng = np.random.default_rng(seed)
  emb = _normalise(rng.normal(size=(24, 8))).astype(np.float32)
  labels = rng.integers(0, 5, 24)
  loss, metrics = losses.semihard_triplet_loss(jnp.asarray(emb), jnp.asarray(labels),
                                                        0.5)
  np.testing.assert_allclose(loss, references.semihard_triplet(emb, labels, 0.5), rtol=1e-5)
  same = labels[:, None] == labels[None, :]
  assert metrics['num_positive_pairs'] == same.sum() - len(labels)


def test_semihard_with_padding_ignores_invalid_rows():
  rng = np.random.default_rng(7)
  emb = _normalise(rng.normal(size=(20, 6))).astype(np.float32)
  labels = rng.integers(0, 3, 20)
  valid = rng.random(20) < 0.6
  loss, _ = losses.semihard_triplet_loss(emb, labels, 0.3, valid=jnp.asarray(valid))
  np.testing.assert_allclose(loss, references.semihard_triplet(emb, labels, 0.3, valid),
                             rtol=1e-5)
  # Garbage in the padded rows changes nothing.
  emb2 = emb.copy()
  emb2[~valid] = 100.0
  loss2, _ = losses.semihard_triplet_loss(emb2, labels, 0.3, valid=jnp.asarray(valid))
  np.testing.assert_allclose(loss2, loss, rtol=1e-6)


def test_semihard_edge_no_semihard_negative_uses_farthest_negative():
  # Anchor 0 and positive 1 are far apart; both negatives are closer than the positive.
  emb = np.array([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, 1.5]], np.float32)
  labels = np.array([0, 0, 1, 2])
  loss, metrics = losses.semihard_triplet_loss(emb, labels, 0.2)
  # Pairs (0,1): d=9, negatives 1 and 2.25 -> farthest 2.25 -> 9-2.25+0.2 = 6.95.
  # Pair (1,0): d=9, negatives d(1,2)=4, d(1,3)=11.25 -> semi-hard 11.25 -> 0.
  np.testing.assert_allclose(loss, (6.95 + 0.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(loss, references.semihard_triplet(emb, labels, 0.2), rtol=1e-6)
  assert metrics['fraction_semihard'] == 0.5


def test_semihard_edge_single_positive_and_singletons():
  rng = np.random.default_rng(3)
  emb = _normalise(rng.normal(size=(7, 4))).astype(np.float32)
  labels = np.array([0, 0, 1, 2, 3, 4, 5])  # One positive pair; the rest are singletons.
  loss, metrics = losses.semihard_triplet_loss(emb, labels, 0.5)
  assert metrics['num_positive_pairs'] == 2
  np.testing.assert_allclose(loss, references.semihard_triplet(emb, labels, 0.5), rtol=1e-5)


def test_semihard_edge_no_negatives_at_all():
  emb = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]], np.float32)
  labels = np.zeros(3, int)
  loss, _ = losses.semihard_triplet_loss(emb, labels, 0.1)
  np.testing.assert_allclose(loss, references.semihard_triplet(emb, labels, 0.1), rtol=1e-6)


def test_semihard_no_positive_pairs_is_zero_not_nan():
  emb = np.eye(4, dtype=np.float32)
  loss, _ = losses.semihard_triplet_loss(emb, np.arange(4), 0.5)
  assert loss == 0.0


def test_semihard_gradient_finite_and_loss_decreases_when_positives_tighten():
  rng = np.random.default_rng(0)
  centres = _normalise(rng.normal(size=(6, 16)))
  labels = np.repeat(np.arange(6), 4)
  noise = rng.normal(size=(24, 16))
  values = []
  for spread in (0.8, 0.4, 0.2, 0.05):
    emb = jnp.asarray(_normalise(centres[labels] + spread * noise), jnp.float32)
    loss, _ = losses.semihard_triplet_loss(emb, labels, 0.5)
    grad = jax.grad(lambda e: losses.semihard_triplet_loss(e, labels, 0.5)[0])(emb)
    assert np.all(np.isfinite(grad))
    values.append(float(loss))
  assert values == sorted(values, reverse=True) and values[-1] < 0.5 * values[0], values


def test_masked_info_nce_equals_equation_two():
  rng = np.random.default_rng(1)
  scores = rng.normal(size=(5, 9)).astype(np.float32)
  positive = np.zeros((5, 9), bool)
  positive[np.arange(5), rng.integers(0, 9, 5)] = True
  candidates = rng.random((5, 9)) < 0.7
  got = losses.masked_info_nce(scores, positive, candidates)
  for q in range(5):
    c = candidates[q] | positive[q]
    pos = scores[q][positive[q]][0]
    expected = -np.log(np.exp(pos) / np.mean(np.exp(scores[q][c].astype(np.float64))))
    np.testing.assert_allclose(got[q], expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(10, 4)).astype(np.float32)
  labels = rng.integers(0, 4, 10)
  np.testing.assert_allclose(jnp.mean(losses.cross_entropy(logits, labels)),
                             references.softmax_cross_entropy(logits, labels), rtol=1e-6)
