"""Turning a folder of videos into a dataset: the plan, the shards, the manifest, and the
local runner (processes over videos). `beam_pipeline.py` runs the same plan on Beam.

The plan fixes which video goes into which shard (videos sorted by path, `videos_per_shard`
per shard) and is saved as `prep_plan.json` next to the shards, so a run that is stopped
and started again continues where it stopped: a shard is finished when its summary
(`<shard>.json`, written after the shard) exists, and finished shards are never redone.
Restarting with other inputs or another config is refused rather than mixed. The manifest,
which marks the dataset complete, is written last from the shard summaries; videos that
could not be used are listed there with their reasons.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence

from vivi import errors
from vivi.input import records
from vivi.prep import prepare

PLAN = 'prep_plan.json'
VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mkv', '.webm', '.avi', '.mov', '.mpg', '.mpeg', '.flv',
                    '.wmv', '.ts', '.3gp', '.ogv')


@dataclasses.dataclass(frozen=True)
class Item:
  video_id: str    # path relative to the input folder: unique and stable
  path: str
  query: str       # the search term the video was found with (VideoNet curation)


@dataclasses.dataclass
class Plan:
  output: str
  config: prepare.PrepConfig
  shards: list[list[Item]]

  @property
  def names(self) -> list[str]:
    return [records.shard_name(k, len(self.shards)) for k in range(len(self.shards))]

  def pending(self) -> list[int]:
    """Indices of the shards not finished yet."""
    from tensorflow.io import gfile
    return [k for k, name in enumerate(self.names)
            if not gfile.exists(os.path.join(self.output, name + '.json'))]


def find_videos(input_dir: str, queries_csv: str = '') -> list[Item]:
  """Every video file under `input_dir`, sorted. The query of a video is its folder's name
  (e.g. videos/tabby_cat/x.mp4 -> 'tabby_cat'), or its row in `queries_csv` (`id,query`)."""
  from tensorflow.io import gfile
  if not gfile.isdir(input_dir):
    raise errors.MissingPathError(f'{input_dir} is not a folder of videos')
  items = []
  for root, _, files in gfile.walk(input_dir):
    for name in files:
      if name.lower().endswith(VIDEO_EXTENSIONS):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, input_dir)
        items.append(Item(rel, path, os.path.basename(os.path.dirname(rel))))
  if queries_csv:
    with gfile.GFile(queries_csv) as f:
      queries = dict(line.strip().split(',', 1) for line in f if ',' in line)
    items = [dataclasses.replace(i, query=queries.get(i.video_id, '')) for i in items]
  if not items:
    raise errors.MissingPathError(
        f'{input_dir} holds no video files ({", ".join(VIDEO_EXTENSIONS)})')
  return sorted(items, key=lambda i: i.video_id)


def make_plan(items: Sequence[Item], output: str, cfg: prepare.PrepConfig,
              videos_per_shard: int = 64) -> Plan:
  """Splits the videos into shards and saves the plan, or checks it against a saved one."""
  from tensorflow.io import gfile
  if videos_per_shard < 1:
    raise ValueError(f'videos_per_shard must be >= 1, got {videos_per_shard}')
  shards = [list(items[i:i + videos_per_shard]) for i in range(0, len(items), videos_per_shard)]
  plan = Plan(output, cfg, shards)
  saved = {'config': cfg.as_dict(),
           'shards': [[dataclasses.asdict(i) for i in s] for s in shards]}
  saved = json.loads(json.dumps(saved))  # Tuples -> lists, as read back from disk.
  path = os.path.join(output, PLAN)
  if gfile.exists(path):
    with gfile.GFile(path) as f:
      old = json.load(f)
    if old != saved:
      raise ValueError(f'{output} was started with other videos or another config '
                       f'({path}); refusing to mix them: use a new output folder')
  else:
    gfile.makedirs(output)
    records.write_atomic(path, json.dumps(saved, indent=1))
  return plan


def write_shard(plan: Plan, k: int, results: Sequence[prepare.Prepared]) -> dict:
  """Writes shard k (the records of the kept videos, in plan order) and then its summary."""
  name = plan.names[k]
  kept = [r.video for r in results if r.video is not None]
  if kept:
    records.write_shard(os.path.join(plan.output, name), kept)
  summary = {
      'shard': name if kept else None,
      'counts': {'videos': len(kept),
                 'shots': sum(len(set(v.shot_ids.tolist())) for v in kept),
                 'frames': sum(len(v.frames) for v in kept),
                 'boxes': sum(len(l) for v in kept for l in v.labels)},
      'skipped': [{'video': r.video_id, 'path': r.path, 'reason': r.skipped}
                  for r in results if r.skipped],
      'label_names': {str(i): n for r in results for i, n in r.label_names.items()},
      'detector': next((r.detector for r in results if r.detector), ''),
      'stats': {r.video_id: r.stats for r in results},
  }
  records.write_atomic(os.path.join(plan.output, name + '.json'),
                       json.dumps(summary, indent=1, default=float))
  return summary


def summaries(plan: Plan) -> Iterator[dict]:
  from tensorflow.io import gfile
  for name in plan.names:
    with gfile.GFile(os.path.join(plan.output, name + '.json')) as f:
      yield json.load(f)


def finalize(plan: Plan) -> records.Manifest:
  """Writes the manifest from the shard summaries (all shards must be finished)."""
  if missing := plan.pending():
    raise RuntimeError(f'{plan.output}: shards {missing} are not finished; run again')
  done = list(summaries(plan))
  names: dict[int, str] = {}
  for s in done:
    names.update({int(i): n for i, n in s['label_names'].items()})
  label_map = [names.get(i, '') for i in range(max(names, default=-1) + 1)]
  counts = {key: sum(s['counts'][key] for s in done) for key in done[0]['counts']}
  detector = next((s['detector'] for s in done if s.get('detector')), plan.config.detector)
  manifest = records.Manifest(
      label_map=label_map, fps=plan.config.fps, detector=detector, counts=counts,
      shards=[s['shard'] for s in done if s['shard']],
      shard_videos=[s['counts']['videos'] for s in done if s['shard']],
      skipped=[x for s in done for x in s['skipped']],
      extra={'prep': plan.config.as_dict()})
  if not manifest.shards:
    raise RuntimeError(f'{plan.output}: every video was skipped; see the reasons in the '
                       f'shard summaries (*.json)')
  manifest.write(plan.output)
  return manifest


# ---------------------------------------------------------------------------------------
# The local runner.

_TOOLS: prepare.Workers | None = None


def _init_worker(cfg: prepare.PrepConfig) -> None:
  global _TOOLS
  _TOOLS = prepare.Workers(cfg)


def _prepare(args: tuple[Item, prepare.PrepConfig]) -> prepare.Prepared:
  item, cfg = args
  return prepare.prepare_video(item.path, item.video_id, cfg, _TOOLS, item.query)


def _progress(total: int) -> Iterator[None]:
  """Yields once per finished video; prints videos/s and the ETA (tqdm)."""
  from tqdm import tqdm
  with tqdm(total=total, unit='video', smoothing=0.1, dynamic_ncols=True) as bar:
    for _ in range(total):
      yield
      bar.update()


def run_local(plan: Plan, workers: int = 1, max_shards: int = 0,
              progress: bool = True) -> records.Manifest | None:
  """Prepares every unfinished shard with `workers` processes, then writes the manifest.

  `max_shards` > 0 stops after that many shards (the manifest then is not written): a
  smoke run, and how the tests interrupt a run.
  """
  pending = plan.pending()
  if max_shards:
    pending = pending[:max_shards]
  jobs = [(item, plan.config) for k in pending for item in plan.shards[k]]
  if workers > 1 and len(jobs) > 1:
    # Spawned, not forked: the parent may run TensorFlow threads, which do not survive fork.
    pool = multiprocessing.get_context('spawn').Pool(
        min(workers, len(jobs)), initializer=_init_worker, initargs=(plan.config,))
    results: Iterable[prepare.Prepared] = pool.imap(_prepare, jobs)
  else:
    pool = None
    _init_worker(plan.config)
    results = map(_prepare, jobs)
  ticks = _progress(len(jobs)) if progress else iter(lambda: None, 0)
  try:
    results = iter(results)
    for k in pending:
      shard = []
      for _ in plan.shards[k]:
        shard.append(next(results))
        next(ticks, None)
      write_shard(plan, k, shard)
  finally:
    if pool is not None:
      pool.terminate()
  if plan.pending():
    return None
  return finalize(plan)


def speed(plan: Plan, wall_seconds: float) -> dict:
  """Throughput figures of a finished run from the shard summaries."""
  stats = [v for s in summaries(plan) for v in s['stats'].values() if 'duration' in v]
  decoded = sum(v['duration'] * v['native_fps'] for v in stats)
  return {'videos': len(stats), 'wall_seconds': wall_seconds,
          'decoded_frames': decoded,
          'decode_fps_per_core': decoded / max(sum(v['decode_seconds'] for v in stats), 1e-9),
          'prepare_fps_per_core': decoded / max(sum(v['seconds'] for v in stats), 1e-9)}

