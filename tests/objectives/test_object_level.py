"""The object level (Romijnders et al.): box features, L_object, its ablations and diagnostic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vivi, vivi_obj
from tests import helpers, references
from vivi.models import box_features
from vivi.objectives import distillation, losses, object_classification, object_triplet, supervised

_cfg = helpers.objective_cfg  # One objective's resolved config.


def test_gather_matches_a_numpy_loop_of_the_paper_formula():
  rng = np.random.default_rng(0)
  grid = rng.normal(size=(3, 5, 7, 4)).astype(np.float32)          # [N, H', W', C]
  boxes = np.sort(rng.uniform(0, 1, (3, 6, 2, 2)), axis=2)           # y0<y1, x0<x1
  boxes = np.stack([boxes[:, :, 0, 0], boxes[:, :, 0, 1], boxes[:, :, 1, 0],
                    boxes[:, :, 1, 1]], -1).astype(np.float32)       # [N, B, 4]
  boxes[0, 0] = [0.9, 0.95, 1.0, 1.0]                                # Centre at the edge.
  got = np.asarray(box_features.gather(jnp.asarray(grid), jnp.asarray(boxes)))
  image_h, image_w = 160, 224  # Any image size: r = x'[floor(i H'/H), floor(j W'/W)].
  for n in range(3):
    for b in range(6):
      i = (boxes[n, b, 0] + boxes[n, b, 2]) / 2 * image_h
      j = (boxes[n, b, 1] + boxes[n, b, 3]) / 2 * image_w
      row = min(int(np.floor(i * 5 / image_h)), 4)
      col = min(int(np.floor(j * 7 / image_w)), 6)
      np.testing.assert_allclose(got[n, b], grid[n, row, col], rtol=1e-6)


def _box_batch(seed, v=2, k=2, l=3, b=5, c=16, classes=4):
  rng = np.random.default_rng(seed)
  feats = rng.normal(size=(v, k, l, b, c)).astype(np.float32)
  labels = rng.integers(0, classes, (v, k, l, b)).astype(np.int32)
  valid = rng.random((v, k, l, b)) < 0.6
  return feats, labels, valid


def test_object_triplet_matches_reference_with_padding_and_a_single_box_class():
  feats, labels, valid = _box_batch(0)
  labels[0, 0, 0, 0], valid[0, 0, 0, 0] = 7, True   # Class 7 has a single box.
  head = object_triplet.make_head(_cfg('object_triplet'))
  out = head.apply({}, {'box_features': jnp.asarray(feats)}, {}, True)
  batch = {'box_labels': jnp.asarray(labels), 'box_valid': jnp.asarray(valid)}
  loss, metrics = object_triplet.loss(out, batch, _cfg('object_triplet'))
  e = feats.reshape(-1, 16)
  e = e / np.linalg.norm(e, axis=-1, keepdims=True)
  np.testing.assert_allclose(
      loss, references.semihard_triplet(e, labels.ravel(), 0.5, valid.ravel()), rtol=1e-5)
  np.testing.assert_allclose(
      metrics['nn_same_class'],
      references.nearest_neighbour_agreement(e, labels.ravel(), valid.ravel()), rtol=1e-6)
  assert metrics['valid_boxes'] == valid.sum()
  # Padded boxes take no part: garbage in them changes nothing.
  feats2 = np.where(valid[..., None], feats, 1e3).astype(np.float32)
  out2 = head.apply({}, {'box_features': jnp.asarray(feats2)}, {}, True)
  np.testing.assert_allclose(object_triplet.loss(out2, batch, _cfg('object_triplet'))[0], loss,
                             rtol=1e-6)


def test_object_triplet_gradient_and_decrease_as_classes_separate():
  _, labels, valid = _box_batch(1, classes=3)
  centres = np.random.default_rng(2).normal(size=(3, 16))
  noise = np.random.default_rng(3).normal(size=labels.shape + (16,))
  batch = {'box_labels': jnp.asarray(labels), 'box_valid': jnp.asarray(valid)}
  fn = lambda f: object_triplet.loss(object_triplet.make_head(None).apply(
      {}, {'box_features': f}, {}, True), batch, _cfg('object_triplet'))[0]
  values = []
  for spread in (2.0, 1.0, 0.3, 0.05):
    f = jnp.asarray(centres[labels] + spread * noise, jnp.float32)
    values.append(float(fn(f)))
    assert np.all(np.isfinite(jax.grad(fn)(f)))
  assert values == sorted(values, reverse=True) and values[-1] < 0.2 * values[0], values


def test_nearest_neighbour_agreement_matches_reference():
  feats, labels, valid = _box_batch(4)
  e, l, v = feats.reshape(-1, 16), labels.ravel(), valid.ravel()
  np.testing.assert_allclose(losses.nearest_neighbour_agreement(e, l, v),
                             references.nearest_neighbour_agreement(e, l, v), rtol=1e-6)
  groups = np.arange(len(e)) // 5    # e.g. the video of each box
  np.testing.assert_allclose(losses.nearest_neighbour_agreement(e, l, v, groups),
                             references.nearest_neighbour_agreement(e, l, v, groups), rtol=1e-6)


def test_nearest_neighbour_agreement_across_groups_ignores_a_groups_own_copies():
  # Each group (a video) holds two copies of one box (an instance in two frames); groups lie
  # on a line with alternating labels, so a box's nearest box of *another* group always has
  # the other label: perfect agreement within groups, none across them.
  e = np.repeat(np.arange(6.0)[:, None] * np.eye(4)[:1], 2, axis=0)
  labels, groups = np.repeat(np.arange(6) % 2, 2), np.repeat(np.arange(6), 2)
  assert float(losses.nearest_neighbour_agreement(e, labels)) == 1.0
  assert float(losses.nearest_neighbour_agreement(e, labels, groups=groups)) == 0.0


def test_object_classification_is_binary_cross_entropy_over_the_label_space():
  feats, labels, valid = _box_batch(5)
  cfg = _cfg('object_classification', num_classes=4)
  head = object_classification.make_head(cfg)
  params = head.init(jax.random.key(0), {'box_features': jnp.asarray(feats)}, {}, True)
  out = head.apply(params, {'box_features': jnp.asarray(feats)}, {}, True)
  batch = {'box_labels': jnp.asarray(labels), 'box_valid': jnp.asarray(valid)}
  loss, _ = object_classification.loss(out, batch, cfg)
  np.testing.assert_allclose(loss, references.sigmoid_bce_per_box(
      np.asarray(out['logits']).reshape(-1, 4), labels.ravel(), valid.ravel()), rtol=1e-5)
  fn = lambda z: object_classification.loss({'logits': z}, batch, cfg)[0]
  right = jax.nn.one_hot(labels, 4) * 2 - 1
  values = [float(fn(s * right)) for s in (0.0, 1.0, 4.0)]
  assert values == sorted(values, reverse=True)
  assert np.all(np.isfinite(jax.grad(fn)(jnp.zeros(labels.shape + (4,)))))


def test_distillation_is_cross_entropy_on_soft_labels():
  rng = np.random.default_rng(6)
  logits = rng.normal(size=(2, 2, 3, 5)).astype(np.float32)
  p = rng.dirichlet(np.ones(5), size=(2, 2, 3)).astype(np.float32)
  cfg = _cfg('distillation', num_classes=5)
  loss, _ = distillation.loss({'logits': logits}, {'soft_labels': p}, cfg)
  np.testing.assert_allclose(loss, references.soft_cross_entropy(logits.reshape(-1, 5),
                                                                 p.reshape(-1, 5)), rtol=1e-5)
  fn = lambda z: distillation.loss({'logits': z}, {'soft_labels': p}, cfg)[0]
  values = [float(fn(jnp.log(jnp.asarray(p)) * s)) for s in (0.0, 0.5, 1.0)]
  assert values == sorted(values, reverse=True)  # Minimised at the soft labels themselves.
  assert np.all(np.isfinite(jax.grad(fn)(jnp.asarray(logits))))
  with pytest.raises(ValueError, match='soft labels'):
    distillation.loss({'logits': logits}, {}, cfg)


def test_supervised_is_cross_entropy_on_labelled_images():
  rng = np.random.default_rng(7)
  logits = rng.normal(size=(6, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 6)
  loss, _ = supervised.loss({'logits': logits}, {'labels': labels}, _cfg('supervised'))
  np.testing.assert_allclose(loss, references.softmax_cross_entropy(logits, labels), rtol=1e-6)


def _flat(config):
  out = {}
  def walk(d, prefix):
    for k, v in d.items():
      if isinstance(v, dict):
        walk(v, prefix + k + '.')
      else:
        out[prefix + k] = v
  walk(config.to_dict(), '')
  return out


@pytest.mark.parametrize('ablation,expected', [
    ('random_boxes', {'input.random_boxes'}),
    ('random_labels', {'input.random_boxes', 'input.random_labels'}),
    ('also_ce', {'objectives.object_classification.weight',
                 'objectives.object_classification.num_classes'}),
    ('ce_only', {'objectives.object_classification.weight',
                 'objectives.object_classification.num_classes',
                 'objectives.object_triplet.weight', 'objectives.object_triplet.margin'}),
    ('distill', {'input.soft_labels', 'input.max_boxes', 'objectives.distillation.weight',
                 'objectives.distillation.num_classes', 'objectives.object_triplet.weight',
                 'objectives.object_triplet.margin'}),
])
@pytest.mark.parametrize('size', ['', 'tiny'])
def test_each_ablation_switch_changes_only_its_keys(ablation, expected, size):
  base = _flat(vivi_obj.get_config(size))
  changed = _flat(vivi_obj.get_config(f'{size},{ablation}' if size else ablation))
  diff = {k for k in base.keys() | changed.keys() if base.get(k) != changed.get(k)}
  if size and ablation == 'distill':
    # Its tiny learning rate is its own sweep's, not the object level's (configs/vivi_obj.py).
    lr = 'schedule.base_learning_rate'
    assert changed[lr] / base[lr] == pytest.approx(
        vivi_obj.DISTILL_TINY_LR_MULTIPLIER / vivi_obj.TINY_LR_MULTIPLIER)
    expected = expected | ({lr} if vivi_obj.DISTILL_TINY_LR_MULTIPLIER
                           != vivi_obj.TINY_LR_MULTIPLIER else set())
  assert diff == expected


def test_object_config_is_vivi_plus_the_object_level():
  base, obj = _flat(vivi.get_config('tiny')), _flat(vivi_obj.get_config('tiny'))
  diff = {k for k in base.keys() | obj.keys() if base.get(k) != obj.get(k)}
  # The tiny learning rate is each config's own sweep's (world version 4: VIVI x1, + objects x4).
  lr = 'schedule.base_learning_rate'
  assert diff - {lr} == {'input.max_boxes', 'objectives.object_triplet.weight',
                         'objectives.object_triplet.margin'}
  assert obj[lr] / base[lr] == pytest.approx(vivi_obj.TINY_LR_MULTIPLIER / vivi.TINY_LR_MULTIPLIER)
  assert (lr in diff) == (vivi_obj.TINY_LR_MULTIPLIER != vivi.TINY_LR_MULTIPLIER)
  c = vivi_obj.get_config()
  assert (c.objectives.object_triplet.weight, c.objectives.shot_infonce.weight) == (5.0, 0.04)
  assert (c.input.max_boxes, c.input.min_box_score) == (5, 0.05)
  with pytest.raises(ValueError, match='an option from'):
    vivi_obj.get_config('tiny,random_boxes,also_ce')
