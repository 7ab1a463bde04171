"""Each VIVI objective against a NumPy reference of its paper equation, its gradient, and
that it decreases when what it rewards improves."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests import helpers, references
from vivi import objectives
from vivi.objectives import exemplar, rotation, shot_infonce, shot_order

_cfg = helpers.objective_cfg  # One objective's resolved config.


def test_resolve_rejects_unknown_objective_and_key():
  with pytest.raises(ValueError, match="unknown objective 'vinci'.*exemplar"):
    objectives.resolve(ml_collections.ConfigDict({'vinci': {}}))
  with pytest.raises(ValueError, match=r"exemplar: unknown key\(s\) \['margn'\]"):
    objectives.resolve(ml_collections.ConfigDict({'exemplar': {'margn': 0.1}}))
  with pytest.raises(ValueError, match='empty'):
    objectives.resolve(ml_collections.ConfigDict())


def test_exemplar_labels_are_shots():
  rng = np.random.default_rng(0)
  e = rng.normal(size=(3, 2, 4, 8)).astype(np.float32)
  e /= np.linalg.norm(e, axis=-1, keepdims=True)
  loss, _ = exemplar.loss({'embeddings': jnp.asarray(e)}, {}, _cfg('exemplar'))
  labels = np.repeat(np.arange(6), 4)  # Frames of one shot share a label.
  np.testing.assert_allclose(loss, references.semihard_triplet(e.reshape(24, 8), labels, 0.5),
                             rtol=1e-5)


def test_exemplar_head_normalises():
  head = exemplar.make_head(_cfg('exemplar', embedding_dim=16))
  feats = {'pre_logits': jnp.ones((2, 2, 3, 32))}
  out, _ = head.init_with_output(jax.random.key(0), feats, {}, True)
  np.testing.assert_allclose(jnp.linalg.norm(out['embeddings'], axis=-1), 1.0, rtol=1e-5)
  assert out['embeddings'].shape == (2, 2, 3, 16)


def _shot_nce_inputs(seed, v=4, p=3, k=4, d=6):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(v, p, d)).astype(np.float32),
          rng.normal(size=(v, k, d)).astype(np.float32))


@pytest.mark.parametrize('targets', [(1, 2, 3), (3, 1, 2)])
def test_shot_infonce_matches_equation_two(targets):
  q, keys = _shot_nce_inputs(0)
  out = {'queries': jnp.asarray(q), 'keys': jnp.asarray(keys), 'targets': jnp.array(targets)}
  loss, metrics = shot_infonce.loss(out, {}, _cfg('shot_infonce'))
  np.testing.assert_allclose(loss, references.shot_info_nce(q, keys, targets), rtol=1e-5)
  assert 0.0 <= metrics['accuracy'] <= 1.0


def test_shot_infonce_gradient_and_decrease_as_predictions_improve():
  q, keys = _shot_nce_inputs(1)
  targets = jnp.array([1, 2, 3])
  cfg = _cfg('shot_infonce')
  losses = []
  for mix in (0.0, 0.5, 1.0, 2.0):
    pred = q + mix * keys[:, [1, 2, 3]]  # Queries move toward their true future shots.
    fn = lambda x: shot_infonce.loss({'queries': x, 'keys': keys, 'targets': targets}, {}, cfg)[0]
    losses.append(float(fn(pred)))
    assert np.all(np.isfinite(jax.grad(fn)(jnp.asarray(pred))))
  assert losses == sorted(losses, reverse=True), losses


def test_shot_infonce_prediction_pairs():
  assert shot_infonce.prediction_pairs(4, 'lstm') == [(0, 1), (1, 2), (2, 3), (0, 2), (1, 3),
                                                      (0, 3)]
  assert shot_infonce.prediction_pairs(2, 'mlp') == [(0, 1)]
  with pytest.raises(ValueError, match='at least 2 shots'):
    shot_infonce.prediction_pairs(1, 'lstm')


@pytest.mark.parametrize('predictor,k', [('lstm', 4), ('mlp', 2)])
def test_shot_infonce_head_shapes_and_causality(predictor, k):
  head = shot_infonce.make_head(_cfg('shot_infonce', predictor=predictor))
  e = jax.random.normal(jax.random.key(0), (3, k, 12))
  out, params = head.init_with_output(jax.random.key(1), {'shot_embeddings': e}, {}, True)
  pairs = shot_infonce.prediction_pairs(k, predictor)
  assert out['queries'].shape[:2] == (3, len(pairs))
  assert out['keys'].shape[:2] == (3, k)
  # A prediction from shot s must not see shots after s (the future it predicts).
  e2 = e.at[:, -1].set(100.0)
  out2 = head.apply(params, {'shot_embeddings': e2}, {}, True)
  for p in range(len(pairs)):
    np.testing.assert_allclose(out2['queries'][:, p], out['queries'][:, p], rtol=1e-6)


def test_rotation_loss_is_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 2, 4))
  loss, _ = rotation.loss({'logits': logits}, {'rotation': labels}, _cfg('rotation'))
  np.testing.assert_allclose(
      loss, references.softmax_cross_entropy(logits.reshape(-1, 4), labels.ravel()), rtol=1e-6)
  with pytest.raises(ValueError, match='input.rotate'):
    rotation.loss({'logits': logits}, {}, _cfg('rotation'))


@pytest.mark.parametrize('name,num_classes', [('rotation', 4), ('shot_order', 2)])
def test_classification_losses_decrease_and_have_finite_gradients(name, num_classes):
  labels = jnp.array([0, 1, 1, 0])
  module = objectives.get(name)

  def fn(logits):
    outputs, batch = {'logits': logits}, {}
    if name == 'rotation':
      batch['rotation'] = labels
    else:
      outputs['labels'] = labels
    return module.loss(outputs, batch, _cfg(name))[0]

  confident = jax.nn.one_hot(labels, num_classes)
  losses = [float(fn(s * confident)) for s in (0.0, 1.0, 3.0)]
  assert losses == sorted(losses, reverse=True), losses
  assert np.all(np.isfinite(jax.grad(fn)(jnp.zeros((4, num_classes)))))


def test_shot_order_head_reverses_exactly_the_labelled_videos():
  head = shot_order.make_head(_cfg('shot_order', hidden=8))
  e = jax.random.normal(jax.random.key(0), (16, 2, 5))
  rngs = {'params': jax.random.key(1), 'objective': jax.random.key(2)}
  out, variables = head.init_with_output(rngs, {'shot_embeddings': e}, {}, True)
  w = variables['params']
  labels = np.asarray(out['labels'])
  assert 0 < labels.sum() < 16  # Both orders occur.
  ordered = np.where(labels[:, None, None] == 1, np.asarray(e)[:, ::-1], np.asarray(e))
  h = np.maximum(ordered.reshape(16, -1) @ w['hidden']['kernel'] + w['hidden']['bias'], 0)
  logits = h @ w['classifier']['kernel'] + w['classifier']['bias']
  np.testing.assert_allclose(out['logits'], logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      shot_order.loss(out, {}, _cfg('shot_order'))[0],
      references.softmax_cross_entropy(logits, labels), rtol=1e-5)


def test_nonfinite_steps_are_skipped_counted_and_stop_the_run_after_the_limit():
  from vivi import loop
  guard = loop.NonFiniteGuard(3)
  ok = lambda loss: {'loss': loss, 'exemplar/loss': loss, 'nonfinite': 0}
  bad = {'loss': float('nan'), 'exemplar/loss': 0.4, 'shot_infonce/loss': float('nan'),
         'nonfinite': 1}
  means = guard.summarise([ok(1.0), bad, ok(3.0), bad, bad], 5)
  assert means == {'loss': 2.0, 'exemplar/loss': 2.0, 'nonfinite_steps': 3}
  with pytest.raises(FloatingPointError, match=r"^3 steps in a row \(up to step 6\) had a "
                                               r"non-finite .*'shot_infonce/loss': nan"):
    guard.summarise([bad, ok(1.0)], 7)
