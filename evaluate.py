r"""Evaluates a trained encoder on a suite of evaluations chosen by config.

  python evaluate.py --config=configs/evaluate.py:synthetic --workdir=/tmp/vivi_obj_tiny
  python evaluate.py --config=configs/evaluate.py:synthetic --workdir=W --step=225
  python evaluate.py --config=configs/evaluate.py:vtab --encoder=EXPORTED_ENCODER_DIR
  python evaluate.py --workdir=W --export=/tmp/encoder   # only export the encoder
  python evaluate.py --encoder=E --export_timm=/tmp/resnet.safetensors   # for timm (PyTorch)
  python evaluate.py --config=configs/evaluate.py:vtab_tiny --random_init

The encoder comes from a training workdir's orbax checkpoint (latest, or --step), from a
folder written by --export (vivi/encoder.py: the encoder alone, for downstream use), or
with --random_init is the config's `model` at initialisation (a from-scratch baseline).
--export_timm writes an encoder trained with model.layout='timm' as the weights of timm's
ResNetV2 (a .safetensors file and a .json beside it that says how to build the model and
preprocess images; vivi/timm_export.py).
Writes <output>/step_<N>/{results.md, *.json, *.png} and TensorBoard events, where
<output> is --output or <workdir or encoder>/eval, and prints the Markdown table. Each
evaluator's results are written as it finishes.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from vivi import cli, errors, logs, parallel, timm_export
from vivi import encoder as encoder_api
from vivi.evaluate import suite

WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir (its checkpoints/).')
ENCODER = flags.DEFINE_string('encoder', None, 'Or: a folder written by --export.')
RANDOM_INIT = flags.DEFINE_bool('random_init', False, 'Or: the config\'s model at random '
                                'initialisation (results under --output or /tmp/vivi_eval).')
STEP = flags.DEFINE_integer('step', None, 'Checkpoint step of --workdir (default: latest).')
EXPORT = flags.DEFINE_string('export', None, 'Write the encoder alone to this folder.')
EXPORT_TIMM = flags.DEFINE_string(
    'export_timm', None, "Write the encoder as timm's ResNetV2 weights to this PATH.safetensors "
    "(and PATH.json); the encoder must have model.layout='timm'.")
OUTPUT = flags.DEFINE_string('output', None, 'Where results go (default: <workdir or '
                             'encoder>/eval), e.g. for a read-only workdir.')
CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/evaluate.py[:variant]')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if (bool(WORKDIR.value) + bool(ENCODER.value) + RANDOM_INIT.value) != 1:
    raise app.UsageError('give exactly one of --workdir, --encoder and --random_init')
  if RANDOM_INIT.value and CONFIG.value is None:
    raise app.UsageError('--random_init needs --config (its model)')
  source = WORKDIR.value or ENCODER.value or '/tmp/vivi_eval'
  if not RANDOM_INIT.value and not os.path.isdir(source):
    raise errors.PathError(f'--{"workdir" if WORKDIR.value else "encoder"}={source}: no such '
                           'folder')
  if WORKDIR.value and not os.path.isdir(os.path.join(source, 'checkpoints')):
    raise errors.PathError(f'--workdir={source} has no checkpoints/: not a training workdir')
  info = encoder_api.encoder_info(source) if ENCODER.value else None
  if CONFIG.value is None and not (EXPORT.value or EXPORT_TIMM.value):
    raise app.UsageError('nothing to do: give --config (and/or --export, --export_timm)')
  if EXPORT_TIMM.value:   # What can be checked before anything is loaded or written.
    try:
      timm_path = timm_export.check_path(EXPORT_TIMM.value)
    except errors.PathError as e:
      raise errors.PathError(f'--export_timm={e}') from None
    if EXPORT.value and timm_export.sidecar_path(timm_path) == os.path.join(
        os.path.abspath(EXPORT.value), encoder_api.ENCODER_JSON):
      raise errors.PathError(f'--export_timm={EXPORT_TIMM.value}: its sidecar JSON would be '
                             f'the --export folder\'s {encoder_api.ENCODER_JSON}; name the '
                             '.safetensors file otherwise')
    if info or RANDOM_INIT.value:
      _timm_exportable(info['model'] if info else CONFIG.value.model)
    cli.writable_folder(os.path.dirname(timm_path), '--export_timm')
  root = None
  if CONFIG.value is not None:
    suite.check(CONFIG.value)   # Evaluators and their options, before anything is built.
    root = cli.writable_folder(OUTPUT.value or os.path.join(source, 'eval'),
                               '--output' if OUTPUT.value else
                               f'{source}/eval (give --output=<a writable folder>)')
  parallel.initialize()
  logs.quiet_library_logs()
  mesh = parallel.make_mesh()
  if WORKDIR.value:
    encoder = encoder_api.restore_encoder(WORKDIR.value, STEP.value, mesh)
  elif ENCODER.value:
    encoder = encoder_api.load_encoder(ENCODER.value, mesh)
  else:
    encoder = encoder_api.random_encoder(CONFIG.value.model, CONFIG.value.image_size,
                                        CONFIG.value.seed, mesh)
  if EXPORT_TIMM.value:
    _timm_exportable(timm_export.model_of(encoder.module))   # Before --export writes.
  if EXPORT.value:
    print(f'encoder of step {encoder.info["step"]} exported to '
          f'{encoder_api.export_encoder(encoder, EXPORT.value)}')
  if EXPORT_TIMM.value:
    spec = timm_export.export_timm(encoder, timm_path)
    print(f'encoder of step {encoder.info["step"]} exported for timm to {timm_path} and '
          f'{timm_export.sidecar_path(timm_path)} ({spec["create_model"]})')
  if CONFIG.value is None:
    return
  config = CONFIG.value
  config.workdir = WORKDIR.value or ''
  suite.run(encoder, config, mesh, root)
  with open(os.path.join(root, f'step_{encoder.info["step"]}', 'results.md')) as f:
    print(f.read())


def _timm_exportable(model) -> None:
  try:
    timm_export.check_exportable(model)
  except errors.ConfigError as e:
    raise errors.ConfigError(f'--export_timm: {e}') from None


if __name__ == '__main__':
  cli.run(main)
