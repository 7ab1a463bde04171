"""A user's mistakes end with one message that names what to change, before anything is
built or written: a bad config value, an unknown key on the command line, a missing
dataset or workdir, images of the wrong dtype, a resume with a changed config."""

import importlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import vivi
from tests import helpers
from vivi import checkpoint, errors, loop, testing, validation
from vivi import encoder as encoder_api
from vivi.input import sources

ROOT = helpers.ROOT


def _tiny():
  config = vivi.get_config('tiny')
  config.model.width = 0.25
  config.input.batch_videos = 8          # Values the messages below name.
  config.schedule.base_learning_rate = 0.1
  return config


def _set(config, dotted, value):
  *parents, key = dotted.split('.')
  node = config
  for p in parents:
    node = node[p]
  node[key] = value


NOT_A_DATASET = '<an empty folder>'
# (config key, bad value, what the message must say)
BAD_CONFIGS = [
    ('schedule.base_learning_rate', -0.1, r'base_learning_rate=-0.1: the peak learning rate'),
    ('schedule.base_learning_rate', 0.0, r'base_learning_rate=0.0: .* > 0'),
    ('schedule.base_learning_rate', float('nan'), r'base_learning_rate=nan'),
    ('input.batch_videos', 0, r'config.input.batch_videos=0: .* > 0'),
    ('num_train_steps', -5, r'config.num_train_steps=-5'),
    ('input.sampler', 'vince', r"config.input: unknown key\(s\) \['color', 'flip', "
     r"'frames_per_shot', .* for the 'vince' sampler; it takes \['augment', 'batch_videos'"),
    ('input.frames_per_shots', 4, r"config.input: unknown key\(s\) \['frames_per_shots'\] "
     r"for the 'vivi' sampler; it takes \['augment', 'batch_videos', 'color', 'crop_area'"),
    ('input.augment', 'simclr',
     r"input.augment='simclr'; valid: \['inception', 'moco_v2', 'byol'\]"),
    ('input.num_shots', 0, r'input.num_shots=0: the vivi sampler needs >= 1'),
    ('input.crop_area', (0.5, 0.2), r'input.crop_area=\(0.5, 0.2\)'),
    ('optimizer.name', 'adam',
     r"config.optimizer.name: unknown optimiser 'adam'; valid: \['adamw', 'lars', 'sgd'\]"),
    ('optimizer.nesterof', True, r"config.optimizer: unknown key\(s\) \['nesterof'\] for the "
     r"'adamw' optimiser; it takes \['momentum', 'name', 'nesterov', 'weight_decay'\]"),
    ('optimizer.momentum', 1.5, r'optimizer.momentum=1.5'),
    ('model.depth', 34, r'model.depth=34: valid: \[14, '),
    ('model.norm', 'layer', r"model.norm='layer'"),
    ('model.layout', 'torch', r"config.model.layout='torch': valid: \['keras', 'timm'\]"),
    ('model.layout', 'timm', r"config.model.layout='timm' is timm's ResNetV2, which has the "
     r"'imagenet' stem and downsample='stride' only; got model.stem='small'"),
    ('objectives.exemplar', {'weight': 1.0, 'wieght': 2.0},
     r"objectives.exemplar: unknown key\(s\) \['wieght'\]"),
    ('objectives.vince', {'weight': 1.0}, r'config.target_network .* configures the EMA'),
    ('probe.evaluators.linear_probe.datasets', ('synthetic/colour',),
     r"config.probe.evaluators.linear_probe.datasets: unknown synthetic task 'colour'"),
    ('probe.evaluators.object_discovery.feature', 'pre_logits',
     r"config.probe.evaluators.object_discovery: feature='pre_logits'; valid: \('block1'"),
    ('probe.evaluators', {'probe': {}}, r"unknown evaluators \['probe'\] in "
     r"config.probe.evaluators; valid: \[.*'knn', 'linear_probe', 'object_discovery'"),
    ('schedule.name', 'linear', r"config.schedule.name: unknown learning-rate schedule 'linear'; "
     r"valid: \['cosine', 'piecewise'\]"),
    ('schedule.boundaries', (10,), r"config.schedule: unknown key\(s\) \['boundaries'\] for "
     r"the 'cosine' learning-rate schedule"),
    ('input.sampler', 'vivid', r"config.input.sampler: unknown sampler 'vivid'; valid: "
     r"\['detcon', 'none', 'vince', 'vito', 'vivi'\]"),
    ('input.num_shot', 2, r"config.input: unknown key\(s\) \['num_shot'\] for the 'vivi' "
     r"sampler"),
    ('profile.num_steps', -1, r"config.profile=\{'first_step': 10, 'num_steps': -1\}: want "
     r"first_step >= 1 and num_steps >= 0"),
    ('data.dataset', '/no/such/folder', r"data.dataset='/no/such/folder': no such folder"),
    ('data.dataset', NOT_A_DATASET, r'is not a dataset: it has no manifest.json'),
    ('labelled.dataset', 'synthetic/class', r"config.labelled.dataset='synthetic/class' gives "
     r"labelled images, but none of config.objectives .* reads them"),
    ('objectives.supervised', {'weight': 1.0}, r"objective 'supervised' reads batch "
     r"\['images', 'labels'\], .*; config.labelled.dataset gives them"),
    ('objectives.rotation', {'weight': 1.0}, r"objective 'rotation' reads batch \['rotation'\]"
     r", .*; input.rotate=True gives them"),
]


@pytest.mark.parametrize('key,value,message', BAD_CONFIGS,
                         ids=[f'{k}={v}' for k, v, _ in BAD_CONFIGS])
def test_bad_config_stops_at_once_with_its_key_and_leaves_no_file(key, value, message,
                                                                  tmp_path):
  config = _tiny()
  if value == NOT_A_DATASET:
    (tmp_path / 'empty').mkdir()
    value = str(tmp_path / 'empty')
  _set(config, key, value)
  workdir = tmp_path / 'work'
  start = time.perf_counter()
  with pytest.raises(errors.UserError, match=message):
    loop.train_and_evaluate(config, str(workdir))
  assert time.perf_counter() - start < 20  # Nothing was built.
  assert not workdir.exists()


def test_bad_workdirs(tmp_path):
  config = _tiny()
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  with pytest.raises(errors.PathError, match='exists and is not a folder'):
    validation.check_workdir(str(a_file))
  with pytest.raises(errors.PathError, match='cannot be created'):
    validation.check_workdir(str(a_file / 'sub'))
  with pytest.raises(errors.PathError, match='empty'):
    loop.train_and_evaluate(config, '')
  validation.check_workdir(str(tmp_path / 'new' / 'deeper'))  # Creatable: fine.
  assert not (tmp_path / 'new').exists()


def _main(*args, timeout=120):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'),
                         '--config=' + os.path.join(ROOT, 'configs/vivi.py') + ':tiny', *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))


@pytest.mark.parametrize('args,message', [
    (['--config.objectives.exemplar.wieght=1'],
     "--config.objectives.exemplar.wieght=1: unknown key 'wieght': config.objectives.exemplar "
     'has embedding_dim, margin, weight'),
    (['--config.schedule.base_learning_rate=-0.1'],
     'config.schedule.base_learning_rate=-0.1: the peak learning rate must be a finite number '
     '> 0'),
], ids=['unknown key', 'negative learning rate'])
def test_command_line_user_error_is_one_line_and_exit_status_2(args, message, tmp_path):
  workdir = tmp_path / 'work'
  out = _main(f'--workdir={workdir}', *args)
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1] == f'error: {message}', out.stderr[-2000:]
  assert 'Traceback' not in out.stderr and 'config:' not in out.stderr
  assert not workdir.exists()


def test_override_messages_name_the_level_that_exists():
  from vivi import cli
  argv = ['main.py', f'--config={ROOT}/configs/vivi.py:tiny']
  assert cli.unknown_override(argv + ['--config.optimiser.name=x']).endswith(
      "unknown key 'optimiser': config has checkpoint_every_steps, data, init_encoder, input, "
      'keep_checkpoints, labelled, log_every_steps, max_nonfinite_steps, model, '
      'num_train_steps, objectives, optimizer, probe, profile, schedule, seed')
  assert cli.unknown_override(argv + ['--config.model.depth.x=1']).endswith(
      'config.model.depth is a value (14), not a group of keys')
  assert cli.unknown_override(argv + ['--config.model.depth=26']) is None


def test_resume_with_a_changed_config_names_the_keys(tmp_path, caplog):
  workdir = str(tmp_path / 'work')
  config = _tiny()
  config.input.image_size = 32
  testing.write_initial_checkpoint(config, workdir)
  step, saved = checkpoint.latest_config(workdir)
  assert step == 0 and saved['model']['width'] == 0.25
  checkpoint.check_resume_config(saved, config, step, workdir)  # Unchanged: silent.

  changed = _tiny()
  changed.input.image_size = 32
  changed.schedule.base_learning_rate = 0.05
  changed.objectives.exemplar.weight = 2.0
  with caplog.at_level('WARNING'):
    checkpoint.check_resume_config(saved, changed, step, workdir)
  assert ('with a changed config: objectives.exemplar.weight: 1.0 -> 2.0; '
          'schedule.base_learning_rate: 0.1 -> 0.05') in caplog.text

  changed.model.width = 0.5
  changed.input.batch_videos = 4
  changed.input.sampler = 'vince'
  with pytest.raises(errors.ConfigError) as e:
    checkpoint.check_resume_config(saved, changed, step, workdir)
  message = str(e.value)
  assert "input.batch_videos: 8 -> 4; input.sampler: 'vivi' -> 'vince'; model.width: 0.25 " \
         '-> 0.5. Use a new --workdir' in message
  assert 'schedule' not in message  # Only the refused keys.
  # The whole run refuses before building anything, leaving the checkpoint as it was.
  changed.input.sampler = 'vivi'
  with pytest.raises(errors.ConfigError, match='model.width'):
    loop.train_and_evaluate(changed, workdir)
  assert checkpoint.latest_config(workdir)[1] == saved


def test_encoder_features_refuse_float_images(tmp_path):
  config = _tiny()
  workdir = str(tmp_path / 'work')
  testing.write_initial_checkpoint(config, workdir)
  encoder = encoder_api.restore_encoder(workdir)
  assert encoder.info['input_dtype'] == 'uint8' and encoder.info['input_range'] == [0, 255]
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
  assert encoder.features(images)['pre_logits'].shape == (2, 512)
  with pytest.raises(TypeError, match=r'uint8 RGB images in \[0, 255\].*got float32.*'
                                      r'\(x \* 255\)\.round\(\)'):
    encoder.features(images.astype(np.float32) / 255)
  with pytest.raises(ValueError, match=r'\[N, S, S, 3\]; got shape \(32, 32, 3\)'):
    encoder.features(images[0])


def _dataset(folder, shot_lengths_per_video):
  """A dataset folder of solid-grey videos at 1 fps with the given shot lengths."""
  import io

  from PIL import Image

  from vivi.input import records
  buf = io.BytesIO()
  Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, format='JPEG')
  videos = []
  for i, lengths in enumerate(shot_lengths_per_video):
    shot_ids = np.repeat(np.arange(len(lengths)), lengths)
    t = len(shot_ids)
    videos.append(records.Video(
        video_id=f'v{i}', fps=1.0, frames=[buf.getvalue()] * t,
        timestamps=np.arange(t, dtype=np.float32), shot_ids=shot_ids,
        boxes=[np.zeros((0, 4), np.float32)] * t, labels=[np.zeros(0, np.int64)] * t,
        scores=[np.zeros(0, np.float32)] * t))
  os.makedirs(folder)
  records.write_shard(os.path.join(folder, 'train-00000-of-00001.tfrecord'), videos)
  records.Manifest(label_map=['thing'], fps=1.0, detector='none',
                   counts={'videos': len(videos)},
                   shards=['train-00000-of-00001.tfrecord']).write(folder)
  return str(folder)


def test_a_dataset_the_sampler_cannot_use_is_named_at_the_start(tmp_path, caplog):
  config = _tiny()                      # K = 4 shots of L = 4 frames.
  config.data.dataset = _dataset(tmp_path / 'none', [[2, 2, 2, 2, 2], [9]])
  with pytest.raises(errors.DatasetError,
                     match=r'none of the 2 videos in .* can be used by the vivi sampler, which '
                           r'needs K=4 shots of at least L=4 stored frames each \(at 1 fps: 4 '
                           r'shots of 4 s or longer\); to use more videos, lower '
                           r'input.num_shots or input.frames_per_shot'):
    sources.video_source(config)

  config.data.dataset = _dataset(tmp_path / 'some', [[4, 4, 4, 4], [3, 3], [5], [2, 9, 9]])
  with caplog.at_level('WARNING'):
    source = sources.video_source(config)
  assert source.manifest.counts['videos'] == 4
  assert '3 of the 4 videos in' in caplog.text and 'cannot be used by the vivi sampler' in \
      caplog.text
  assert 'only 1 usable video(s) for batches of 8 (input.batch_videos)' in caplog.text


@pytest.mark.parametrize('config_name,masks,message', [
    ('odin', 'fh', r"objective 'odin' reads batch \['discovery', 'cells'\].*masks='discovered'"),
    ('detcon', 'discovered', r"objective 'detcon' reads batch \['segments', 'mask_valid'\]"),
])
def test_an_objective_whose_inputs_the_sampler_does_not_give_is_named(config_name, masks,
                                                                      message):
  config = importlib.import_module(f'configs.{config_name}').get_config('tiny')
  config.input.masks = masks
  with pytest.raises(errors.ConfigError, match=message):
    validation.check_config(config)
