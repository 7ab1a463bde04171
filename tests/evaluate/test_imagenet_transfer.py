"""ImageNet linear evaluation (vivi/evaluate/imagenet_transfer.py): the stacked heads train as
independent optax SGD-Nesterov runs would, and the evaluator trains, chooses, reports and
writes a classifier on a small imagenet2012 written in TFDS's own format."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import common
from tests import tfds_data
from vivi import classifier, parallel
from vivi import encoder as encoder_api
from vivi.evaluate import datasets, imagenet_transfer, suite


def test_stacked_heads_follow_independent_optax_runs_one_per_learning_rate():
  rng = np.random.default_rng(0)
  feats = [jnp.asarray(rng.normal(size=(16, 6)), jnp.float32) for _ in range(4)]
  labels = [jnp.asarray(rng.integers(0, 3, 16)) for _ in range(4)]
  rates, steps = np.array([0.4, 0.05], np.float32), 4
  options = ml_collections.ConfigDict(dict(imagenet_transfer.DEFAULTS, weight_decay=0.0))
  step_fn, base = imagenet_transfer.make_train_step(lambda v, x: x, options, rates, steps)
  heads = imagenet_transfer.init_heads(2, 6, 3)
  state = base.init(heads)
  for t in range(steps):
    heads, state, _ = step_fn(heads, state, t, None, feats[t], labels[t])
  for i, lr in enumerate(rates):   # The reference: one optax.sgd run per learning rate.
    tx = optax.sgd(optax.cosine_decay_schedule(float(lr), steps), momentum=0.9, nesterov=True)
    p = {'kernel': jnp.zeros((6, 3)), 'bias': jnp.zeros(3)}
    s = tx.init(p)
    loss = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(
        x @ p['kernel'] + p['bias'], y).mean()
    for t in range(steps):
      updates, s = tx.update(jax.grad(loss)(p, feats[t], labels[t]), s, p)
      p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(heads['kernel'][i], p['kernel'], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(heads['bias'][i], p['bias'], rtol=1e-5, atol=1e-7)


def _imagenet(tmp_path, num_train=48, num_val=16):
  """imagenet2012 with 4 of its classes, each class one scikit-image photograph (crops)."""
  def examples(n, seed):
    images = tfds_data.sample_images(n, size=64, seed=seed)
    return [{'image': im, 'label': i % 4, 'file_name': f'n{i:08d}.JPEG'}
            for i, im in enumerate(images)]
  tfds_data.write_tfds('imagenet2012', str(tmp_path),
                       {'train': examples(num_train, 0), 'validation': examples(num_val, 1)})
  return str(tmp_path)


@pytest.mark.slow
def test_linear_evaluation_chooses_on_held_out_reports_validation_and_writes_its_classifier(
    tmp_path):
  data_dir = _imagenet(tmp_path / 'tfds')
  config = ml_collections.ConfigDict(dict(
      seed=0, image_size=32, data_dir=data_dir, num_train=0, num_test=0, split='test',
      evaluators={'imagenet_linear': dict(held_out=8, num_steps=12, batch_size=8,
                                          learning_rates=(0.3, 0.05), eval_batch_size=8,
                                          shuffle_buffer=64)}))
  mesh = parallel.make_mesh()
  encoder = encoder_api.random_encoder(common.base('tiny').model, 32, seed=0, mesh=mesh)
  evaluation = suite.Suite(config, mesh)
  out_dir = tmp_path / 'eval'
  out_dir.mkdir()
  ctx = evaluation.context(encoder, str(out_dir))
  metrics, _ = evaluation.evaluate(ctx, 'imagenet_linear')
  held = [metrics[f'imagenet2012/held_out_top1/lr{lr:g}'] for lr in (0.3, 0.05)]
  assert metrics['imagenet2012/learning_rate'] == (0.3, 0.05)[int(np.argmax(held))]
  assert ctx.counts['imagenet2012/top1'] == 16
  assert ctx.counts['imagenet2012/held_out_top1/lr0.3'] == 8

  # The written classifier, scored by hand on the validation images, gives the reported
  # top-1, and is the one the next evaluators get.
  clf = classifier.load_classifier(str(out_dir / 'imagenet_linear' / 'classifier'), mesh)
  assert ctx.classifier() is ctx.trained_classifier
  builder = datasets.tfds_builder('imagenet2012', data_dir, 'test')
  batches = list(datasets.tfds_examples(
      builder, 'validation', lambda ex: (datasets.resize_center_crop(ex['image'], 32),
                                         ex['label'])))
  images = np.concatenate([b[0] for b in batches])
  labels = np.concatenate([b[1] for b in batches])
  logits = clf.logits(images, mesh)
  assert logits.shape == (16, 1000)
  np.testing.assert_allclose(logits, ctx.trained_classifier.logits(images, mesh), atol=1e-5)
  assert metrics['imagenet2012/top1'] == pytest.approx(np.mean(logits.argmax(1) == labels))
  top5 = np.argsort(-logits, axis=1)[:, :5]
  assert metrics['imagenet2012/top5'] == pytest.approx(np.mean((top5 == labels[:, None]).any(1)))
  assert clf.info['label_space'] == 'imagenet2012' and clf.image_size == 32


def test_linear_evaluation_without_imagenet_names_the_dataset_and_how_to_prepare_it(tmp_path):
  config = ml_collections.ConfigDict(dict(
      seed=0, image_size=32, data_dir=str(tmp_path), num_train=0, num_test=0,
      evaluators={'imagenet_linear': dict(num_steps=1)}))
  mesh = parallel.make_mesh()
  encoder = encoder_api.random_encoder(common.base('tiny').model, 32, seed=0, mesh=mesh)
  evaluation = suite.Suite(config, mesh)
  with pytest.raises(Exception) as e:
    evaluation.evaluate(evaluation.context(encoder), 'imagenet_linear')
  message = str(e.value)
  assert 'imagenet2012' in message and str(tmp_path) in message and 'tfds build' in message


def test_the_classifier_is_trained_before_the_evaluators_that_score_it():
  from configs import evaluate as evaluate_configs
  from vivi.evaluate import evaluators
  assert evaluators.run_order(['knn', 'shape_bias', 'imagenet_linear'])[0] == \
      'imagenet_linear'
  assert evaluators.run_order(['shape_bias', 'knn']) == ['shape_bias', 'knn']
  for variant in evaluate_configs.PAPER_VARIANTS:
    for flags in ('', ',quick'):
      suite.check(evaluate_configs.get_config(variant + flags))
  with pytest.raises(ValueError, match='unknown variant options'):
    evaluate_configs.get_config('vtab,quick')
