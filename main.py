r"""Trains an image encoder on videos with the objectives a config names.

  python main.py --config=configs/vivi.py:tiny --workdir=/tmp/vivi_tiny
  python main.py --config=configs/vivi.py --workdir=DIR --config.data.dataset=RECORDS_DIR

Any config key can be overridden on the command line (--config.model.width=3); an unknown
key is an error. Re-running with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from vivi import loop, parallel

WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints and TensorBoard events go.',
                            required=True)
CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/X.py[:variant]',
                                         lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  parallel.initialize()
  loop.quiet_library_logs()
  logging.info('config:\n%s', CONFIG.value)
  loop.train_and_evaluate(CONFIG.value, WORKDIR.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
