"""A host's record order: epochs of seeded shard orders read round-robin in groups, permuted in
windows; the stream rebuilt from any position equals the rest of the stream from 0."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from vivi.input import record_order, records

# Shards of unequal sizes, one empty, 11 of them: two groups of the cycle of 8, the last short.
COUNTS = [5, 0, 3, 9, 1, 7, 2, 4, 6, 3, 8]


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
  folder = tmp_path_factory.mktemp('shards')
  files = []
  for k, n in enumerate(COUNTS):
    path = str(folder / f's{k:02d}')
    with tf.io.TFRecordWriter(path) as w:
      for i in range(n):
        w.write(f'{k}:{i}'.encode())
    files.append(path)
  return files


def _take(ds, n):
  return [(int(i), r.numpy().decode()) for i, r in itertools.islice(ds, n)]


def test_count_records_reads_the_headers(shards, tmp_path):
  assert [record_order.count_records(f) for f in shards] == COUNTS
  cut = tmp_path / 'cut'
  with open(shards[3], 'rb') as f:
    cut.write_bytes(f.read()[:-30] + b'\0' * 5)
  with pytest.raises(records.RecordError, match=r'cut: corrupt shard after record \d'):
    record_order.count_records(str(cut))


def test_round_robin_consumption_matches_a_simulation():
  rng = np.random.default_rng(0)
  for _ in range(50):
    counts = list(rng.integers(0, 6, rng.integers(1, 6)))
    queues = [[(s, i) for i in range(c)] for s, c in enumerate(counts)]
    stream = [x for row in itertools.zip_longest(*queues) for x in row if x is not None]
    for m in range(len(stream)):
      consumed, slot = record_order.round_robin_consumed(counts, m)
      assert consumed == [sum(1 for s, _ in stream[:m] if s == k) for k in range(len(counts))]
      # The next record is from the first shard at or after `slot` with records left.
      ahead = [(slot + j) % len(counts) for j in range(len(counts))]
      assert stream[m][0] == next(k for k in ahead if consumed[k] < counts[k])


@pytest.mark.parametrize('repeat', [True, False], ids=['repeat', 'one_epoch'])
@pytest.mark.parametrize('window', [1, 4, 7])
def test_stream_from_any_position_is_the_rest_of_the_stream(shards, window, repeat):
  order = record_order.RecordOrder(tuple(shards), tuple(COUNTS), seed=3, stream=1,
                                   window=window, repeat=repeat)
  n = order.epoch_records
  full = _take(order.records_from(0), 3 * n)
  assert [i for i, _ in full] == list(range(len(full)))
  every = sorted(f'{k}:{i}' for k, c in enumerate(COUNTS) for i in range(c))
  if repeat:
    epochs = [[r for _, r in full[e * n:(e + 1) * n]] for e in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]             # A new order each epoch ...
    if window == 1:
      assert all(sorted(e) == every for e in epochs)       # ... of every record once.
  else:
    assert sorted(r for _, r in full) == every
  positions = range(len(full)) if window == 4 else range(0, len(full), 5)
  for p in positions:
    expected = full[p:p + 10]
    assert _take(order.records_from(p), len(expected)) == expected, p


def test_windows_permute_within_themselves_and_seeds_differ(shards):
  raw = _take(record_order.RecordOrder(tuple(shards), tuple(COUNTS), seed=3).records_from(0),
              28)
  shuffled = _take(record_order.RecordOrder(tuple(shards), tuple(COUNTS), seed=3,
                                            window=7).records_from(0), 28)
  for w in range(4):
    window = slice(7 * w, 7 * w + 7)
    assert sorted(r for _, r in shuffled[window]) == sorted(r for _, r in raw[window])
  assert [r for _, r in shuffled] != [r for _, r in raw]
  other = _take(record_order.RecordOrder(tuple(shards), tuple(COUNTS), seed=4,
                                         window=7).records_from(0), 28)
  host_1 = _take(record_order.RecordOrder(tuple(shards), tuple(COUNTS), seed=3, stream=1,
                                          window=7).records_from(0), 28)
  assert shuffled != other and shuffled != host_1
