"""Inspecting a prepared video dataset: what training will see, before training sees it.

`statistics` reads the manifest and makes one full pass over the shards (counts, per-video
and per-shot distributions, detector boxes and scores, labels, frame sizes, bytes);
`format_statistics` turns that into a plain-text report; `contact_sheet` renders a PNG with
one row per video: frames left to right with timestamps, shot ids, shot boundaries and the
boxes the training threshold keeps. The command line is `data/inspect_dataset.py`.
"""

from __future__ import annotations

import collections
import io
import os
import re
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vivi.input import objects, records

TRAIN_MIN_SCORE = objects.MIN_SCORE  # Boxes below it are dropped by the training pipeline.
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
# Contact sheet layout (pixels); `row_height` and the tests depend on these.
HEADER, PAD, GAP, BOUNDARY_GAP, CAPTION, BAND, ID_WIDTH = 22, 6, 3, 10, 13, 6, 170
BACKGROUND, BOUNDARY = (28, 28, 32), (255, 214, 0)
LABEL_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                 (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


def read_videos(folder: str, max_videos: int | None = None) -> Iterator[records.Video]:
  """Yields the videos of the manifest's shards in order; errors name shard and record."""
  import tensorflow as tf
  manifest = records.Manifest.read(folder)
  count = 0
  for path in manifest.shard_paths(folder):
    index = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while max_videos is None or count < max_videos:
      where = f'{path}: record {index}'
      try:
        serialized = next(iterator, None)
        if serialized is None:
          break
        video = records.from_serialized(serialized.numpy())
      except (tf.errors.OpError, ValueError) as e:  # Framing / CRC / proto errors.
        # Drop TF's op-name decorations; keep the message (it has the byte offset).
        message = re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:.*$', '', str(e), flags=re.S)
        raise records.RecordError(f'{where}: {type(e).__name__}: {message}') from e
      records.validate_video(video, where)
      yield video
      index += 1
      count += 1


def _distribution(values) -> dict:
  v = np.asarray(values, np.float64)
  if not len(v):
    return {'n': 0}
  return {'n': len(v), 'min': float(v.min()), 'median': float(np.median(v)),
          'mean': float(v.mean()), 'max': float(v.max())}


def _label_name(label_map: list[str], i: int) -> str:
  # Records are not trusted to agree with the manifest: an id outside the map is reported.
  return label_map[i] if 0 <= i < len(label_map) else f'<id {i} not in label map>'


def statistics(folder: str) -> dict:
  """Manifest fields plus the numbers of one full pass over the shards (see module doc)."""
  m = records.Manifest.read(folder)
  skipped = collections.Counter(s.get('reason', '').split(':')[0].strip() or '(no reason)'
                                for s in m.skipped)
  frames, shots, durations, shot_lengths, per_frame, scores = [], [], [], [], [], []
  labels, sizes = collections.Counter(), collections.Counter()
  jpeg_bytes = soft = kept = 0
  for v in read_videos(folder):
    t, ts = len(v.frames), np.asarray(v.timestamps, np.float64)
    frames.append(t)
    shots.append(len(np.unique(v.shot_ids)))
    durations.append(ts[-1] - ts[0] + 1 / v.fps)
    for s in np.unique(v.shot_ids):
      st = ts[v.shot_ids == s]
      shot_lengths.append(st[-1] - st[0] + 1 / v.fps)
    per_frame.extend(len(s) for s in v.scores)
    kept += sum(bool(np.any(np.asarray(s) >= TRAIN_MIN_SCORE)) for s in v.scores)
    scores.append(np.concatenate([np.zeros(0, np.float32)] + [np.asarray(s) for s in v.scores]))
    labels.update(int(l) for ls in v.labels for l in ls)
    jpeg_bytes += sum(len(f) for f in v.frames)
    soft += 0 if v.soft_labels is None else t
    w, h = Image.open(io.BytesIO(v.frames[0])).size  # Header only: no full decode.
    sizes[f'{h}x{w}'] += 1
  scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
  per_frame = np.asarray(per_frame)
  counted = {'videos': len(frames), 'shots': int(sum(shots)), 'frames': int(sum(frames)),
             'boxes': int(per_frame.sum()) if len(per_frame) else 0}
  paths = m.shard_paths(folder) + [os.path.join(folder, records.MANIFEST)]
  return {
      'folder': folder, 'schema_version': m.schema_version, 'fps': m.fps,
      'detector': m.detector, 'label_map_size': len(m.label_map),
      'soft_label_map_size': len(m.soft_label_map), 'num_shards': len(m.shards),
      'manifest_counts': dict(m.counts), 'counts': counted,
      'counts_match': all(m.counts.get(k) == n for k, n in counted.items()),
      'skipped': len(m.skipped), 'skipped_by_reason': dict(skipped.most_common()),
      'frames_per_video': _distribution(frames), 'shots_per_video': _distribution(shots),
      'video_seconds': _distribution(durations), 'shot_seconds': _distribution(shot_lengths),
      'boxes_per_frame': _distribution(per_frame),
      'frames_with_box': float(np.mean(per_frame > 0)) if len(per_frame) else 0.0,
      'frames_with_kept_box': kept / len(per_frame) if len(per_frame) else 0.0,
      'score_quantiles': ({q: float(np.quantile(scores, q)) for q in QUANTILES}
                          if len(scores) else {}),
      'boxes_below_threshold': float(np.mean(scores < TRAIN_MIN_SCORE)) if len(scores) else 0.0,
      'top_labels': [(i, _label_name(m.label_map, i), n) for i, n in labels.most_common(10)],
      'labels_outside_map': sum(n for i, n in labels.items() if not 0 <= i < len(m.label_map)),
      'frame_sizes': dict(sizes.most_common()), 'frames_with_soft_labels': soft,
      'jpeg_bytes': jpeg_bytes, 'total_bytes': sum(os.path.getsize(p) for p in paths),
  }


def format_statistics(stats: dict) -> str:
  """A plain-text (Markdown-compatible) report of `statistics`."""
  def dist(d, unit='', fmt='.1f'):
    if not d.get('n'):
      return 'none'
    return ' / '.join(f'{d[k]:{fmt}}{unit}' for k in ('min', 'median', 'mean', 'max'))

  c, mc = stats['counts'], stats['manifest_counts']
  check = 'match the manifest' if stats['counts_match'] else 'DO NOT MATCH the manifest'
  lines = [
      f'# Dataset {stats["folder"]}',
      f'schema v{stats["schema_version"]}, {stats["fps"]:g} fps, detector '
      f'{stats["detector"]!r}, {stats["label_map_size"]} labels, {stats["num_shards"]} shards, '
      f'{stats["total_bytes"] / 2**20:.1f} MiB ({stats["jpeg_bytes"] / 2**20:.1f} MiB JPEG)',
      '',
      '## Counts (shards; manifest)',
      *(f'- {k}: {c[k]}' + ('' if mc.get(k) == c[k] else f'  (manifest says {mc.get(k)})')
        for k in c),
      f'- counts {check}',
      f'- skipped videos: {stats["skipped"]}',
      *(f'  - {reason}: {n}' for reason, n in stats['skipped_by_reason'].items()),
      '',
      '## Per video (min / median / mean / max)',
      f'- frames: {dist(stats["frames_per_video"])}',
      f'- shots: {dist(stats["shots_per_video"])}',
      f'- duration: {dist(stats["video_seconds"], " s")}',
      f'- shot length: {dist(stats["shot_seconds"], " s")}',
      '- frame size (first frame, HxW): '
      + ', '.join(f'{k} ({n})' for k, n in stats['frame_sizes'].items()),
      f'- frames with soft labels: {stats["frames_with_soft_labels"]}',
      '',
      '## Boxes',
      f'- per frame: {dist(stats["boxes_per_frame"], fmt=".2f")}',
      f'- frames with >= 1 box: {stats["frames_with_box"]:.1%}; with >= 1 box of score '
      f'>= {TRAIN_MIN_SCORE} (kept by training): {stats["frames_with_kept_box"]:.1%}',
      f'- boxes below {TRAIN_MIN_SCORE}: {stats["boxes_below_threshold"]:.1%}',
      '- score quantiles: ' + (', '.join(f'q{q * 100:g}={v:.3f}'
                                         for q, v in stats['score_quantiles'].items())
                               or 'no boxes'),
      '- top labels: ' + (', '.join(f'{name} [{i}] {n}' for i, name, n in stats['top_labels'])
                          or 'none'),
  ]
  if stats['labels_outside_map']:
    lines.append(f'- WARNING: {stats["labels_outside_map"]} boxes have ids outside the map')
  return '\n'.join(lines) + '\n'


def usable_videos(folder: str, configs: dict) -> dict[str, dict]:
  """For each named training config: how many of the dataset's videos its sampler can use
  (the sampler's own predicate, `pipeline.count_usable`) and what it needs."""
  from vivi import errors
  from vivi.input import pipeline, samplers
  manifest = records.Manifest.read(folder)
  out = {}
  for name, config in configs.items():
    try:
      sampler = samplers.build(config, manifest, folder)
    except errors.UserError as e:  # e.g. VITO's clip on frames stored at 1 fps.
      out[name] = {'sampler': config.input.sampler, 'usable': 0,
                   'videos': manifest.counts.get('videos', 0), 'needs': str(e)}
      continue
    usable, total = pipeline.count_usable(manifest.shard_paths(folder), sampler)
    out[name] = {'sampler': config.input.sampler, 'usable': usable, 'videos': total,
                 'needs': sampler.requirement(manifest.fps)}
  return out


def format_usable(usable: dict[str, dict]) -> str:
  lines = ['', '## Videos each training config can use']
  for name, u in usable.items():
    lines.append(f'- {name} ({u["sampler"]} sampler): {u["usable"]} of {u["videos"]}; '
                 f'needs {u["needs"]}')
  return '\n'.join(lines) + '\n'


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)  # Scalable (Pillow >= 10.1 with FreeType).
  except (TypeError, OSError):
    return ImageFont.load_default()


def _shot_colour(shot: int) -> tuple:
  # Golden-ratio hue steps: neighbouring shots always get clearly different colours.
  h = (shot * 0.618034) % 1.0
  rgb = Image.new('HSV', (1, 1), (int(h * 255), 200, 230)).convert('RGB').getpixel((0, 0))
  return tuple(rgb)


def row_height(thumb_height: int) -> int:
  return PAD + thumb_height + CAPTION + BAND + PAD


def _thumbnail(v: records.Video, f: int, thumb_height: int, min_score: float,
               label_map: list[str], font) -> Image.Image:
  image = Image.open(io.BytesIO(v.frames[f])).convert('RGB')
  w = max(1, round(image.width * thumb_height / image.height))
  image = image.resize((w, thumb_height), Image.BILINEAR)
  draw = ImageDraw.Draw(image)
  boxes = np.asarray(v.boxes[f], np.float32).reshape(-1, 4)
  # Lowest score first, so the most confident box and its label end up on top.
  for k in np.argsort(v.scores[f]):
    if v.scores[f][k] < min_score:
      continue
    label = int(v.labels[f][k])
    colour = LABEL_COLOURS[label % len(LABEL_COLOURS)]
    y0, x0, y1, x1 = boxes[k] * [thumb_height, w, thumb_height, w]
    draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=2)
    # '.85' not '0.85': short tags hide less of a small thumbnail.
    name = label_map[label] if 0 <= label < len(label_map) else f'id {label}?'
    text = f'{name} {v.scores[f][k]:.2f}'.replace(' 0.', ' .')
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    ty = y0 - (bottom - top) - 2 if y0 >= bottom - top + 2 else y0 + 2  # Above, else inside.
    tx = min(max(x0, 0), max(0, w - (right - left) - 2))
    draw.rectangle([tx, ty, tx + right - left + 2, ty + bottom - top + 2], fill=colour)
    ink = (0, 0, 0) if sum(c * w for c, w in zip(colour, (3, 6, 1))) > 1200 else (255,) * 3
    draw.text((tx + 1 - left, ty + 1 - top), text, fill=ink, font=font)
  return image


def contact_sheet(folder: str, out_png: str, num_videos: int = 4, max_frames: int = 16,
                  thumb_height: int = 96, min_score: float = TRAIN_MIN_SCORE,
                  spread: bool = False) -> str:
  """Renders one row per video (the first `num_videos`, or evenly spaced ones if `spread`).

  A row: the video id and its sizes, then frames left to right (evenly spaced ones if the
  video has more than `max_frames`), each captioned with its timestamp and shot id over a
  band in its shot's colour; a yellow bar marks each shot change and boxes with score >=
  `min_score` are drawn with label and score. Returns `out_png`.
  """
  manifest = records.Manifest.read(folder)
  total = int(manifest.counts.get('videos', num_videos))
  wanted = set(range(num_videos))
  if spread and total > num_videos:
    wanted = set(np.linspace(0, total - 1, num_videos).round().astype(int).tolist())
  font, small = _font(11), _font(10)
  rows = []
  for i, v in enumerate(read_videos(folder, max_videos=max(wanted) + 1)):
    if i not in wanted:
      continue
    t = len(v.frames)
    picks = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    thumbs = [_thumbnail(v, f, thumb_height, min_score, manifest.label_map, small)
              for f in picks]
    changes = [a > 0 and v.shot_ids[f] != v.shot_ids[picks[a - 1]] for a, f in enumerate(picks)]
    gaps = [BOUNDARY_GAP if c else GAP * (a > 0) for a, c in enumerate(changes)]
    width = ID_WIDTH + sum(im.width for im in thumbs) + sum(gaps) + PAD
    row = Image.new('RGB', (width, row_height(thumb_height)), BACKGROUND)
    draw = ImageDraw.Draw(row)
    info = [v.video_id[k:k + 24] for k in range(0, len(v.video_id), 24)]  # Wrap long ids.
    info += [f'{t} frames, {len(np.unique(v.shot_ids))} shots',
             f'{v.timestamps[-1] - v.timestamps[0] + 1 / v.fps:.1f} s at {v.fps:g} fps']
    if len(picks) < t:
      info.append(f'showing {len(picks)} of {t} frames')
    draw.multiline_text((PAD, PAD), '\n'.join(info), fill=(235, 235, 235), font=font)
    x, y_band = ID_WIDTH, PAD + thumb_height + CAPTION
    for f, im, change, gap in zip(picks, thumbs, changes, gaps):
      if change:  # Shot boundary: a thick bar in the wider gap, thumbnail to band.
        draw.rectangle([x + 2, PAD - 2, x + gap - 3, y_band + BAND + 1], fill=BOUNDARY)
      x += gap
      row.paste(im, (x, PAD))
      draw.text((x + 1, PAD + thumb_height + 1), f'{v.timestamps[f]:.1f}s  shot {v.shot_ids[f]}',
                fill=(235, 235, 235), font=small)
      draw.rectangle([x, y_band, x + im.width - 1, y_band + BAND - 1],
                     fill=_shot_colour(int(v.shot_ids[f])))
      x += im.width
    rows.append(row)
  sheet = Image.new('RGB', (max([r.width for r in rows] + [ID_WIDTH + 200]),
                            HEADER + sum(r.height for r in rows)), BACKGROUND)
  ImageDraw.Draw(sheet).text(
      (PAD, 5), f'{os.path.basename(os.path.normpath(folder))}: {len(rows)} of {total} videos;'
      f' yellow bar = shot change; boxes with score >= {min_score:g}', fill=BOUNDARY, font=font)
  for k, r in enumerate(rows):
    sheet.paste(r, (0, HEADER + k * r.height))
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  sheet.save(out_png)
  return out_png
