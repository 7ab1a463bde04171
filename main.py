r"""Trains an image encoder on videos with the objectives a config names.

  python main.py --config=configs/vivi.py:tiny --workdir=/tmp/vivi_tiny
  python main.py --config=configs/vivi.py --workdir=DIR --config.data.dataset=RECORDS_DIR

Any config key can be overridden on the command line (--config.model.width=3); an unknown
key is an error that lists the valid ones. Re-running with the same --workdir resumes from
its latest checkpoint (a changed config is compared with the checkpoint's: see
vivi/checkpoint.py RESUMABLE_CHANGES). A bad config, path or dataset ends the run with one
message and exit status 2 (vivi/cli.py).
"""

from absl import app, flags
from ml_collections import config_flags

from vivi import cli, logs, loop, parallel

WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints and TensorBoard events go.',
                              required=True)
CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/X.py[:variant]',
                                         lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  parallel.initialize()
  logs.quiet_library_logs()
  loop.train_and_evaluate(CONFIG.value, WORKDIR.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  cli.run(main)
