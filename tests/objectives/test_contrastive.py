"""VINCE, VITO, DetCon (and MoCLR) objectives and pooling heads against NumPy references of their
papers' equations; their gradients; and that each loss falls when what it rewards improves.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import references
from vivi.models import heads
from vivi.objectives import detcon, vince, vito


def _unit(x):
  x = np.asarray(x, np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rand(rng, *shape):
  return _unit(rng.normal(size=shape))


# VINCE -----------------------------------------------------------------------------------

@pytest.mark.parametrize('v,k,m', [(3, 4, 5), (4, 2, 0), (5, 1, 7)])
def test_multi_pair_nce_matches_algorithm_1(v, k, m):
  rng = np.random.default_rng(v * 10 + k)
  f, g, mem = _rand(rng, v, k, 8), _rand(rng, v, k, 8), _rand(rng, max(m, 1), 8)[:m]
  got, metrics = vince.multi_pair_nce(jnp.asarray(f), jnp.asarray(g), jnp.asarray(mem), 0.2)
  np.testing.assert_allclose(got, references.multi_pair_nce(f, g, mem, 0.2), rtol=2e-5)
  assert 0.0 <= metrics['accuracy'] <= 1.0


def test_multi_pair_nce_with_one_image_per_video_is_moco():
  rng = np.random.default_rng(1)
  q, k, mem = _rand(rng, 6, 16), _rand(rng, 6, 16), _rand(rng, 10, 16)
  got, _ = vince.multi_pair_nce(jnp.asarray(q[:, None]), jnp.asarray(k[:, None]),
                                jnp.asarray(mem), 0.07)
  np.testing.assert_allclose(got, references.moco_info_nce(q, k, mem, 0.07), rtol=2e-5)


def test_multi_pair_nce_gradient_and_direction():
  rng = np.random.default_rng(2)
  f, g, mem = _rand(rng, 4, 3, 8), _rand(rng, 4, 3, 8), _rand(rng, 6, 8)
  loss = lambda f: vince.multi_pair_nce(f, jnp.asarray(g), jnp.asarray(mem), 0.2)[0]
  grad = jax.grad(loss)(jnp.asarray(f))
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
  # Anchors pulled towards their video's positives: the loss falls.
  closer = _unit(f + g.mean(axis=1, keepdims=True))
  assert loss(jnp.asarray(closer)) < loss(jnp.asarray(f)) - 0.1


def test_memory_bank_negatives_count():
  """A memory key equal to an anchor is a hard negative: the loss rises."""
  rng = np.random.default_rng(3)
  f, g, mem = _rand(rng, 3, 2, 8), _rand(rng, 3, 2, 8), _rand(rng, 4, 8)
  base = vince.multi_pair_nce(jnp.asarray(f), jnp.asarray(g), jnp.asarray(mem), 0.2)[0]
  hard = np.concatenate([mem, f.reshape(-1, 8)])
  assert vince.multi_pair_nce(jnp.asarray(f), jnp.asarray(g), jnp.asarray(hard), 0.2)[0] > base


# VITO ------------------------------------------------------------------------------------

@pytest.mark.parametrize('v,n', [(4, 3), (3, 2)])
def test_vito_info_nce_matches_equation_3(v, n):
  rng = np.random.default_rng(v + n)
  online, target = _rand(rng, v, n, 8), _rand(rng, v, n, 8)
  got, _ = vito.multi_view_info_nce(jnp.asarray(online), jnp.asarray(target), 0.1)
  np.testing.assert_allclose(got, references.vito_info_nce(online, target, 0.1), rtol=2e-5)


def test_vito_gradient_and_direction():
  rng = np.random.default_rng(5)
  online, target = _rand(rng, 4, 3, 8), _rand(rng, 4, 3, 8)
  loss = lambda o: vito.multi_view_info_nce(o, jnp.asarray(target), 0.1)[0]
  grad = jax.grad(loss)(jnp.asarray(online))
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
  aligned = _unit(online + target.mean(axis=1, keepdims=True))
  assert loss(jnp.asarray(aligned)) < loss(jnp.asarray(online)) - 0.1


def _attention_params(pool, fmap):
  return pool.init(jax.random.key(0), fmap)


def test_attention_pooling_is_equation_2():
  rng = np.random.default_rng(6)
  fmap = rng.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)        # [V, n, h, w, c]
  pool = heads.AttentionPool(hidden=7)
  params = _attention_params(pool, fmap)
  pooled, mask = pool.apply(params, fmap)
  np.testing.assert_allclose(mask.sum(axis=(-2, -1)), 1.0, rtol=1e-6)
  p = jax.tree.map(np.asarray, params['params'])
  hidden = np.maximum(fmap @ p['hidden']['kernel'] + p['hidden']['bias'], 0)
  logits = (hidden @ p['logit']['kernel'] + p['logit']['bias'])[..., 0]
  flat = logits.reshape(2, 3, -1)
  weights = np.exp(flat - flat.max(-1, keepdims=True))
  weights = (weights / weights.sum(-1, keepdims=True)).reshape(logits.shape)
  np.testing.assert_allclose(mask, weights, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(pooled, (weights[..., None] * fmap).sum(axis=(-3, -2)),
                             rtol=1e-5, atol=1e-6)


def test_attention_pooling_with_constant_logits_is_average_pooling():
  rng = np.random.default_rng(7)
  fmap = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
  pool = heads.AttentionPool(hidden=8)
  params = flax.core.unfreeze(_attention_params(pool, fmap))
  params['params']['logit']['kernel'] = jnp.zeros_like(params['params']['logit']['kernel'])
  pooled, mask = pool.apply(params, fmap)
  np.testing.assert_allclose(mask, 1 / 16, rtol=1e-6)
  np.testing.assert_allclose(pooled, fmap.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_vito_head_returns_attention_masks_per_scale():
  rng = np.random.default_rng(8)
  features = {'block3': rng.normal(size=(2, 3, 4, 4, 6)).astype(np.float32),
              'block4': rng.normal(size=(2, 3, 2, 2, 8)).astype(np.float32)}
  head = vito.Head(scales=('block3', 'block4'), attention=True, attention_hidden=4,
                   projector_hidden=16, projection_dim=5)
  variables = head.init(jax.random.key(0), features, {}, False)
  out = head.apply(variables, features, {}, False)
  assert out['projections'].shape == (2, 3, 5)
  assert out['attention_masks']['block3'].shape == (2, 3, 4, 4)
  assert out['attention_masks']['block4'].shape == (2, 3, 2, 2)
  no_attention = head.clone(attention=False)
  out = no_attention.apply(no_attention.init(jax.random.key(0), features, {}, False),
                           features, {}, False)
  assert out['attention_masks'] == {}


# DetCon ----------------------------------------------------------------------------------

def test_masked_pooling_matches_loops():
  rng = np.random.default_rng(9)
  fmap = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)           # [B, h, w, c]
  segments = rng.integers(-1, 5, size=(2, 12, 12)).astype(np.int32)
  segments[1] = np.where(segments[1] == 4, -1, segments[1])        # mask 4 empty in image 1
  weights = heads.mask_weights(jnp.asarray(segments), 5, (3, 3))
  got = heads.masked_pool(jnp.asarray(fmap), weights)
  for b in range(2):
    np.testing.assert_allclose(got[b], references.masked_average_pool(fmap[b], segments[b], 5),
                               rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='do not tile'):
    heads.mask_weights(jnp.asarray(segments[:, :10, :10]), 5, (3, 3))


def test_detcon_loss_matches_reference_with_invalid_masks():
  rng = np.random.default_rng(10)
  online, target = _rand(rng, 3, 2, 4, 8), _rand(rng, 3, 2, 4, 8)
  valid = rng.random((3, 4)) < 0.7
  valid[0, 0] = True
  got, metrics = detcon.detcon_loss(jnp.asarray(online), jnp.asarray(target),
                                    jnp.asarray(valid), 0.1)
  np.testing.assert_allclose(got, references.detcon(online, target, valid, 0.1), rtol=2e-5)
  assert metrics['valid_masks'] == pytest.approx(valid.sum() / 3)
  # Invalid masks take no part: changing them changes nothing.
  online2 = np.where(valid[:, None, :, None], online, _rand(rng, 3, 2, 4, 8))
  target2 = np.where(valid[:, None, :, None], target, _rand(rng, 3, 2, 4, 8))
  got2, _ = detcon.detcon_loss(jnp.asarray(online2), jnp.asarray(target2), jnp.asarray(valid),
                               0.1)
  np.testing.assert_allclose(got2, got, rtol=1e-6)


def test_moclr_is_detcon_with_one_whole_image_mask_and_matches_its_equation():
  """configs/moclr.py trains DetCon_B's loss with one mask per image (the whole image):
  that is MoCLR's image-level InfoNCE, checked against a reference written from it."""
  rng = np.random.default_rng(13)
  online, target = _rand(rng, 5, 2, 8), _rand(rng, 5, 2, 8)
  got, _ = detcon.detcon_loss(jnp.asarray(online[:, :, None]), jnp.asarray(target[:, :, None]),
                              jnp.ones((5, 1), bool), 0.1)
  np.testing.assert_allclose(got, references.moclr(online, target, 0.1), rtol=2e-5)


def test_detcon_head_batchnorm_statistics_ignore_padding_masks():
  """Padding slots (masks an image does not have) take no part in the projector's and
  predictor's BatchNorm statistics: the valid masks' projections and the updated running
  statistics are the same whatever the padding holds, and equal those of a batch that has
  only the valid masks."""
  rng = np.random.default_rng(12)
  head = detcon.Head(projector_hidden=16, projection_dim=8)
  fmap = rng.normal(size=(3, 2, 4, 4, 6)).astype(np.float32)
  segments = rng.integers(0, 4, (3, 2, 8, 8)).astype(np.int32)
  valid = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], bool)
  segments = np.where(valid[np.arange(3)[:, None, None, None], segments], segments, -1)
  batch = {'segments': jnp.asarray(segments), 'mask_valid': jnp.asarray(valid)}
  features = {'block4': jnp.asarray(fmap)}
  variables = head.init(jax.random.key(0), features, batch, False)

  def run(b):
    out, mutated = head.apply(variables, features, b, True, mutable=['batch_stats'])
    return np.asarray(out['projections']), mutated['batch_stats']

  base, stats = run(batch)
  # Garbage in the padding slots' segments would give them non-zero pooled vectors.
  other, other_stats = run(dict(batch, segments=jnp.asarray(np.where(segments < 0, 3,
                                                                     segments))))
  keep = np.broadcast_to(valid[:, None, :], base.shape[:-1])
  np.testing.assert_allclose(other[keep], base[keep], rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               stats, other_stats)
  # The same statistics as BatchNorm over the valid masks' rows alone.
  params = variables['params']['projector']
  pooled = heads.masked_pool(jnp.asarray(fmap), heads.mask_weights(
      jnp.asarray(segments), 4, (4, 4)))
  hidden = np.asarray(pooled @ params['hidden']['kernel'] + params['hidden']['bias'])[keep]
  init = variables['batch_stats']['projector']['norm']
  np.testing.assert_allclose(stats['projector']['norm']['mean'],
                             0.99 * init['mean'] + 0.01 * hidden.mean(0), rtol=1e-5, atol=1e-6)


def test_detcon_gradient_and_direction():
  rng = np.random.default_rng(11)
  online, target = _rand(rng, 3, 2, 4, 8), _rand(rng, 3, 2, 4, 8)
  valid = jnp.ones((3, 4), bool)
  loss = lambda o: detcon.detcon_loss(o, jnp.asarray(target), valid, 0.1)[0]
  grad = jax.grad(loss)(jnp.asarray(online))
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
  aligned = _unit(online + target[:, ::-1])     # Each view towards the other view's mask.
  assert loss(jnp.asarray(aligned)) < loss(jnp.asarray(online)) - 0.1


def test_attention_maps_api_returns_masks_for_images():
  from configs import vito as vito_config
  from vivi import optim, train
  from vivi.evaluate import attention_maps
  config = vito_config.get_config('tiny')
  config.input.image_size = 64
  model, tx = train.build_model(config), optim.make_optimizer(config)
  state = train.create_train_state(config, model, tx, jax.random.key(0))
  images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  masks = attention_maps.attention_masks(config, variables, images)
  assert set(masks) == {'block3', 'block4'}
  for m in masks.values():
    assert m.shape[0] == 3
    np.testing.assert_allclose(m.sum(axis=(1, 2)), 1.0, rtol=1e-5)
  s = attention_maps.saliency(masks, 64)
  assert s.shape == (3, 64, 64) and s.min() >= 0 and np.allclose(s.max(axis=(1, 2)), 1)
  assert attention_maps.overlay(images, s).shape == images.shape
  config.objectives.vito.attention = False
  with pytest.raises(ValueError, match='attention=True'):
    attention_maps.attention_masks(config, variables, images)
