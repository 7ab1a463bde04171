"""From record shards to per-host batches: the tf.data pipeline every sampler plugs into.

    this host's shards -> interleaved records -> shuffle -> enumerate (per-element seed)
      -> parse + sampler.select (decodes nothing) -> count skipped videos -> filter
      -> sampler.render (decode + augment the sampled frames) -> batch -> prefetch

Each process reads shards[process_index::process_count] and yields its slice of the global
batch (`parallel.global_batch` assembles the global array). All randomness is stateless and
derived from (seed, process_index, element index), so the stream is the same on every run
with the same seed and shard layout.

A corrupt shard, record or frame stops the run with an error that names the file, the
record and what is wrong (`diagnose` re-reads the host's shards to find it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from vivi import errors
from vivi.input import records

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
  """An iterator of host-local numpy batches that reports input problems clearly.

  Attributes (after iteration starts): `videos_skipped`, videos without what the sampler
  needs (e.g. too few usable shots) read before the last batch's videos; they are counted,
  never silently lost.
  """
  dataset: tf.data.Dataset
  files: list[str]
  videos_skipped: int = 0
  _iterator: Any = dataclasses.field(default=None, init=False, repr=False)

  def tf_iterator(self):
    """The one tf.data iterator behind this pipeline (its state is checkpointed with the
    train state, `checkpoint.save_input`, so a resumed run reads what it would have read)."""
    if self._iterator is None:
      self._iterator = iter(self.dataset)
    return self._iterator

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    it = self.tf_iterator()
    while True:
      try:
        batch = next(it)
      except StopIteration:
        return
      except tf.errors.OpError as e:
        if _NOTHING_USABLE in e.message:
          raise errors.DatasetError(e.message[e.message.index('assertion failed: [') + 19:]
                                    .split('] [Condition')[0]) from None
        raise diagnose(self.files, e) from e
      batch = {k: v.numpy() for k, v in batch.items()}
      self.videos_skipped = int(batch.pop('skipped').max())
      yield batch


def make_pipeline(files: Sequence[str], sampler: Any, *, batch_size: int, seed: int,
                  process_index: int = 0, process_count: int = 1,
                  shuffle_buffer: int = 1000, repeat: bool = True,
                  max_consecutive_skips: int = 100_000, fps: float = 1.0) -> HostPipeline:
  """Builds this host's pipeline.

  Args:
    files: all shards of the dataset.
    sampler: has `parse_features` (the record features it reads), `select(parsed, seed)`
      and `render(selected, seed)` (e.g. `ViviSampler`).
    batch_size: this host's number of videos per batch.
    seed: the run's data seed.
    max_consecutive_skips: a stream that skips this many videos in a row has none usable
      (e.g. all too short for the sampler); it stops with an error instead of spinning.
    fps: the dataset's frame rate (the error says what the sampler needs in seconds).
  """
  files = host_shards(files, process_index, process_count)
  base = tf.constant([seed, process_index], tf.int64)
  ds = tf.data.Dataset.from_tensor_slices(files)
  if repeat:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(files)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)

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
    return out

  ds = ds.enumerate()
  ds = ds.map(select, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), count)
  ds = ds.filter(no_autograph(lambda index, selected, skipped: selected['ok']))
  ds = ds.map(render, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 0
  return HostPipeline(ds.with_options(options), files)


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
