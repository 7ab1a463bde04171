"""The train state's target network and memory: VINCE's queue is a ring buffer of the
target's embeddings, queue and target survive a checkpoint, the target is the EMA of the
online parameters with the configured momentum schedule, global-batch BatchNorm makes
Shuffle-BN a no-op (configs/vince.py), and `config.target_network` must match the
objectives.

All steps here run VINCE's tiny ResNet-14 at 32 px on 2 videos x k=4 frames (8 keys a
step) with a 12-key queue, so three steps write past its end and wrap around.
"""

import jax
import numpy as np
import pytest

from configs import detcon, vince, vito, vivi
from vivi import checkpoint, optim, parallel, train

VIDEOS, K, MEMORY = 2, 4, 12
KEYS = VIDEOS * K   # Keys written per step.


def _vince_config():
  config = vince.get_config('tiny')
  config.input.image_size = 32
  config.input.batch_videos = VIDEOS
  config.input.frames_per_video = K
  config.objectives.vince.memory_size = MEMORY
  config.schedule.warmup_steps = 0   # The step moves the parameters (and so the target).
  return config


@pytest.fixture(scope='module')
def setup():
  """(config, model, tx, mesh, jitted step). The step compiles once for the module (~40 s
  on 2 shared cores), so the tests that run it are marked slow."""
  config = _vince_config()
  model, tx = train.build_model(config), optim.make_optimizer(config)
  mesh = parallel.make_mesh(jax.devices()[:1])
  step = train.jit_train_step(train.make_train_step(config, model, tx), mesh)
  return config, model, tx, mesh, step


def _state(setup, seed=0):
  config, model, tx, mesh, _ = setup
  return parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(seed)),
                            mesh)


def _batch(setup, seed):
  """Random uint8 anchors and positives with the shapes of the VINCE sampler's batch."""
  config, mesh = setup[0], setup[3]
  rng = np.random.default_rng(seed)
  local = {k: rng.integers(0, 256, x.shape, dtype=np.uint8)
           for k, x in train.init_batch(config).items()}
  assert set(local) == {'frames', 'target_frames'}
  return parallel.global_batch(local, mesh)


def _host(tree):
  """A host copy that outlives the step's donation of the state's buffers."""
  return jax.tree.map(lambda x: np.array(x), tree)


def _forward(model):
  """f(variables, frames, target) -> (outputs, {'batch_stats': ...}): the model in train
  mode, BatchNorm over all the frames given, jitted (an eager pass takes ~10 s here)."""
  return jax.jit(lambda variables, frames, target: model.apply(
      variables, {'frames': frames}, train=True, target=target, mutable=['batch_stats']),
                 static_argnums=2)


def _target_forward(forward, target, batch):
  """The target (key) encoder on the positives, computed here independently of the step:
  (embeddings [n, d], the target's BatchNorm statistics after the pass)."""
  outputs, mutated = forward(target, batch['target_frames'], True)
  embeddings = np.asarray(outputs['vince']['embeddings'])
  return embeddings.reshape(-1, embeddings.shape[-1]), _host(mutated['batch_stats'])


@pytest.mark.slow
def test_vince_queue_is_a_ring_buffer_of_the_target_embeddings(setup):
  """Each step writes the target's embeddings of its positives at rows (position +
  arange(n)) % size and leaves the other rows alone; position advances mod size. With 8
  keys and 12 rows the writes start at 0, 8 and 4, so the second step wraps around the end
  of the buffer: a queue that overwrote the wrong rows, wrote the online (anchor)
  embeddings, or kept the position un-wrapped would fail."""
  forward, step = _forward(setup[1]), setup[4]
  state = _state(setup)
  assert state.memory['vince']['queue'].shape == (MEMORY, 64)
  positions = []
  for i in range(3):
    batch = _batch(setup, seed=i)
    before = _host(state.memory['vince'])
    position = int(before['position'])
    positions.append(position)
    keys, _ = _target_forward(forward, state.target, batch)
    online, _ = forward({'params': state.params, 'batch_stats': state.batch_stats},
                        batch['frames'], False)
    anchors = np.asarray(online['vince']['embeddings']).reshape(KEYS, -1)
    state, _ = step(state, batch, jax.random.key(1))
    after = _host(state.memory['vince'])
    rows = (position + np.arange(KEYS)) % MEMORY
    # Unit vectors. Measured: equal to this jitted pass, 1.7e-6 from an eager one.
    np.testing.assert_allclose(after['queue'][rows], keys, atol=1e-5, err_msg=f'step {i}')
    others = np.setdiff1d(np.arange(MEMORY), rows)
    np.testing.assert_array_equal(after['queue'][others], before['queue'][others])
    assert int(after['position']) == (position + KEYS) % MEMORY
    assert after['queue'].dtype == before['queue'].dtype == np.float32
    # The keys are the target's positives, not the online anchors (so this can fail).
    assert np.abs(anchors - keys).max() > 1e-2
  assert positions == [0, 8, 4]
  assert int(state.memory['vince']['position']) == 0


@pytest.mark.slow
def test_queue_and_target_survive_a_checkpoint_round_trip(setup, tmp_path):
  """vivi.checkpoint saves the whole state, queue, position and target included, and
  restores it bit for bit into a freshly created state (of other random values, so a
  restore that skipped a field would show); the next step from the restored state is the
  next step from the original one, bit for bit."""
  config, step = setup[0], setup[4]
  state, _ = step(_state(setup), _batch(setup, seed=0), jax.random.key(1))
  saved = _host(state)
  assert int(saved.memory['vince']['position']) == KEYS
  mngr = checkpoint.manager(str(tmp_path), config)
  checkpoint.save(mngr, state, config)
  mngr.wait_until_finished()
  mngr.close()

  fresh = _state(setup, seed=1)
  assert int(fresh.step) == 0 and int(fresh.memory['vince']['position']) == 0
  assert not np.array_equal(np.asarray(fresh.memory['vince']['queue']),
                            saved.memory['vince']['queue'])
  mngr = checkpoint.manager(str(tmp_path), config)   # As a resumed run: a new manager.
  restored, restored_step = checkpoint.restore_latest(mngr, fresh)
  mngr.close()
  assert restored_step == 1
  np.testing.assert_array_equal(restored.memory['vince']['queue'], saved.memory['vince']['queue'])
  assert restored.memory['vince']['position'].dtype == np.int32
  assert int(restored.memory['vince']['position']) == KEYS
  for got, want in zip(jax.tree.leaves(restored.target['params']),
                       jax.tree.leaves(saved.target['params'])):
    np.testing.assert_array_equal(got, want)
  # Every other leaf too (step, params, batch_stats, opt_state, target BatchNorm stats).
  assert jax.tree.structure(restored) == jax.tree.structure(saved)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(restored),
                               jax.tree.leaves(saved)):
    np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))
  # The target has moved away from the online network, so restoring it is not trivial.
  assert any(np.abs(t - p).max() > 0 for t, p in zip(
      jax.tree.leaves(saved.target['params']), jax.tree.leaves(saved.params)))

  batch = _batch(setup, seed=1)
  from_original, m_original = step(state, batch, jax.random.key(2))
  from_restored, m_restored = step(restored, batch, jax.random.key(2))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(_host(from_original)),
                          jax.tree.leaves(_host(from_restored))):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  assert float(m_original['loss']) == float(m_restored['loss'])


@pytest.mark.slow
def test_target_is_the_ema_of_the_online_parameters(setup):
  """After each step, target params == m * old target + (1 - m) * new online params with
  m = optim.target_momentum(config, step) (VINCE: constant; 0.99 in the tiny runs), and the
  target's BatchNorm statistics are those of its own train-mode pass over the positives.
  Two steps: at the first the old target equals the old online parameters, at the second
  it does not, so a step that copied, skipped or mixed with the wrong m would fail."""
  config, forward, step = setup[0], _forward(setup[1]), setup[4]
  assert config.target_network.schedule == 'constant'
  m = float(optim.target_momentum(config, 0))
  assert m == np.float32(config.target_network.momentum) < 1
  assert float(optim.target_momentum(config, config.num_train_steps)) == m
  state = _state(setup)
  for i in range(2):
    batch = _batch(setup, seed=i)
    old_target = _host(state.target)
    _, stats = _target_forward(forward, state.target, batch)
    state, metrics = step(state, batch, jax.random.key(1))
    new = _host(state)
    assert float(metrics['target_momentum']) == m
    moved = 0.0
    for (path, t), old, p in zip(jax.tree_util.tree_leaves_with_path(new.target['params']),
                                 jax.tree.leaves(old_target['params']),
                                 jax.tree.leaves(new.params)):
      want = np.float32(m) * old + np.float32(1 - m) * p
      np.testing.assert_allclose(t, want, rtol=1e-6, atol=1e-8,
                                 err_msg=f'step {i} {jax.tree_util.keystr(path)}')
      moved = max(moved, np.abs(t - old).max())
    # The target moved (by (1 - m) times the update), far beyond the tolerance above.
    assert moved > 1e-6
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(new.target['batch_stats']),
                                 jax.tree.leaves(stats)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6,
                                 err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('module', [vito, detcon])
@pytest.mark.parametrize('variant', ['', 'tiny'])
def test_cosine_target_momentum_schedule(module, variant):
  """BYOL's schedule (VITO, DetCon): m_k = 1 - (1 - m0)(cos(pi k/K) + 1)/2 rises from m0 at
  step 0 through (1 + m0)/2 at K/2 to 1 at K, and stays at 1 after K."""
  config = module.get_config(variant)
  m0, steps = config.target_network.momentum, config.num_train_steps
  assert config.target_network.schedule == 'cosine' and m0 < 1
  for k in (0, steps // 2, steps, 2 * steps):
    want = 1 - (1 - m0) * (np.cos(np.pi * min(k / steps, 1.0)) + 1) / 2
    assert float(optim.target_momentum(config, k)) == pytest.approx(want, abs=1e-7), k
  assert float(optim.target_momentum(config, 0)) == pytest.approx(m0, abs=1e-7)
  assert float(optim.target_momentum(config, steps // 2)) == pytest.approx((1 + m0) / 2,
                                                                           abs=1e-7)
  assert float(optim.target_momentum(config, steps)) == pytest.approx(1.0, abs=1e-7)
  # A traced int32 step, as inside the jitted train step, between the anchors.
  k = steps // 4
  want = 1 - (1 - m0) * (np.cos(np.pi * k / steps) + 1) / 2
  got = jax.jit(lambda s: optim.target_momentum(config, s))(np.int32(k))
  assert float(got) == pytest.approx(want, abs=1e-7)


def _per_video_frames(rng, videos, k, size):
  """uint8 [videos, k, size, size, 3]; video v's pixels lie in [32 v, 32 v + 96), so that
  the two halves of the batch have clearly different BatchNorm statistics."""
  low = 32 * np.arange(videos)[:, None, None, None, None]
  return (low + rng.integers(0, 96, (videos, k, size, size, 3))).astype(np.uint8)


def test_global_batchnorm_makes_shuffle_bn_a_no_op(setup):
  """configs/vince.py: with BatchNorm over the global batch (train mode), the key encoder
  maps a shuffled batch to the shuffled outputs (pre-logit features and embeddings) and the
  same BatchNorm statistics, so shuffling the keys before it (Shuffle-BN, MoCo) and
  un-shuffling after changes nothing. To show that the check can fail: with BatchNorm per
  half of the batch (as per-device BatchNorm on 2 devices), the same shuffle, which moves
  images across the halves, changes the outputs by far more than the tolerance."""
  forward = _forward(setup[1])
  variables = _state(setup).target
  videos, size = 6, 32
  rng = np.random.default_rng(0)
  frames = _per_video_frames(rng, videos, K, size)
  n = videos * K
  perm = rng.permutation(n)
  assert np.sum(perm[:n // 2] >= n // 2) >= 4   # Images move across the halves.

  def encode(frames):
    """([features, embeddings] [images, .], BatchNorm statistics) of frames
    [v, k, H, W, 3], all in one BatchNorm batch."""
    outputs, mutated = forward(variables, frames, True)
    images = frames.shape[0] * frames.shape[1]
    return np.concatenate([np.asarray(outputs['features']['pre_logits']).reshape(images, -1),
                           np.asarray(outputs['vince']['embeddings']).reshape(images, -1)],
                          axis=1), mutated['batch_stats']

  def shuffled(frames):
    return frames.reshape((n,) + frames.shape[2:])[perm].reshape(frames.shape)

  out, stats = encode(frames)
  out_shuffled, stats_shuffled = encode(shuffled(frames))
  atol = 1e-5 * np.abs(out).max()
  np.testing.assert_allclose(out_shuffled, out[perm], rtol=0, atol=atol)
  for a, b in zip(jax.tree.leaves(stats_shuffled), jax.tree.leaves(stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  def per_half(frames):
    return np.concatenate([encode(frames[:videos // 2])[0], encode(frames[videos // 2:])[0]])

  assert np.abs(per_half(shuffled(frames)) - per_half(frames)[perm]).max() > 100 * atol


def _without_target_network(get_config):
  config = get_config('tiny')
  del config.target_network
  return config


def _none_target_network(get_config):
  config = get_config('tiny')
  config.target_network = None
  return config


def _vivi_with_target_network():
  config = vivi.get_config('tiny')
  config.target_network = dict(momentum=0.99, schedule='constant')
  return config


@pytest.mark.parametrize('make_config', [
    lambda: _without_target_network(vince.get_config),
    lambda: _without_target_network(vito.get_config),
    lambda: _without_target_network(detcon.get_config),
    lambda: _none_target_network(vince.get_config),
    _vivi_with_target_network,
], ids=['vince_without', 'vito_without', 'detcon_without', 'vince_none', 'vivi_with'])
def test_target_network_must_match_the_objectives(make_config):
  """A config whose objectives need the EMA target but has no `target_network`, or has one
  that no objective uses, fails when the model is built, naming `target_network`."""
  config = make_config()
  with pytest.raises(ValueError, match='target_network'):
    train.build_model(config)
  with pytest.raises(ValueError, match='target_network'):
    train.target_objectives(config)


@pytest.mark.parametrize('get_config,names', [
    (vince.get_config, ['vince']), (vito.get_config, ['vito']),
    (detcon.get_config, ['detcon']), (vivi.get_config, [])])
def test_shipped_configs_pass_the_target_network_check(get_config, names):
  """The counterpart of the test above: every shipped tiny config builds, and names exactly
  its target objectives (so the ValueError above is not raised for everything)."""
  config = get_config('tiny')
  assert train.target_objectives(config) == names
  assert train.build_model(config).target_heads == tuple(names)


@pytest.mark.slow
def test_a_nonfinite_step_leaves_the_whole_state_as_it_was(setup):
  """A NaN in the online parameters makes the loss NaN: the step is counted as skipped and
  parameters, optimiser state, BatchNorm statistics, target and queue stay as they were
  (only the step counter advances), so nothing non-finite spreads or gets checkpointed."""
  step = setup[4]
  state = _state(setup)
  # The NaN goes after the last ReLU: XLA's CPU kernels may compute max(NaN, 0) as 0, so a
  # NaN inside the encoder can leave the loss finite (the gradient is NaN all the same).
  leaf = state.params['heads_vince']['embedding']['out']['bias']
  params = jax.tree.map(lambda x: x, state.params)
  params['heads_vince']['embedding']['out']['bias'] = leaf.at[0].set(np.nan)
  state = state.replace(params=params)
  before = _host(state)
  state, metrics = step(state, _batch(setup, seed=0), jax.random.key(1))
  assert int(metrics['nonfinite']) == 1 and not np.isfinite(float(metrics['loss']))
  after = _host(state)
  assert int(after.step) == int(before.step) + 1
  for name in ('params', 'opt_state', 'batch_stats', 'target', 'memory'):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(getattr(after, name)),
                            jax.tree.leaves(getattr(before, name))):
      np.testing.assert_array_equal(a, b, err_msg=f'{name}{jax.tree_util.keystr(path)}')
  _, metrics = step(_state(setup), _batch(setup, seed=0), jax.random.key(1))
  assert int(metrics['nonfinite']) == 0
