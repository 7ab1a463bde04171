"""Builds a synthetic video dataset (see `vivi/input/synthetic.py`) from the command line.

  python data/make_synthetic.py --out /tmp/synth --num_videos 500 --image_size 64 --seed 0

Restartable: run it again with the same arguments after an interruption and only the
missing shards are rendered. (`python -m vivi.input.synthetic` is the same command.)
"""

from vivi import cli
from vivi.input import synthetic

if __name__ == '__main__':
  cli.script(synthetic.main)
