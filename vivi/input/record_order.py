"""The order in which a host reads its video records, and a position in it that is one integer.

    epoch e: the host's shards in a seeded order (a new one each epoch)
      -> groups of `cycle` shards, each read round-robin (one record from each in turn)
      -> the records of every epoch, one after the other: the raw stream
      -> windows of `window` consecutive records, each permuted by a seeded permutation
      -> the shuffled stream; element p of it is at position p

Everything is a function of (seed, stream, position), so resuming a host's input needs only
the position of the next element: `records_from(p)` rebuilds the stream from there by
arithmetic on the shards' record counts. It opens the shards of p's group, skips what that
group had already read (reading, not decoding, at most one group of shards) and permutes
p's window again (reading at most `window` records); no buffer is ever saved. The state a
checkpoint keeps is a few integers, whatever the shuffle window, the record size or the
number of hosts.

A window permutation shuffles as well as a shuffle buffer of the same size for what
training sees (every batch mixes `window` records from `cycle` shards at a time, and an
epoch's shard order is new), without a buffer's long tail: a record never waits beyond the
end of its window. Reading stays sequential within each shard, as a shard on a network file
system needs.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from vivi.input import records

CYCLE = 8   # Shards read at once, round-robin.
_EPOCH, _WINDOW = 1, 2   # Seed streams of the shard orders and the window permutations.


def count_records(path: str) -> int:
  """Records in a TFRecord file, from their length headers (skips the payloads)."""
  size, n, pos = tf.io.gfile.stat(path).length, 0, 0
  with tf.io.gfile.GFile(path, 'rb') as f:
    while pos < size:
      f.seek(pos)
      header = f.read(12)   # uint64 length, uint32 masked CRC of the length.
      if len(header) < 12:
        break
      (length,) = struct.unpack('<Q', header[:8])
      pos += 12 + length + 4  # Header, payload, payload CRC.
      n += 1
  if pos != size:
    raise records.RecordError(f'{path}: corrupt shard after record {max(n - 1, 0)}: its '
                              f'record headers do not add up to the file size')
  return n


def round_robin_consumed(counts: Sequence[int], m: int) -> tuple[list[int], int]:
  """After m records of a round-robin over shards with these counts (an exhausted shard drops
  out): (records read from each shard, the shard that gives the next record)."""
  consumed = [0] * len(counts)
  slot, emitted = 0, 0
  while emitted < m:
    if consumed[slot] < counts[slot]:
      consumed[slot] += 1
      emitted += 1
    slot = (slot + 1) % len(counts)
  return consumed, slot


@dataclasses.dataclass(frozen=True)
class RecordOrder:
  """One host's record order (module docstring).

  Attributes:
    files: the host's shards.
    counts: records in each shard.
    seed, stream: the order's seeds (the run's data seed, the process index).
    window: records per shuffle window (1: the raw stream, unshuffled).
    repeat: epochs without end (training); False: one epoch, shards in the given order.
  """
  files: tuple[str, ...]
  counts: tuple[int, ...]
  seed: int
  stream: int = 0
  window: int = 1
  repeat: bool = True

  def __post_init__(self):
    if len(self.files) != len(self.counts) or not self.files:
      raise ValueError(f'{len(self.files)} files and {len(self.counts)} counts')
    if self.epoch_records == 0:
      raise ValueError(f'no records in {list(self.files[:3])}...')

  @property
  def cycle(self) -> int:
    return min(CYCLE, len(self.files))

  @property
  def epoch_records(self) -> int:
    return int(sum(self.counts))

  def _seed(self, kind: int, index) -> tf.Tensor:
    """index_shuffle's seed (a pair) of an epoch's shard order or a window's permutation."""
    fold = tf.random.experimental.stateless_fold_in
    base = tf.constant([self.seed, self.stream], tf.int64)
    return fold(fold(base, kind), tf.cast(index, tf.int64))

  def _epoch_groups(self, epoch) -> tf.Tensor:
    """int64 [groups, cycle]: shard indices of each group of `epoch`, -1 padding the last."""
    n = len(self.files)
    order = tf.range(n, dtype=tf.int64)
    if self.repeat:
      order = tf.random.experimental.index_shuffle(order, self._seed(_EPOCH, epoch), n - 1)
    groups = -(-n // self.cycle)
    order = tf.concat([order, -tf.ones([groups * self.cycle - n], tf.int64)], 0)
    return tf.reshape(order, [groups, self.cycle])

  def _read_group(self, shards: tf.Tensor, skips: tf.Tensor) -> tf.data.Dataset:
    files = tf.constant(self.files)
    ds = tf.data.Dataset.from_tensor_slices((shards, skips)).filter(lambda s, _: s >= 0)
    return ds.interleave(
        lambda s, skip: tf.data.TFRecordDataset(tf.gather(files, s)).skip(skip),
        cycle_length=self.cycle, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)

  def raw_from(self, start: int) -> tf.data.Dataset:
    """The raw stream (serialized records) from raw position `start`."""
    epoch, offset = divmod(start, self.epoch_records)
    if not self.repeat and epoch > 0:
      return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
    groups = self._epoch_groups(epoch).numpy()
    sizes = [sum(self.counts[s] for s in g if s >= 0) for g in groups]
    first = int(np.searchsorted(np.cumsum(sizes), offset, side='right'))
    members = [int(s) for s in groups[first] if s >= 0]
    consumed, slot = round_robin_consumed([self.counts[s] for s in members],
                                          offset - sum(sizes[:first]))
    # The group read on from where it was: its round-robin continued from `slot`, so the
    # shards in that order, each past what it already gave.
    rotate = list(range(slot, len(members))) + list(range(slot))
    pad = self.cycle - len(members)
    head = (np.array([members[i] for i in rotate] + [-1] * pad, np.int64),
            np.array([consumed[i] for i in rotate] + [0] * pad, np.int64))
    no_skips = lambda g: (g, tf.zeros_like(g))
    descriptors = tf.data.Dataset.from_tensors(head).concatenate(
        tf.data.Dataset.from_tensor_slices(self._epoch_groups(epoch)).skip(first + 1).map(
            no_skips))
    if self.repeat:
      later = tf.data.Dataset.range(epoch + 1, np.iinfo(np.int64).max).flat_map(
          lambda e: tf.data.Dataset.from_tensor_slices(self._epoch_groups(e)))
      descriptors = descriptors.concatenate(later.map(no_skips))
    return descriptors.flat_map(self._read_group)

  def records_from(self, position: int) -> tf.data.Dataset:
    """The shuffled stream from `position`: (position, serialized record) elements."""
    window, offset = divmod(position, self.window)
    ds = self.raw_from(window * self.window)
    if self.window > 1:
      def permute(w, records):
        n = tf.shape(records, out_type=tf.int64)[0]
        return tf.gather(records, tf.random.experimental.index_shuffle(
            tf.range(n), self._seed(_WINDOW, w), n - 1))

      ds = ds.batch(self.window).enumerate(start=window).map(permute).unbatch().skip(offset)
    return ds.enumerate(start=position)
