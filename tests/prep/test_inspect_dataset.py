"""Dataset inspection: statistics report and contact sheet (vivi/prep/inspect_dataset.py)."""

from __future__ import annotations

import os
import pathlib
import re
import runpy
import shutil

import numpy as np
import pytest
from PIL import Image

from tests import helpers
from vivi.input import records, synthetic
from vivi.prep import inspect_dataset

REPO = helpers.ROOT


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> str:
  folder = str(tmp_path_factory.mktemp('inspect') / 'synth')
  synthetic.build_dataset(folder, num_videos=5, image_size=64, seed=0, videos_per_shard=2)
  return folder


GREY = helpers.jpeg(np.full((30, 40, 3), 128, np.uint8))


def _handmade(folder: str) -> None:
  """One single-frame video without boxes, one 3-frame video with a label outside the map."""
  empty = lambda n: ([np.zeros((0, 4), np.float32)] * n, [np.zeros(0, np.int64)] * n,
                     [np.zeros(0, np.float32)] * n)
  b, l, s = empty(1)
  one = records.Video('one', 2.0, [GREY], np.zeros(1, np.float32), np.zeros(1, int),
                      b, l, s)
  b, l, s = empty(3)
  b[1] = np.array([[0.1, 0.2, 0.5, 0.6]], np.float32)
  l[1], s[1] = np.array([7]), np.array([0.9], np.float32)
  three = records.Video('three', 2.0, [GREY] * 3, np.array([0, .5, 1], np.float32),
                        np.array([0, 1, 1]), b, l, s)
  os.makedirs(folder)
  records.write_shard(os.path.join(folder, 'a.tfrecord'), [one, three])
  records.Manifest(label_map=['x', 'y'], fps=2.0, detector='none',
                   counts={'videos': 2, 'shots': 3, 'frames': 4, 'boxes': 1},
                   shards=['a.tfrecord'],
                   skipped=[{'video': 'p', 'reason': 'static: mean difference 0.1'},
                            {'video': 'q', 'reason': 'static: mean difference 0.2'},
                            {'video': 'r', 'reason': 'too short: 1.0 s'}]).write(folder)


def test_statistics_match_manifest(dataset):
  stats = inspect_dataset.statistics(dataset)
  counts = records.Manifest.read(dataset).counts
  assert stats['counts'] == {k: counts[k] for k in ('videos', 'shots', 'frames', 'boxes')}
  assert stats['counts_match'] and stats['num_shards'] == 3
  frames = stats['frames_per_video']
  assert frames['n'] == 5 and frames['min'] <= frames['median'] <= frames['max']
  assert abs(frames['mean'] * 5 - counts['frames']) < 1e-6
  # 1 fps, one frame a second: a video lasts as many seconds as it has frames.
  assert stats['video_seconds'] == frames
  assert 4 <= stats['shot_seconds']['min'] <= stats['shot_seconds']['max'] <= 14
  assert 0 < stats['frames_with_kept_box'] <= stats['frames_with_box'] <= 1
  q = list(stats['score_quantiles'].values())
  assert q == sorted(q) and q[0] >= 0 and q[-1] <= 1
  assert sum(n for _, _, n in stats['top_labels']) <= counts['boxes']
  assert all(name in synthetic.CLASS_NAMES for _, name, _ in stats['top_labels'])
  assert stats['frame_sizes'] == {'64x64': 5}
  assert stats['total_bytes'] > stats['jpeg_bytes'] > 0
  report = inspect_dataset.format_statistics(stats)
  for k in ('videos', 'shots', 'frames', 'boxes'):
    assert f'- {k}: {counts[k]}\n' in report
  assert 'match the manifest' in report and 'DO NOT' not in report


def test_statistics_edge_cases(tmp_path):
  folder = str(tmp_path / 'hand')
  _handmade(folder)
  stats = inspect_dataset.statistics(folder)
  assert stats['counts'] == {'videos': 2, 'shots': 3, 'frames': 4, 'boxes': 1}
  assert stats['skipped_by_reason'] == {'static': 2, 'too short': 1}
  assert stats['video_seconds']['min'] == 0.5 and stats['video_seconds']['max'] == 1.5
  assert stats['frames_with_box'] == 0.25 and stats['frame_sizes'] == {'30x40': 2}
  assert stats['top_labels'][0][1].startswith('<id 7') and stats['labels_outside_map'] == 1
  assert 'outside the map' in inspect_dataset.format_statistics(stats)
  out = inspect_dataset.contact_sheet(folder, str(tmp_path / 'sheet.png'), thumb_height=30)
  with Image.open(out) as image:
    assert image.height == inspect_dataset.HEADER + 2 * inspect_dataset.row_height(30)


def test_contact_sheet_layout(dataset, tmp_path):
  out = inspect_dataset.contact_sheet(dataset, str(tmp_path / 'sheet.png'), num_videos=3,
                                      max_frames=6, thumb_height=40)
  widths = []
  for v in inspect_dataset.read_videos(dataset, max_videos=3):
    picks = np.linspace(0, len(v.frames) - 1, 6).round().astype(int)
    changes = int(np.sum(np.diff(v.shot_ids[picks]) != 0))
    widths.append(inspect_dataset.ID_WIDTH + 6 * 40 + changes * inspect_dataset.BOUNDARY_GAP
                  + (5 - changes) * inspect_dataset.GAP + inspect_dataset.PAD)
  with Image.open(out) as image:
    assert image.format == 'PNG'
    assert image.size == (max(widths), inspect_dataset.HEADER
                          + 3 * inspect_dataset.row_height(40))


def test_corrupt_shard_names_file(dataset, tmp_path):
  folder = str(tmp_path / 'corrupt')
  shutil.copytree(dataset, folder)
  shard = records.Manifest.read(folder).shard_paths(folder)[1]
  data = bytearray(pathlib.Path(shard).read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = b'\xff' * 64
  with open(shard, 'wb') as f:
    f.write(bytes(data))
  with pytest.raises(records.RecordError, match=os.path.basename(shard) + r': record \d'):
    list(inspect_dataset.read_videos(folder))


def test_command_line(dataset, tmp_path, capsys):
  # In-process (the script's `main`), which spares the test a second TensorFlow start-up.
  cli = runpy.run_path(os.path.join(REPO, 'data', 'inspect_dataset.py'), run_name='cli')
  out = str(tmp_path / 'cli.png')
  cli['main'](['--dataset', dataset, '--contact_sheet', out, '--num_videos', '2',
               '--max_frames', '4'])
  report = capsys.readouterr().out
  assert '- videos: 5\n' in report and os.path.exists(out)
  # How many videos each method's sampler can use, with what it needs.
  assert '## Videos each training config can use' in report
  for name in ('configs/vivi.py', 'configs/vivi.py:tiny', 'configs/vince.py',
               'configs/detcon.py'):
    assert f'- {name} (' in report, report
  assert '- configs/detcon.py (detcon sampler): 5 of 5; needs at least one stored frame' in report
  assert re.search(r'- configs/vivi.py \(vivi sampler\): 0 of 5; needs K=4 shots of at least '
                   r'L=8 stored frames each \(at 1 fps: 4 shots of 8 s or longer\)', report)


def test_usable_videos_per_config(tmp_path):
  folder = str(tmp_path / 'handmade')
  _handmade(folder)   # Two videos at 2 fps: 1 frame; 3 frames in 2 shots (0.5 s + 1 s).
  cli = runpy.run_path(os.path.join(REPO, 'data', 'inspect_dataset.py'), run_name='cli')
  configs = {s: cli['load_config'](s) for s in ('configs/vivi.py:tiny', 'detcon.py')}
  configs['one shot of 1 frame'] = cli['load_config']('configs/vivi.py:tiny')
  configs['one shot of 1 frame'].input.update(num_shots=1, frames_per_shot=1)
  usable = inspect_dataset.usable_videos(folder, configs)
  assert [(u['usable'], u['videos']) for u in usable.values()] == [(0, 2), (2, 2), (2, 2)]
  assert usable['configs/vivi.py:tiny']['needs'].startswith(
      'K=4 shots of at least L=4 stored frames each (at 2 fps: 4 shots of 2 s or longer)')
