"""Every method config loads in every variant, carries its paper's published values, and
its full-size train step is shape-consistent at the paper's batch (jax.eval_shape: traced,
not run)."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from vivi import optim, train
from vivi.input import samplers
from vivi.models import box_features, video_model

VARIANTS = {
    'vivi': ['', 'tiny'],
    'vivi_obj': ['', 'tiny', 'tiny,random_boxes', 'tiny,also_ce', 'tiny,ce_only',
                 'tiny,distill', 'tiny,object_only'],
    'vivi_cotrain': ['', 'tiny'],
    'vivi_obj_cotrain': ['', 'tiny'],
    'vince': ['', 'tiny', 'tiny,same_frame', 'multi_frame'],
    'vito': ['', 'tiny', 'tiny,no_attention', 'tiny,single_scale', 'tiny,average_pooling',
             'tiny,delta', 'tiny,uniform'],
    'detcon': ['', 'tiny', 'tiny,whole_image'],
    'odin': ['', 'tiny'],
    'moclr': ['', 'tiny'],
    'supervised': ['', 'tiny'],
}


def _config(name, variant=''):
  return importlib.import_module(f'configs.{name}').get_config(variant)


@pytest.mark.parametrize('name,variant', [(n, v) for n, vs in VARIANTS.items() for v in vs])
def test_config_builds_its_model(name, variant):
  config = _config(name, variant)
  train.build_model(config)
  optim.make_optimizer(config)
  spec = samplers.example_spec(config)
  assert spec['frames'][0][-1] == 3 if name != 'supervised' else spec == {}


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_unknown_variant_is_an_error(name):
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    _config(name, 'huge')


def test_an_unknown_option_lists_the_valid_ones():
  with pytest.raises(ValueError, match=r"unknown variant 'tiny,random_box' of "
                     r"configs/vivi_obj.py: want \[tiny\]\[,option\] with an option from "
                     r"\('random_boxes', 'random_labels', 'also_ce', 'ce_only', 'distill', "
                     r"'object_only'\)"):
    _config('vivi_obj', 'tiny,random_box')


def test_published_values():
  v = _config('vince')
  assert (v.input.batch_videos * v.input.frames_per_video, v.schedule.base_learning_rate,
          v.num_train_steps, v.objectives.vince.temperature, v.objectives.vince.memory_size,
          v.objectives.vince.embedding_dim, v.target_network.momentum,
          v.input.num_frames, v.input.gap_seconds) == (896, 0.105, 286_000, 0.2, 65_536,
                                                        128, 0.999, 4, 5.0)
  same = _config('vince', 'same_frame')
  assert same.input.frames_per_video == 1 and same.input.same_frame
  assert same.input.batch_videos == 896
  t = _config('vito')
  assert (t.input.num_views, t.input.clip_seconds, t.input.crop_area[0],
          tuple(t.objectives.vito.scales)) == (3, 2.56, 0.4, ('block3', 'block4'))
  assert t.input.temporal == 'marginal'
  rows = {v: _config('vito', v) for v in ('no_attention', 'single_scale', 'average_pooling',
                                          'delta', 'uniform')}
  assert {v: (tuple(c.objectives.vito.scales), c.objectives.vito.attention, c.input.temporal)
          for v, c in rows.items()} == {
      'no_attention': (('block3', 'block4'), False, 'marginal'),
      'single_scale': (('block4',), True, 'marginal'),
      'average_pooling': (('block4',), False, 'marginal'),
      'delta': (('block3', 'block4'), True, 'delta'),
      'uniform': (('block3', 'block4'), True, 'uniform')}
  assert set(_config('vivi_obj', 'object_only').objectives) == {'object_triplet'}
  d = _config('detcon')
  assert d.input.num_masks == 16 and d.objectives.detcon.temperature == 0.1


@pytest.mark.parametrize('name,frames', [('vince', (224, 4, 224, 224, 3)),
                                         ('vito', (4096, 3, 224, 224, 3)),
                                         ('detcon', (4096, 2, 224, 224, 3))])
def test_paper_step_shapes(name, frames):
  config = _config(name)
  model, tx = train.build_model(config), optim.make_optimizer(config)
  state = jax.eval_shape(lambda: train.create_train_state(config, model, tx, jax.random.key(0)))
  batch = jax.eval_shape(lambda: train.init_batch(config))
  assert batch['frames'].shape == frames
  new_state, metrics = jax.eval_shape(train.make_train_step(config, model, tx), state, batch,
                                      jax.random.key(0))
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shapes(new_state) == shapes(state)
  assert metrics[f'{name}/loss'].shape == ()
  assert jax.tree.structure(state.target['params']) == jax.tree.structure(state.params)


def test_piecewise_boundaries_are_the_absolute_steps_the_config_names():
  """The decay steps are where the config says, with or without a warm-up (the warm-up used
  to shift them: 300/400 became 320/420)."""
  config = _config('vivi', 'tiny')
  config.schedule.update(name='piecewise', warmup_steps=20, boundaries=(300, 400),
                         base_learning_rate=0.1, decay_factor=0.1)
  lr = optim.learning_rate_schedule(config)
  values = {step: float(lr(step)) for step in (0, 10, 20, 299, 300, 399, 400, 449)}
  expected = {0: 0.0, 10: 0.05, 20: 0.1, 299: 0.1, 300: 0.01, 399: 0.01, 400: 0.001,
              449: 0.001}
  assert values == pytest.approx(expected, rel=1e-6), values
  config.schedule.warmup_steps = 0
  lr = optim.learning_rate_schedule(config)
  assert [float(lr(k)) for k in (0, 299, 300, 400)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


TINY = [(n, v) for n, vs in VARIANTS.items() for v in vs if 'tiny' in v]
METHODS = ('vivi', 'vivi_obj', 'vince', 'vito', 'detcon', 'odin', 'moclr', 'supervised')


def _images_per_step(config) -> int:
  """Images through the online encoder in one step: the frames of the sampler's example
  times the videos per step, or the labelled batch of a run without videos."""
  spec = samplers.example_spec(config)
  if not spec:
    return config.labelled.batch_size
  return config.input.batch_videos * math.prod(spec['frames'][0][:-3])


@pytest.mark.parametrize('name,variant', TINY)
def test_every_tiny_encoder_has_blocks_3_and_4_of_at_least_4x4(name, variant):
  """The papers' spatial mechanisms (box columns, attention pooling over block 3 and 4,
  masked pooling) need a grid: at the tiny size each of blocks 3 and 4 is at least 4x4."""
  config = _config(name, variant)
  encoder = video_model.build_encoder(config.model)
  size = config.input.image_size
  out = jax.eval_shape(lambda: encoder.init_with_output(
      jax.random.key(0), jnp.zeros((2, size, size, 3)))[0])
  for block in ('block3', 'block4'):
    assert min(out[block].shape[1:3]) >= 4, (block, out[block].shape)


def test_box_columns_at_the_tiny_size_differ_by_quadrant():
  """At the tiny size boxes centred on a 4x4 lattice of the frame (four in each quadrant)
  read 16 different block-4 columns (a 2x2 map, where each cell sees the whole image, has
  only 4), each the column under the box's centre (Romijnders et al., Figure 3)."""
  config = _config('vivi_obj', 'tiny')
  size = config.input.image_size
  encoder = video_model.build_encoder(config.model)
  variables = encoder.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
  grid = encoder.apply(variables, jax.random.uniform(jax.random.key(1), (1, size, size, 3)))
  grid = np.asarray(grid['block4'])                         # [1, h, w, c]
  h, w = grid.shape[1:3]
  centres = [((i + 0.5) / 4, (j + 0.5) / 4) for i in range(4) for j in range(4)]
  # (ymin, xmin, ymax, xmax), normalised: small boxes around each centre.
  boxes = jnp.array([[[cy - 0.05, cx - 0.05, cy + 0.05, cx + 0.05] for cy, cx in centres]])
  columns = np.asarray(box_features.gather(jnp.asarray(grid), boxes))[0]  # [16, c]
  for k, (cy, cx) in enumerate(centres):
    np.testing.assert_array_equal(columns[k], grid[0, int(cy * h), int(cx * w)])
  assert len({column.tobytes() for column in columns}) == 16


@pytest.mark.parametrize('name', METHODS)
def test_tiny_runs_share_budget_optimiser_and_learning_rate_rule(name):
  """Every tiny run sees the same images per step for the same steps at the same size,
  with the same optimiser and schedule, and its learning rate is the tiny one times the
  method's multiplier, one of the three values the validation sweep chooses from."""
  tiny = _config(name, 'tiny')
  assert _images_per_step(tiny) == common.TINY_IMAGES_PER_STEP
  assert tiny.num_train_steps == common.TINY_STEPS
  assert tiny.input.image_size == common.TINY_IMAGE_SIZE
  assert tiny.optimizer.to_dict() == common.TINY_OPTIMIZER
  multiplier = importlib.import_module(f'configs.{name}').TINY_LR_MULTIPLIER
  assert multiplier in common.TINY_LR_MULTIPLIERS
  assert tiny.schedule.to_dict() == dict(
      name='cosine', base_learning_rate=common.TINY_LEARNING_RATE * multiplier,
      warmup_steps=common.TINY_WARMUP_STEPS)
  # The paper-size config keeps the paper's optimiser.
  assert _config(name).optimizer.name in ('sgd', 'lars')


@pytest.mark.parametrize('variant', ['synthetic', 'synthetic_full', 'quick', 'vtab',
                                     'vtab_per_task', 'vtab_tiny', 'discovery', 'probe',
                                     'retrieval'])
def test_every_evaluation_suite_passes_the_suites_own_check(variant):
  from vivi.evaluate import suite
  config = _config('evaluate', variant)
  suite.check(config)
  assert config.evaluators


def test_the_vtab_suites_select_as_their_papers():
  vivi, per_task = (_config('evaluate', v).evaluators.vtab for v in ('vtab', 'vtab_per_task'))
  assert (vivi.selection, vivi.num_runs) == ('per_model', 3)           # VIVI section 4.
  assert (per_task.selection, per_task.num_runs) == ('per_task', 12)   # Romijnders et al. 4.2.


def test_an_unknown_evaluation_suite_lists_the_valid_ones():
  with pytest.raises(ValueError, match="'discovery', 'probe', 'retrieval' or one of"):
    _config('evaluate', 'huge')


PAPER_CONFIGS = ('vivi', 'vivi_obj', 'vivi_cotrain', 'vivi_obj_cotrain', 'vince', 'vito',
                 'detcon', 'odin', 'moclr', 'supervised')


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_every_paper_config_names_a_tpu_slice_its_batches_divide(name):
  """`TPU_SLICE`, the slice `python -m benchmarks.aot` compiles the paper run for by default:
  its global batches divide over the slice's devices (what the compile would refuse)."""
  import importlib

  from benchmarks import aot
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config()
  devices = aot.num_devices(module.TPU_SLICE)
  aot.check_divisible(config, devices, module.TPU_SLICE)
  assert config.model.dtype == 'bfloat16' and module.get_config('tiny').model.dtype == 'float32'


def test_topology_names_count_devices_as_jax_does():
  from benchmarks import aot
  assert [aot.num_devices(t) for t in ('v3:8x8', 'v3:2x2', 'v4:2x2x1', 'v5e:4x4', 'v3:16x16')
          ] == [128, 8, 8, 16, 512]
