"""From record shards to per-host batches: the tf.data pipeline every sampler plugs into.

    this host's records in a seeded order, each with its position (record_order.py)
      -> parse + sampler.select (decodes nothing) -> count skipped videos -> filter
      -> sampler.render (decode + augment the sampled frames) -> batch -> prefetch

Each process reads shards[process_index::process_count] and yields its slice of the global
batch (`parallel.global_batch` assembles the global array). All randomness is stateless and
derived from (seed, process_index, position), so the stream is the same on every run with
the same seed and shard layout, and a resumed run, which starts the stream at the position
its checkpoint saved (`HostPipeline.state`), reads what the uninterrupted run would have.

A corrupt shard, record or frame stops the run with an error that names the file, the
record and what is wrong (`diagnose` re-reads the host's shards to find it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from vivi import errors
from vivi.input import record_order, records

_NOTHING_USABLE = 'videos in a row were skipped'


def host_shards(files: Sequence[str], process_index: int, process_count: int) -> list[str]:
  files = sorted(files)
  if len(files) < process_count:
    raise ValueError(f'{len(files)} shards cannot feed {process_count} processes; write the '
                     'dataset with at least one shard per process')
  return files[process_index::process_count]


def _parse(serialized: tf.Tensor, features) -> dict:
  context, sequence = tf.io.parse_single_sequence_example(serialized, *features)
  return {**context, **sequence}


@dataclasses.dataclass
class HostPipeline:
  """An iterator of host-local numpy batches that reports input problems clearly, and whose
  state is where it is in the host's record order (`record_order`): a few integers.

  Attributes: `order`, the host's record order; `position`, the position in it of the next
  video to read; `videos_skipped`, videos without what the sampler needs (e.g. too few
  usable shots) read before the last batch's videos: they are counted, never silently lost.
  """
  build: Callable[[int, int], tf.data.Dataset]  # (position, videos skipped) -> batches
  order: record_order.RecordOrder
  position: int = 0
  videos_skipped: int = 0
  _iterator: Any = dataclasses.field(default=None, init=False, repr=False)

  @property
  def files(self) -> list[str]:
    return list(self.order.files)

  def state(self) -> dict:
    """What resumes this pipeline where it is (`restore`), and the order it is a position in."""
    o = self.order
    shards = json.dumps([[os.path.basename(f), c] for f, c in zip(o.files, o.counts)])
    return {'position': self.position, 'videos_skipped': self.videos_skipped,
            'order': {'shards': len(o.files), 'records': o.epoch_records,
                      'shards_sha256': hashlib.sha256(shards.encode()).hexdigest(),
                      'seed': o.seed, 'stream': o.stream, 'window': o.window,
                      'cycle': o.cycle}}

  def restore(self, state: dict, where: str) -> None:
    """Moves the pipeline (not yet iterated) to `state`, read from `where`."""
    if self._iterator is not None:
      raise RuntimeError('restore a pipeline before iterating it')
    mine = self.state()['order']
    if state.get('order') != mine:
      changed = sorted(k for k in mine if state.get('order', {}).get(k) != mine[k])
      raise errors.DatasetError(
          f'{where}: the input state is a position in another record order ({changed} '
          f'differ: the dataset\'s shards, data.shuffle_buffer or the seed changed); resume '
          f'with what wrote it, or use a new --workdir')
    self.position, self.videos_skipped = int(state['position']), int(state['videos_skipped'])

  def save_state(self, prefix: str) -> None:
    records.write_atomic(prefix + '.json', json.dumps(self.state()))

  def restore_state(self, prefix: str) -> bool:
    """`restore` from `save_state`'s file; False when there is none."""
    path = prefix + '.json'
    if not tf.io.gfile.exists(path):
      return False
    with tf.io.gfile.GFile(path) as f:
      try:
        state = json.load(f)
      except ValueError as e:
        raise errors.DatasetError(f'{path}: a damaged input state ({e})') from None
    self.restore(state, path)
    return True

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    if self._iterator is None:
      self._iterator = iter(self.build(self.position, self.videos_skipped))
    while True:
      try:
        batch = next(self._iterator)
      except StopIteration:
        return
      except tf.errors.OpError as e:
        if _NOTHING_USABLE in e.message:
          raise errors.DatasetError(e.message[e.message.index('assertion failed: [') + 19:]
                                    .split('] [Condition')[0]) from None
        raise diagnose(self.files, e) from e
      batch = {k: v.numpy() for k, v in batch.items()}
      self.position = int(batch.pop('index').max()) + 1
      self.videos_skipped = int(batch.pop('skipped').max())
      yield batch


def make_pipeline(files: Sequence[str], sampler: Any, *, batch_size: int, seed: int,
                  process_index: int = 0, process_count: int = 1,
                  shuffle_buffer: int = 1000, repeat: bool = True,
                  max_consecutive_skips: int = 100_000, fps: float = 1.0,
                  record_counts: Mapping[str, int] | None = None) -> HostPipeline:
  """Builds this host's pipeline.

  Args:
    files: all shards of the dataset.
    sampler: has `parse_features` (the record features it reads), `select(parsed, seed)`
      and `render(selected, seed)` (e.g. `ViviSampler`).
    batch_size: this host's number of videos per batch.
    seed: the run's data seed.
    shuffle_buffer: records per shuffle window (`record_order`; 1: no shuffle).
    repeat: epochs without end, each in a new shard order; False: one pass in file order.
    max_consecutive_skips: a stream that skips this many videos in a row has none usable
      (e.g. all too short for the sampler); it stops with an error instead of spinning.
    fps: the dataset's frame rate (the error says what the sampler needs in seconds).
    record_counts: records per shard path (the manifest's); shards not in it are counted.
  """
  files = host_shards(files, process_index, process_count)
  counts = [(record_counts or {}).get(f) for f in files]
  counts = [record_order.count_records(f) if c is None else int(c)
            for f, c in zip(files, counts)]
  if not sum(counts):
    raise errors.DatasetError(f'the shards of process {process_index} of {process_count} '
                              f'({files[:3]}{"..." if len(files) > 3 else ""}) hold no record')
  order = record_order.RecordOrder(tuple(files), tuple(counts), seed=seed,
                                   stream=process_index, window=max(1, shuffle_buffer),
                                   repeat=repeat)
  base = tf.constant([seed, process_index], tf.int64)

  # The functions below have no data-dependent Python control flow: skip AutoGraph.
  no_autograph = tf.autograph.experimental.do_not_convert

  @no_autograph
  def element_seeds(index):
    seed = tf.random.experimental.stateless_fold_in(base, index)
    return tf.random.experimental.stateless_split(seed, 2)

  @no_autograph
  def select(index, serialized):
    seeds = element_seeds(index)
    return index, sampler.select(_parse(serialized, sampler.parse_features), seeds[0])

  @no_autograph
  def count(state, x):
    skipped, in_a_row = state
    bad = tf.cast(~x[1]['ok'], tf.int64)
    in_a_row = (in_a_row + 1) * bad
    tf.debugging.assert_less(
        in_a_row, tf.constant(max_consecutive_skips, tf.int64),
        message=f'{max_consecutive_skips} {_NOTHING_USABLE}: no video in '
                f'{files[:3]}{"..." if len(files) > 3 else ""} has what the '
                f'{type(sampler).__name__} needs: {_requirement(sampler, fps)}')
    return (skipped + bad, in_a_row), (x[0], x[1], skipped + bad)

  @no_autograph
  def render(index, selected, skipped):
    out = sampler.render(selected, element_seeds(index)[1])
    out['skipped'] = skipped
    out['index'] = index
    return out

  def build(position: int, videos_skipped: int) -> tf.data.Dataset:
    # A batch ends with a usable video, so no skip is running where a position resumes.
    ds = order.records_from(position)
    ds = ds.map(select, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.scan((tf.constant(videos_skipped, tf.int64), tf.constant(0, tf.int64)), count)
    ds = ds.filter(no_autograph(lambda index, selected, skipped: selected['ok']))
    ds = ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = 0
    return ds.with_options(options)

  return HostPipeline(build, order)


def _requirement(sampler: Any, fps: float) -> str:
  return sampler.requirement(fps) if hasattr(sampler, 'requirement') else repr(sampler)


def count_usable(files: Sequence[str], sampler: Any) -> tuple[int, int]:
  """(usable, all) videos in `files` for `sampler`: its own `select` predicate ('ok') on
  every record, in one pass that decodes no image. A corrupt record is named."""
  seed = tf.constant([0, 0], tf.int64)
  ok = tf.data.TFRecordDataset(sorted(files), num_parallel_reads=tf.data.AUTOTUNE).map(
      tf.autograph.experimental.do_not_convert(
          lambda s: sampler.select(_parse(s, sampler.parse_features), seed)['ok']),
      num_parallel_calls=tf.data.AUTOTUNE)
  try:
    usable = np.fromiter(ok.as_numpy_iterator(), bool)
  except tf.errors.OpError as e:
    raise diagnose(files, e) from e
  return int(usable.sum()), len(usable)


def diagnose(files: Sequence[str], error: Exception) -> Exception:
  """Finds the first unreadable record or frame in `files` and names it."""
  for path in files:
    index = -1
    try:
      for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
        where = f'{path} record {index}'
        try:
          video = records.from_serialized(serialized.numpy())
        except tf.errors.OpError as e:
          return records.RecordError(f'{where}: not a video record of schema '
                                     f'{records.SCHEMA_VERSION}: {e.message}')
        records.validate_video(video, where)
        for f, jpeg in enumerate(video.frames):
          try:
            tf.io.decode_jpeg(jpeg, channels=3)
          except tf.errors.OpError as e:
            return records.RecordError(f'{where} ({video.video_id}) frame {f}: '
                                       f'undecodable image: {e.message}')
    except records.RecordError as e:
      return e
    except tf.errors.OpError as e:
      return records.RecordError(f'{path}: corrupt shard after record {index}: {e.message}')
  return RuntimeError(f'input pipeline failed; no bad record found in {files}: {error}')
