"""Fine-tuning through the training loop (configs/imagenet_finetune.py): the encoder starts
from a pretrained one (`config.init_encoder`: an exported folder or a training workdir), the
run's workdir is a classifier, and a mismatched or missing encoder is refused by name."""

import jax
import numpy as np
import pytest

from configs import common, imagenet_finetune
from vivi import checkpoint, classifier, errors, loop, parallel
from vivi import encoder as encoder_api


def _config(init_encoder, tmp_path, **model):
  config = imagenet_finetune.get_config('tiny')
  config.init_encoder = init_encoder
  config.model.update(model)
  config.labelled.num_examples = 64
  config.num_train_steps = 2
  config.schedule.warmup_steps = 1
  config.schedule.base_learning_rate = 1e-30   # The weights stay the pretrained ones.
  config.log_every_steps = 1
  config.probe.evaluators = {}
  config.data.cache_dir = str(tmp_path / 'cache')
  return config


@pytest.mark.slow
def test_fine_tuning_starts_from_the_exported_encoder_and_its_workdir_is_a_classifier(tmp_path):
  mesh = parallel.make_mesh()
  pretrained = encoder_api.random_encoder(common.base('tiny').model, 32, seed=7, mesh=mesh)
  exported = encoder_api.export_encoder(pretrained, str(tmp_path / 'encoder'))
  workdir = str(tmp_path / 'finetune')
  loop.train_and_evaluate(_config(exported, tmp_path), workdir)
  state, _, step = checkpoint.restore_training(workdir, None, mesh)
  assert step == 2
  ours = jax.tree.leaves(state['params']['encoder'])
  theirs = jax.tree.leaves(pretrained.variables['params'])
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-20)
  fresh = encoder_api.random_encoder(common.base('tiny').model, 32, seed=0, mesh=mesh)
  assert not all(np.allclose(np.asarray(a), np.asarray(b))   # Not what any seed would give.
                 for a, b in zip(jax.tree.leaves(fresh.variables['params']), theirs))
  clf = classifier.load_classifier(workdir, mesh)
  assert clf.info['label_space'] == 'synthetic/class' and clf.num_classes == 10
  images = np.zeros((2, 32, 32, 3), np.uint8)
  assert clf.logits(images, mesh).shape == (2, 10)


def test_fine_tuning_refuses_a_missing_a_mismatched_or_no_encoder(tmp_path):
  mesh = parallel.make_mesh()
  with pytest.raises(errors.ConfigError, match='init_encoder is required'):
    loop.train_and_evaluate(_config(None, tmp_path), str(tmp_path / 'a'))
  with pytest.raises(errors.MissingPathError, match='no such folder'):
    loop.train_and_evaluate(_config(str(tmp_path / 'nowhere'), tmp_path), str(tmp_path / 'b'))
  wide = dict(common.base('tiny').model, width=common.base('tiny').model.width * 2)
  exported = encoder_api.export_encoder(encoder_api.random_encoder(
      wide, 32, seed=0, mesh=mesh), str(tmp_path / 'wide'))
  with pytest.raises(errors.ConfigError, match='model.width='):
    loop.train_and_evaluate(_config(exported, tmp_path), str(tmp_path / 'c'))
