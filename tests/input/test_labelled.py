"""The labelled-image pipeline for co-training: TFDS (mocked, offline) and synthetic sources."""

import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from vivi import errors
from vivi.input import augment, labelled, synthetic_tasks

SIZE = 16
CFG = labelled.default_augment(SIZE)
# Identity on images already SIZE x SIZE: shows which source image an output came from.
NO_AUGMENT = augment.AugmentConfig(image_size=SIZE, crop_area=(1.0, 1.0), crop_aspect=(1, 1),
                                   flip=False, color=False)


def _take(pipeline, n):
  return [next(pipeline) for _ in range(n)]


def _same(a, b):
  return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in ('images', 'labels'))


@pytest.fixture
def no_network(monkeypatch):
  """Any attempt to open a connection fails the test instead of hanging or downloading."""
  def refuse(*args, **kwargs):
    raise AssertionError(f'network access attempted: {args}')
  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)


def _tfds(dataset='imagenet2012', seed=0, batch_size=4, **kw):
  return labelled.make_labelled_pipeline(labelled.LabelledSource(dataset), CFG,
                                         batch_size=batch_size, seed=seed, shuffle_buffer=8,
                                         **kw)


def test_tfds_batches_are_deterministic_and_seeded(no_network):
  with tfds.testing.mock_data(num_examples=12):
    source = labelled.LabelledSource('imagenet2012')
    assert labelled.num_classes(source) == 1000
    first = _take(_tfds(seed=3), 3)
    again = _take(_tfds(seed=3), 3)
    other = _take(_tfds(seed=4), 3)
    second_host = _take(_tfds(seed=3, process_index=1, process_count=2), 1)
  for batch in first:
    assert batch['images'].shape == (4, SIZE, SIZE, 3) and batch['images'].dtype == np.uint8
    assert batch['labels'].shape == (4,) and batch['labels'].dtype == np.int32
    assert ((batch['labels'] >= 0) & (batch['labels'] < 1000)).all()
  assert _same(first, again)
  assert not _same(first, other)
  assert second_host[0]['images'].shape == (4, SIZE, SIZE, 3)


def test_tfds_grayscale_becomes_rgb(no_network):
  with tfds.testing.mock_data(num_examples=6):
    assert tfds.builder('mnist').info.features['image'].shape[-1] == 1
    batch = next(_tfds('mnist'))
  images = batch['images']
  assert images.shape == (4, SIZE, SIZE, 3)
  assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()
  assert (batch['labels'] < 10).all()


@pytest.mark.parametrize('name, manual', [('imagenet2012', True), ('cifar10', False)])
def test_unprepared_dataset_is_a_clear_error_without_download(tmp_path, no_network, name,
                                                              manual):
  source = labelled.LabelledSource(name, data_dir=str(tmp_path))
  assert labelled.num_classes(source) == {'imagenet2012': 1000, 'cifar10': 10}[name]
  with pytest.raises(errors.NotPreparedError) as info:
    labelled.make_labelled_pipeline(source, CFG, batch_size=2, seed=0)
  message = str(info.value)
  assert repr(name) in message and str(tmp_path) in message
  assert f'tfds build {name}' in message and 'never downloads' in message
  assert ('manual download' in message) == manual
  assert not list(tmp_path.iterdir())  # Nothing was created, let alone downloaded.


def _coordinate_png(n=256):
  """An image whose red channel is the row and green channel the column."""
  y, x = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
  image = np.stack([y, x, np.full_like(y, 128)], -1).astype(np.uint8)
  return tf.io.encode_png(image).numpy()


def _fixed_examples(image_png, labels):
  """A mock `_as_dataset` whose examples are `image_png` (encoded) with `labels`."""
  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False, **kw):
    del self, split, decoders, read_config, shuffle_files, kw
    return tf.data.Dataset.from_tensor_slices(
        {'image': [image_png] * len(labels), 'label': np.asarray(labels, np.int64)})
  return as_dataset


def test_every_element_gets_its_own_inception_crop(no_network):
  cfg = labelled.default_augment(32)
  with tfds.testing.mock_data(as_dataset_fn=_fixed_examples(_coordinate_png(), [7] * 8)):
    pipeline = labelled.make_labelled_pipeline(labelled.LabelledSource('imagenet2012'), cfg,
                                               batch_size=16, seed=0, shuffle_buffer=8)
    images = np.concatenate([b['images'] for b in _take(pipeline, 4)]).astype(np.float64)
  assert len({im.tobytes() for im in images}) == len(images)  # Same source, 64 crops.
  # The source coordinates seen in each output give its crop window (up to the resize's
  # smoothing at the border, about one output pixel: hence the S / (S - 1)).
  rows, cols = images[..., 0], images[..., 1]
  h = (rows.max(axis=(1, 2)) - rows.min(axis=(1, 2)) + 1) * 32 / 31
  w = (cols.max(axis=(1, 2)) - cols.min(axis=(1, 2)) + 1) * 32 / 31
  area = h * w / 256**2
  assert (area >= 0.045).all() and (area <= 1.0 + 1e-6).all(), area
  assert area.min() < 0.5 < area.max()  # The whole 5%-100% range is used.
  assert ((w / h > 0.7) & (w / h < 1.45)).all(), w / h
  flipped = cols[:, :, 0].mean(axis=1) > cols[:, :, -1].mean(axis=1)
  assert 0 < flipped.sum() < len(flipped)  # Some flipped, some not.


def test_out_of_range_label_names_the_dataset(no_network):
  image = _coordinate_png(8)
  with tfds.testing.mock_data(as_dataset_fn=_fixed_examples(image, [3, 1000, 5, 2])):
    pipeline = _tfds('imagenet2012', batch_size=2)
    with pytest.raises(ValueError, match=r"'imagenet2012' split 'train' .*: label 1000 is out of "
                                         r"range \[0, 1000\)"):
      _take(pipeline, 4)


def _synthetic(seed=0, process_index=0, process_count=1, cfg=CFG, batch_size=8, **kw):
  source = labelled.LabelledSource('synthetic/count', num_examples=16, **kw)
  return labelled.make_labelled_pipeline(source, cfg, batch_size=batch_size, seed=seed,
                                         process_index=process_index,
                                         process_count=process_count)


def test_synthetic_batches_are_deterministic_and_seeded():
  source = labelled.LabelledSource('synthetic/count')
  assert labelled.num_classes(source) == synthetic_tasks.DOWNSTREAM_TASKS['count'] == 6
  first = _take(_synthetic(seed=1), 3)
  for batch in first:
    assert batch['images'].shape == (8, SIZE, SIZE, 3) and batch['images'].dtype == np.uint8
    assert batch['labels'].dtype == np.int32
    assert ((batch['labels'] >= 0) & (batch['labels'] < 6)).all()
  assert _same(first, _take(_synthetic(seed=1), 3))
  assert not _same(first, _take(_synthetic(seed=2), 3))


def test_unknown_synthetic_task_lists_the_valid_ones():
  with pytest.raises(ValueError, match=r"unknown synthetic task 'colour'.*'synthetic/class'"):
    labelled.num_classes(labelled.LabelledSource('synthetic/colour'))


def test_synthetic_processes_get_disjoint_images():
  images, labels = synthetic_tasks.render_downstream('count', 'train', 16, image_size=SIZE,
                                                     seed=labelled.LabelledSource('x').seed)
  flat = images.reshape(16, -1).astype(np.int32)
  seen = []
  for process in range(2):
    batches = _take(_synthetic(process_index=process, process_count=2, cfg=NO_AUGMENT,
                               batch_size=4, seed=5, render_size=SIZE), 2)
    out = np.concatenate([b['images'] for b in batches]).reshape(8, -1).astype(np.int32)
    # Each output is its source image (identity augmentation, up to rounding).
    distance = np.abs(out[:, None] - flat[None]).max(-1)
    index = distance.argmin(1)
    assert (distance.min(1) <= 1).all()
    np.testing.assert_array_equal(np.concatenate([b['labels'] for b in batches]),
                                  labels[index])
    assert (index % 2 == process).all()  # Process p holds images[p::2].
    seen.append(set(index))
  assert not seen[0] & seen[1]
  assert len(seen[0]) > 1 and len(seen[1]) > 1


def test_augment_image_is_per_seed_and_keeps_the_source():
  image = tf.constant(synthetic_tasks.render_downstream(
      'class', 'train', 1, image_size=64, seed=0)[0][0])
  outs = [augment.augment_image(image, tf.constant([0, i], tf.int64), CFG).numpy()
          for i in range(4)]
  assert len({o.tobytes() for o in outs}) == 4
  again = augment.augment_image(image, tf.constant([0, 2], tf.int64), CFG).numpy()
  np.testing.assert_array_equal(outs[2], again)


def test_a_restored_stream_reads_on_where_the_saved_one_was(tmp_path):
  straight = _synthetic(seed=1)
  expected = _take(straight, 5)[3:]
  saved = _synthetic(seed=1)
  _take(saved, 3)
  saved.save_state(str(tmp_path / 'images'))
  resumed = _synthetic(seed=1)
  assert resumed.restore_state(str(tmp_path / 'images'))
  assert _same(expected, _take(resumed, 2))
  assert not _synthetic(seed=1).restore_state(str(tmp_path / 'nothing'))
