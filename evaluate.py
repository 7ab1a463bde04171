r"""Evaluates a trained encoder on a suite of evaluations chosen by config.

  python evaluate.py --config=configs/evaluate.py:synthetic --workdir=/tmp/vivi_obj_tiny
  python evaluate.py --config=configs/evaluate.py:synthetic --workdir=W --step=225
  python evaluate.py --config=configs/evaluate.py:vtab --encoder=EXPORTED_ENCODER_DIR
  python evaluate.py --workdir=W --export=/tmp/encoder   # only export the encoder

The encoder comes from a training workdir's orbax checkpoint (latest, or --step) or from a
folder written by --export (vivi/checkpoint.py: the encoder alone, for downstream use).
Writes <workdir or encoder>/eval/step_<N>/{results.md, *.json, *.png} and TensorBoard
events, and prints the Markdown table.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from vivi import checkpoint, loop, parallel
from vivi.evaluate import suite

WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir (its checkpoints/).')
ENCODER = flags.DEFINE_string('encoder', None, 'Or: a folder written by --export.')
STEP = flags.DEFINE_integer('step', None, 'Checkpoint step of --workdir (default: latest).')
EXPORT = flags.DEFINE_string('export', None, 'Write the encoder alone to this folder.')
CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/evaluate.py[:variant]')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  parallel.initialize()
  loop.quiet_library_logs()
  if bool(WORKDIR.value) == bool(ENCODER.value):
    raise app.UsageError('give exactly one of --workdir and --encoder')
  mesh = parallel.make_mesh()
  if WORKDIR.value:
    encoder = checkpoint.restore_encoder(WORKDIR.value, STEP.value, mesh)
  else:
    encoder = checkpoint.load_encoder(ENCODER.value, mesh)
  if EXPORT.value:
    print(f'encoder of step {encoder.info["step"]} exported to '
          f'{checkpoint.export_encoder(encoder, EXPORT.value)}')
  if CONFIG.value is None:
    if not EXPORT.value:
      raise app.UsageError('nothing to do: give --config (and/or --export)')
    return
  config = CONFIG.value
  config.workdir = WORKDIR.value or ''
  root = os.path.join(WORKDIR.value or ENCODER.value, 'eval')
  suite.run(encoder, config, mesh, root)
  with open(os.path.join(root, f'step_{encoder.info["step"]}', 'results.md')) as f:
    print(f.read())


if __name__ == '__main__':
  app.run(main)
