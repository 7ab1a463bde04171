"""The training loop: data -> sharded step -> metrics, checkpoints and probes.

Resumes automatically from the latest checkpoint in the workdir. Every run reports
representation quality: the evaluators of `config.probe` (the suite `evaluate.py` runs,
vivi/evaluate/suite.py; by default a linear probe of the frozen encoder on the synthetic
world's held-out tasks and the object nearest-neighbour fraction), for the encoder being
trained, the same encoder at initialisation and, at the end, a colour histogram.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils

from vivi import checkpoint, errors, optim, parallel, train, validation, workdir_lock
from vivi import encoder as encoder_api
from vivi.evaluate import baselines, suite, tables
from vivi.input import records, sources


def probe_encoder(model, state) -> encoder_api.Encoder:
  """The encoder of a train state, as the evaluation suite takes it."""
  return encoder_api.Encoder(
      module=model.encoder,
      variables={'params': state.params['encoder'],
                 'batch_stats': state.batch_stats.get('encoder', {})},
      info={'source': 'training', 'step': int(state.step)})


def init_probe_results(probe, state, workdir: str, resumed: bool) -> dict[str, float]:
  """The probe of the encoder at initialisation: computed when the run starts from step 0
  and kept in the workdir, so a resumed run prints it without recomputing it. (Decided by
  `resumed`, which every process agrees on, not by the file: the probe is a collective.)"""
  path = os.path.join(workdir, tables.INIT_PROBE_FILE)
  if resumed and tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  logging.info('Probing the encoder at initialisation ...')
  results = probe(state)
  if jax.process_index() == 0:
    records.write_atomic(path, json.dumps(results, indent=1))
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir`; returns the final probe accuracies (trained and init)."""
  validation.check_run(config, workdir)  # Before anything is built or written.
  # One run per workdir; only the process that writes it holds the lock.
  with workdir_lock.held(workdir, writer=jax.process_index() == 0):
    saved = checkpoint.resume_config(workdir)
    if saved is not None:
      checkpoint.check_resume_config(saved[1], config, saved[0], workdir)
    try:
      return _train(config, workdir)
    except Exception as e:
      full = checkpoint.no_space_message(e, workdir)
      if full is None:
        raise
      raise errors.PathError(full) from None


def _train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; keep accelerators for JAX.
  mesh = parallel.make_mesh()
  if jax.process_count() > 1:
    # The first collective sets up the processes' connections; make it one they all reach
    # at once (building the synthetic world keeps process 0 away for minutes).
    multihost_utils.sync_global_devices('start')
  source = None
  if config.input.sampler != 'none':    # 'none': labelled images only (no videos).
    logging.info('Dataset: %s ...', config.data.dataset)
    source = sources.video_source(config)
  logging.info('config:\n%s', config)

  logging.info('Initialising the model and the train state ...')
  model = train.build_model(config)
  tx = optim.make_optimizer(config)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state = train.create_train_state(config, model, tx, init_rng)
  shardings = parallel.state_shardings(state, mesh, config.model.fsdp)
  state = jax.device_put(state, shardings)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  evaluators = suite.Suite(config.probe, mesh)
  probe = lambda state: evaluators(probe_encoder(model, state))
  with checkpoint.manager(workdir, config) as mngr:  # Closed (its saves joined) on errors too.
    restored = mngr.latest_step()
    if not restored and config.init_encoder:   # Fine-tuning: start from a trained encoder.
      logging.info('Initialising the encoder from %s ...', config.init_encoder)
      pretrained = encoder_api.load_pretrained(config.init_encoder, mesh)
      state = jax.device_put(train.with_pretrained_encoder(state, pretrained, config),
                             shardings)
    # Computed before training touches (and donates) the state.
    init_probe = init_probe_results(probe, state, workdir, resumed=bool(restored))
    if restored:
      state, restored = checkpoint.restore_whole(mngr, state, workdir, config)
    if restored:
      logging.info('Resumed from the checkpoint at step %d in %s', restored, workdir)
    else:
      writer.write_hparams({k: str(v) for k, v in _flatten(config.to_dict()).items()})
      writer.write_scalars(0, {f'probe_init/{k}': v for k, v in init_probe.items()})
    start = restored or 0

    logging.info('Compiling the train step and starting the input pipeline ...')
    step_fn = train.jit_train_step(train.make_train_step(config, model, tx), mesh, shardings)
    host_input = sources.make_input(config, source) if source else None
    batches = iter(host_input) if host_input else None
    images = sources.make_labelled_input(config, mesh)
    pipelines = {'videos': host_input, 'images': images}
    if restored and not checkpoint.restore_input(workdir, restored, pipelines):
      logging.warning('No input state saved with step %d for process %d of %d (the checkpoint '
                      'was written by another process layout, or with input states of '
                      'another kind): the input starts afresh, so this run will not read what an '
                      'uninterrupted one would.', restored, jax.process_index(),
                      jax.process_count())

    def save(state, step):
      # The input state first: a step whose checkpoint committed always has it.
      checkpoint.save_input(mngr, workdir, step, pipelines, config.keep_checkpoints)
      checkpoint.save(mngr, state, config)
    report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                             writer=writer, every_steps=config.log_every_steps)
    pending = []
    guard = NonFiniteGuard(config.max_nonfinite_steps)
    preemption = Preemption()
    profile = Profile(config.profile, workdir)
    for step in range(start + 1, config.num_train_steps + 1):
      profile.before(step)
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        local = next(batches) if batches else {}
        if images is not None:
          local.update(next(images))
        batch = parallel.global_batch(local, mesh)
        state, metrics = step_fn(state, batch, step_rng)
      profile.after(step, metrics)
      pending.append(metrics)
      report(step, time.time())
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        means = guard.summarise(jax.device_get(pending), step)
        pending = []
        if host_input:
          means['input/videos_skipped'] = sum_over_processes(host_input.videos_skipped)
        writer.write_scalars(step, means)
      if preemption.reached(step):
        preemption.close()
        save(state, step)
        mngr.wait_until_finished()
        writer.flush()
        logging.warning('Pre-empted (SIGTERM): saved the checkpoint at step %d in %s; run the '
                        'same command to resume.', step, workdir)
        return {'preempted_at': step}
      if step % config.checkpoint_every_steps == 0 and step != config.num_train_steps:
        save(state, step)
      if step % config.probe.every_steps == 0 and step != config.num_train_steps:
        logging.info('Probing the encoder at step %d ...', step)
        writer.write_scalars(step, {f'probe/{k}': v for k, v in probe(state).items()})

    preemption.close()
    profile.close()
    if start < config.num_train_steps:
      logging.info('Saving the checkpoint of step %d ...', config.num_train_steps)
      save(state, config.num_train_steps)
    logging.info('Probing the trained encoder ...')
    final = probe(state)
    writer.write_scalars(config.num_train_steps, {f'probe/{k}': v for k, v in final.items()})
    mngr.wait_until_finished()
    writer.flush()
    results = {'step': config.num_train_steps, 'split': config.probe.split, 'trained': final,
               'init': init_probe, 'counts': evaluators.counts}
    if final:
      # The colour histogram through the same probes (evaluators that need a network skip).
      results['reference'] = {'color_histogram': evaluators(baselines.ColourHistogram())}
    if jax.process_index() == 0:
      records.write_atomic(os.path.join(workdir, tables.PROBE_RESULTS_FILE),
                           json.dumps(results, indent=1))
    _print_probes(results)
    return results


def sum_over_processes(count: int) -> int:
  """A per-process count summed over all processes (a collective: all of them call it)."""
  if jax.process_count() == 1:
    return count
  return int(np.sum(multihost_utils.process_allgather(np.int64(count))))


class Profile:
  """A `jax.profiler` trace of `config.profile.num_steps` steps from `first_step` on, into
  `<workdir>/profile` (TensorBoard's profile plugin: `tensorboard --logdir=<workdir>`);
  `num_steps=0` traces nothing. Every process traces its own devices."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.first, self.last = config.first_step, config.first_step + config.num_steps - 1
    self.folder = os.path.join(workdir, 'profile')
    self.active = False

  def before(self, step: int) -> None:
    if step == self.first and self.last >= self.first:
      logging.info('Tracing steps %d to %d into %s ...', self.first, self.last, self.folder)
      jax.profiler.start_trace(self.folder)
      self.active = True

  def after(self, step: int, outputs) -> None:
    if self.active and step == self.last:
      jax.block_until_ready(outputs)   # The traced steps end inside the trace.
      jax.profiler.stop_trace()
      self.active = False

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False


class Preemption:
  """Whether to save and stop at this step because the job is being pre-empted.

  TPU pre-emption and SLURM send SIGTERM, then wait a grace period. One process: a handler
  notes the signal and the loop saves at the next step boundary. Several processes: JAX's
  coordination service agrees on one step at which every process sees True
  (`multihost_utils.reached_preemption_sync_point`), so all hosts save the same step
  together.
  """

  def __init__(self):
    self.signalled = False
    self.multi = jax.process_count() > 1
    self.previous = None
    if not self.multi and threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._note)

  def close(self) -> None:
    """Gives SIGTERM back to the handler it had before."""
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None

  def _note(self, signum, frame):
    del signum, frame
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self.multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled


class NonFiniteGuard:
  """Counts the steps the train step skipped for a non-finite loss or gradient (their
  `nonfinite` metric; the state was left as it was) and stops the run after `limit` in a
  row, naming the steps and the loss terms. Checked when metrics are logged, so the run
  stops at the first log step that sees the limit reached: no per-step host sync."""

  def __init__(self, limit: int):
    if limit < 1:
      raise ValueError(f'max_nonfinite_steps must be >= 1, got {limit}')
    self.limit, self.in_a_row, self.total = limit, 0, 0

  def summarise(self, per_step: list[dict], last_step: int) -> dict:
    """Means of the logged metrics over the finite steps (+ 'nonfinite_steps', the total
    so far); raises FloatingPointError once `limit` steps in a row were non-finite."""
    first = last_step - len(per_step) + 1
    for offset, m in enumerate(per_step):
      if m['nonfinite']:
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row >= self.limit:
          terms = {k: float(v) for k, v in m.items() if k.endswith('loss')}
          raise FloatingPointError(
              f'{self.in_a_row} steps in a row (up to step {first + offset}) had a non-finite '
              f'loss or gradient and were skipped (config.max_nonfinite_steps='
              f'{self.limit}); the last one\'s loss terms: {terms}. The checkpoints hold '
              f'only finite states: lower the learning rate or check the input.')
      else:
        self.in_a_row = 0
    finite = [m for m in per_step if not m['nonfinite']]
    means = {k: float(np.mean([m[k] for m in finite])) for k in per_step[0]} if finite else {}
    means.pop('nonfinite', None)
    means['nonfinite_steps'] = self.total
    return means


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _print_probes(results: dict) -> None:
  if not results['trained']:
    return
  columns = {'trained': results['trained'], 'at init': results['init'],
             'colour histogram': results['reference']['color_histogram']}
  lines = [f'Representation quality on held-out data ({results["split"]} split), step '
           f'{results["step"]}:',
           tables.format_table(columns, results['counts'], gain=('trained', 'at init')),
           '  (linear_probe: accuracy ± standard error; object_nn: share of held-out boxes whose '
           'nearest neighbour has their class, Romijnders et al. Table 2, _other_videos: the '
           'neighbour from another video; object_discovery: '
           'mean best IoU (abo) of held-out objects with a k-means segment of block 4 and the '
           'share above 0.5 (object_recovery), Odin section 4; * marks a gain over '
           'the encoder at initialisation beyond three standard errors; the colour histogram '
           'has no shape: a method above it learned more than colour)']
  if jax.process_index() == 0:
    print('\n'.join(lines), flush=True)
