"""Every command-line entry point ends a user's error with one `error: ...` line and exit status
2, before anything is written; a bug keeps its traceback."""

import os
import subprocess
import sys

import pytest

from tests import helpers
from vivi import cli, errors

ROOT = helpers.ROOT
EMPTY, MISSING, UNCREATABLE = '<empty folder>', '/no/such/folder', '/proc/no/such'

# (script and arguments, the message's start); EMPTY is an existing folder with nothing in it.
CASES = [
    (['main.py', '--config=configs/nope.py', f'--workdir={MISSING}'],
     '--config=configs/nope.py: no such config file configs/nope.py; configs has detcon.py, '
     'evaluate.py, imagenet_finetune.py, moclr.py'),
    (['main.py', f'--workdir={MISSING}'], 'flag --config=None: Flag --config must have a value'),
    (['main.py', '--config=configs/vivi.py:nope', f'--workdir={MISSING}'],
     "flag --config=configs/vivi.py:nope: ValueError: unknown variant 'nope'"),
    (['evaluate.py', f'--encoder={EMPTY}', '--config=configs/evaluate.py:synthetic'],
     f'{EMPTY} is not an exported encoder: it has no encoder.json'),
    (['evaluate.py', f'--encoder={EMPTY}', f'--workdir={EMPTY}'],
     'give exactly one of --workdir, --encoder and --random_init'),
    (['evaluate.py', f'--workdir={MISSING}', '--config=configs/evaluate.py:synthetic'],
     f'--workdir={MISSING}: no such folder'),
    (['evaluate.py', '--random_init', '--config=configs/evaluate.py:synthetic',
      f'--export_timm={EMPTY}/resnet.pt'],
     f'--export_timm={EMPTY}/resnet.pt: the timm export is a file named <name>.safetensors'),
    (['evaluate.py', '--random_init', '--config=configs/evaluate.py:synthetic',
      f'--export_timm={EMPTY}/resnet.safetensors'],
     "--export_timm: timm's ResNet v2 cannot represent this encoder (model.layout='keras'"),
    (['data/prepare_videos.py', '--input', MISSING, '--output', EMPTY],
     f'{MISSING} is not a folder of videos'),
    (['data/prepare_videos.py', '--input', EMPTY, '--output', UNCREATABLE],
     f'--output: cannot create {UNCREATABLE}'),
    (['data/prepare_videos.py', '--input', EMPTY, '--output', EMPTY],
     f'{EMPTY} holds no video files'),
    (['data/prepare_videos.py', '--input', EMPTY, '--output', EMPTY, '--preset', 'nope'],
     "argument --preset: invalid choice: 'nope'"),
    (['data/prepare_videos.py', '--output', EMPTY],
     'the following arguments are required: --input'),
    (['data/inspect_dataset.py', '--dataset', MISSING],
     f'{MISSING} is not a dataset: it has no manifest.json'),
    (['data/inspect_dataset.py', '--dataset', MISSING, '--config', 'configs/nope.py'],
     '--config configs/nope.py: no config configs/nope.py'),
    (['data/make_synthetic.py', '--out', UNCREATABLE, '--num_videos', '2', '--image_size', '32',
      '--seed', '0'], f'--out: cannot create {UNCREATABLE}'),
    (['data/make_synthetic.py', '--num_videos', '2'],
     'the following arguments are required: --out, --image_size, --seed'),
    (['launch/local.py', '--', 'nope.py'], 'nope.py: no such script to run'),
    (['launch/local.py'], 'give the script to run after --'),
    (['compare.py', f'a={MISSING}', f'b={EMPTY}'], f'{MISSING}: no such file or folder'),
    (['compare.py', f'a={EMPTY}', f'b={EMPTY}'], f'{EMPTY}: no vtab_runs.json'),
    (['compare.py', 'a'], "model 'a': expected NAME=PATH[,PATH...]"),
]


@pytest.mark.parametrize('args,message', CASES, ids=[' '.join(a) for a, _ in CASES])
def test_a_user_error_is_one_line_and_exit_status_2(args, message, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  args = [a.replace(EMPTY, str(empty)) for a in args]
  message = message.replace(EMPTY, str(empty))
  out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 2, out.stderr[-3000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {message}'), out.stderr[-3000:]
  assert 'Traceback' not in out.stderr, out.stderr[-3000:]
  assert os.listdir(empty) == []


def test_a_bug_keeps_its_traceback_and_a_user_error_does_not(capsys):
  def bug():
    raise RuntimeError('a bug')

  def mistake():
    raise errors.PathError('--out: not a folder')

  with pytest.raises(RuntimeError, match='a bug'):
    cli.script(bug)
  with pytest.raises(SystemExit) as e:
    cli.script(mistake)
  assert e.value.code == 2
  assert capsys.readouterr().err == 'error: --out: not a folder\n'
