"""Evaluators chosen by config: `python evaluate.py` on a checkpoint, and the training loop's
probes (`config.probe`) on the encoder being trained, through the same `Suite`.

`config.evaluators` maps an evaluator name (a key of `EVALUATORS`) to its settings; each
evaluator returns flat metrics {name: float} and optionally pictures {name: RGB array}, and
records how many examples a metric was measured on (`Suite.counts`, for standard errors).
A `Suite` keeps the rendered data between calls, so the training loop renders them once.
`run` writes, under `<workdir>/eval/step_<N>/`, one JSON per evaluator, `results.md` (all
of them as a Markdown table) and the PNGs, and logs metrics and pictures to TensorBoard
(`<workdir>/eval`).

Datasets for the probe and kNN: 'synthetic/<task>' (the synthetic world's held-out tasks),
'tfds/<name>' (any TFDS image classification data set prepared under `data_dir`, its
'train' and 'test' splits) or a VTAB task, resized to `image_size`. `split='validation'`
never reads the test images: it fits on the first 3/4 of the training images and scores on
the last 1/4 (for choosing hyper-parameters, benchmarks/learning.py). An encoder may be
`baselines.ColourHistogram()`: every feature is then the image's colour histogram.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vivi import checkpoint, errors
from vivi import encoder as encoder_api
from vivi.evaluate import (
  baselines,
  discovery,
  knn,
  linear_probe,
  object_nn,
  retrieval,
  robustness,
  vtab,
  vtab_tasks,
)
from vivi.input import labelled, synthetic_tasks
from vivi.models import video_model

Result = tuple[dict[str, float], dict[str, np.ndarray]]
# What `Context.features` pools: block 4 averaged over its positions is 'pre_logits'.
POOLED_FEATURES = ('pre_logits', 'block1', 'block2', 'block3')


SPLITS = ('test', 'validation')


class Context:
  """What every evaluator of one call shares: the encoder, the mesh, the output folder, the
  suite's datasets (rendered once per suite) and this encoder's features (the probe and kNN
  read the same features); `count` records a metric's number of examples."""

  def __init__(self, encoder, config: ml_collections.ConfigDict, mesh, out_dir: str | None,
               shared: dict | None = None):
    self.encoder, self.config, self.mesh, self.out_dir = encoder, config, mesh, out_dir
    shared = {'data': {}, 'fns': {}} if shared is None else shared
    self._data: dict[Any, Any] = shared['data']
    self._fns: dict[tuple, Callable] = shared['fns']
    self._features: dict[tuple, np.ndarray] = {}
    self.counts: dict[str, int] = {}

  @property
  def split(self) -> str:
    return self.config.get('split', 'test')

  def count(self, metric: str, n: int) -> None:
    self.counts[metric] = int(n)

  @staticmethod
  def log(message: str) -> None:
    """A progress line (evaluators print one per task, so a long one is never silent)."""
    logging.info('  %s', message)

  def dataset(self, name: str):
    """(train images, train labels, evaluation images, evaluation labels, num classes) of
    `name`; the evaluation images are the test split's, or with split='validation' the last
    quarter of the training images (the probe then fits on the first three quarters)."""
    if (name, self.split) not in self._data:
      x_tr, y_tr, x_te, y_te, k = self._load(name)
      if self.split == 'validation':
        cut = len(y_tr) * 3 // 4
        x_tr, y_tr, x_te, y_te = x_tr[:cut], y_tr[:cut], x_tr[cut:], y_tr[cut:]
      self._data[name, self.split] = (x_tr, y_tr, x_te, y_te, k)
    return self._data[name, self.split]

  def _load(self, name: str):
    if name not in self._data:
      c = self.config
      test = c.num_test if self.split == 'test' else 0   # Validation: never the test split.
      self.log(f'loading {name} ({c.num_train} training and {test} test images)')
      task = labelled.synthetic_task(name)
      if task is not None:
        tr = synthetic_tasks.render_downstream(task, 'train', c.num_train,
                                               image_size=c.image_size, seed=c.seed)
        te = synthetic_tasks.render_downstream(task, 'test', test, image_size=c.image_size,
                                               seed=c.seed)
        self._data[name] = (*tr, *te, synthetic_tasks.DOWNSTREAM_TASKS[task])
      elif name.startswith('tfds/'):
        dataset = name.split('/', 1)[1]
        read = lambda split, n, d=dataset: labelled.read_tfds(
            d, split, data_dir=c.get('data_dir', ''), image_size=c.image_size, limit=n)
        tr = read('train', c.num_train)
        te = read('test', test) if test else (tr[0][:0], tr[1][:0], tr[2])
        self._data[name] = (*tr[:2], *te)
      elif name in vtab_tasks.TASKS:  # A VTAB-1k task: its 1000 training examples, its test set.
        t = vtab_tasks.load_task(name, data_dir=c.get('data_dir') or None,
                                 image_size=c.image_size, num_test=test)
        self._data[name] = (*t.train800val200, *t.test, t.num_classes)
      else:
        raise ValueError(f"unknown dataset {name!r}: use 'synthetic/<task>' "
                         f"({sorted(synthetic_tasks.DOWNSTREAM_TASKS)}), 'tfds/<name>' or a "
                         f"VTAB task ({sorted(vtab_tasks.TASKS)})")
    return self._data[name]

  def features(self, images: np.ndarray, feature: str = 'pre_logits', key=None) -> np.ndarray:
    """Pooled features [N, C] of uint8 images: 'pre_logits' (block 4 averaged over its
    positions), or an earlier block ('block1'..'block3') averaged the same way; colour
    histograms for the `baselines.ColourHistogram` encoder. `key` caches them."""
    if feature not in POOLED_FEATURES:
      raise errors.ConfigError(
          f'feature {feature!r}: valid {POOLED_FEATURES}; block 4 averaged over its positions '
          f'is pre_logits itself')
    if key is not None and (key, feature) in self._features:
      return self._features[key, feature]
    module = self.encoder.module
    if isinstance(self.encoder, baselines.ColourHistogram):
      out = baselines.color_histogram(images)
    else:
      if (module, feature) not in self._fns:

        def encode(variables, x):
          out = module.apply(variables, video_model.normalize_images(x), train=False)[feature]
          return out if out.ndim == 2 else jnp.mean(out, axis=(1, 2))

        self._fns[module, feature] = linear_probe.jit_encoder(encode, self.mesh)
      out = linear_probe.extract_features(self._fns[module, feature], self.encoder.variables,
                                          images, self.mesh)
    if key is not None:
      self._features[key, feature] = out
    return out

  def split_features(self, name: str, feature: str):
    x_tr, y_tr, x_te, y_te, k = self.dataset(name)
    return (self.features(x_tr, feature, (name, 'train')), y_tr,
            self.features(x_te, feature, (name, 'test')), y_te, k)


def linear_probe_eval(ctx: Context, cfg) -> Result:
  out = {}
  for d in cfg.datasets:
    for f in cfg.features:
      data = ctx.split_features(d, f)
      out[f'{d}/{f}'] = linear_probe.probe_accuracy(*data)
      ctx.count(f'{d}/{f}', len(data[3]))
      ctx.log(f'{d} {f}: {ctx.split} accuracy {out[f"{d}/{f}"]:.4f}')
  return out, {}


def knn_eval(ctx: Context, cfg) -> Result:
  out = {}
  for d in cfg.datasets:
    for f in cfg.features:
      data = ctx.split_features(d, f)
      out[f'{d}/{f}'] = knn.knn_accuracy(*data, k=cfg.k, temperature=cfg.temperature)
      ctx.count(f'{d}/{f}', len(data[3]))
      ctx.log(f'{d} {f}: {ctx.split} accuracy {out[f"{d}/{f}"]:.4f}')
  return out, {}


def vtab_eval(ctx: Context, cfg) -> Result:
  """The VTAB-1k protocol (vtab.py): fine-tuning sweep, selection on val200, retraining on
  1000, median of `num_runs`. Optional keys (VTAB's values by default): `learning_rates`,
  `schedules` ((steps, decay every), ...), `augment` ('none'; '' is each task's
  label-preserving default), `recalibrate_batch_stats`, `sweep_once`, `num_test` (0: the
  whole test split)."""
  tasks = [t for spec in cfg.tasks for t in vtab_tasks.task_names(spec)]
  sweep = [vtab.Setting(lr, steps, decay)
           for lr in cfg.get('learning_rates', vtab.LEARNING_RATES)
           for steps, decay in cfg.get('schedules', vtab.SCHEDULES)]
  out = vtab.run_suite(ctx.encoder.module, ctx.encoder.variables, tasks,
                       data_dir=ctx.config.get('data_dir') or None,
                       image_size=ctx.config.image_size, num_test=cfg.get('num_test') or None,
                       data_seed=ctx.config.seed, sweep=sweep, step_scale=cfg.step_scale,
                       num_runs=cfg.num_runs, batch_size=cfg.batch_size, seed=ctx.config.seed,
                       mesh=ctx.mesh, log=ctx.log, augment=cfg.get('augment', 'none') or None,
                       recalibrate_batch_stats=cfg.get('recalibrate_batch_stats', False),
                       sweep_once=cfg.get('sweep_once', False))
  with open(os.path.join(ctx.out_dir, 'vtab_runs.json'), 'w') as f:
    json.dump(out, f, indent=1, default=float)
  metrics = {t: r['test_accuracy'] for t, r in out['tasks'].items()}
  # VTAB's score ('mean', over tasks) and the group means ('mean/natural', ...).
  metrics.update({g if g == 'mean' else f'mean/{g}': v for g, v in out.items() if g != 'tasks'})
  return metrics, {}


def pm_k_eval(ctx: Context, cfg) -> Result:
  """A linear probe fitted on the synthetic 'class' task labels every frame of held-out
  video sequences (label: the class covering most of the frame); pm-k per k."""
  x_tr, y_tr, _, _, classes = ctx.split_features('synthetic/class', 'pre_logits')
  probe = linear_probe.fit_probe(x_tr, y_tr, classes)
  frames, labels = robustness.synthetic_sequences(
      cfg.num_videos, cfg.frames_per_video, image_size=ctx.config.image_size,
      seed=ctx.config.seed)
  n, t = labels.shape
  predictions = probe.predict(ctx.features(frames.reshape((n * t,) + frames.shape[2:])))
  predictions = predictions.reshape(n, t)
  metrics = {}
  for k in cfg.ks:
    r = robustness.pm_k(list(predictions), list(labels), k)
    metrics.update({f'pm{k}/anchor_accuracy': r['anchor_accuracy'],
                    f'pm{k}/pm_k_accuracy': r['pm_k_accuracy'], f'pm{k}/drop': r['drop']})
  return metrics, {}


def object_nn_eval(ctx: Context, cfg) -> Result:
  if not cfg.num_videos or isinstance(ctx.encoder, baselines.ColourHistogram):
    return {}, {}   # Off (num_videos=0); a histogram has no box features.
  # Validation: other held-out videos than the test's.
  seed = ctx.config.seed + (0 if ctx.split == 'test' else 1)
  key = ('object_nn', cfg.num_videos, cfg.frames_per_video, seed, ctx.encoder.module)
  if key not in ctx._data:
    ctx.log(f'rendering {cfg.num_videos} held-out videos for the object nearest neighbours')
    ctx._data[key] = object_nn.ObjectNearestNeighbour(
        ctx.encoder.module, ctx.mesh, num_videos=cfg.num_videos,
        frames_per_video=cfg.frames_per_video, image_size=ctx.config.image_size, seed=seed)
  nn_eval = ctx._data[key]
  metrics = nn_eval(ctx.encoder.variables)
  for name in metrics:
    ctx.count(name, int(nn_eval.data['valid'].sum()))
  return metrics, {}


def object_discovery_eval(ctx: Context, cfg) -> Result:
  """Odin's object discovery (discovery.py): k-means segments of a feature map of held-out
  frames against their true object masks; ABO and object recovery over the objects, and
  with an output folder a picture of a few frames (image | true masks | clusters)."""
  s = {**discovery.DEFAULTS, **cfg}
  if not s['num_videos'] or isinstance(ctx.encoder, baselines.ColourHistogram):
    return {}, {}   # Off (num_videos=0); a histogram has no feature map.
  seed = ctx.config.seed + (0 if ctx.split == 'test' else 1)  # Validation: other videos.
  key = ('held_out_truth', s['num_videos'], s['frames_per_video'], seed)
  if key not in ctx._data:
    ctx.log(f'rendering {s["num_videos"]} held-out videos with object masks')
    ctx._data[key] = retrieval.held_out_frames(
        s['num_videos'], s['frames_per_video'], image_size=ctx.config.image_size, seed=seed,
        return_truth=True)
  frames, _, _, truth = ctx._data[key]
  kw = {k: s[k] for k in ('feature', 'upsample', 'num_clusters', 'num_iterations')}
  fn_key = ('object_discovery', ctx.encoder.module, *kw.values())
  if fn_key not in ctx._fns:
    ctx._fns[fn_key] = discovery.segmenter(ctx.encoder.module, ctx.mesh, **kw)
  cells = linear_probe.extract_features(ctx._fns[fn_key], ctx.encoder.variables, frames,
                                        ctx.mesh)
  segments = discovery.upsample_nearest(cells, frames.shape[1])
  masks = [t['masks'] for t in truth]
  metrics, num_objects = discovery.scores(segments, masks)
  # Binomial errors over objects: for ABO (a mean of IoUs in [0, 1]) an upper bound, and
  # rough for both, as the objects of one frame share its segmentation.
  for k in metrics:
    ctx.count(k, num_objects)
  ctx.log(f'{num_objects} objects: ABO {metrics["abo"]:.3f}, object recovery '
          f'{metrics["object_recovery"]:.3f}')
  if not ctx.out_dir:   # The training probes: no picture.
    return metrics, {}
  return metrics, {'segments': discovery.picture(
      frames, masks, segments, s, os.path.join(ctx.out_dir, 'object_discovery.png'))}


def _held_out_frames(ctx: Context, cfg):
  """(frames, video index, class) spread over held-out videos, rendered once."""
  key = ('held_out', cfg.num_videos, cfg.frames_per_video)
  if key not in ctx._data:
    ctx._data[key] = retrieval.held_out_frames(cfg.num_videos, cfg.frames_per_video,
                                               image_size=ctx.config.image_size,
                                               seed=ctx.config.seed)
  return ctx._data[key]


def retrieval_eval(ctx: Context, cfg) -> Result:
  frames, videos, _ = _held_out_frames(ctx, cfg)
  feats = ctx.features(frames, key=('held_out', cfg.num_videos, cfg.frames_per_video))
  r = retrieval.frame_to_video_recall(feats, videos, ks=tuple(cfg.ks))
  return r, {}


def pictures_eval(ctx: Context, cfg) -> Result:
  from vivi.evaluate import pictures
  out = lambda name: os.path.join(ctx.out_dir, name + '.png')
  images = {}
  if ctx.config.get('workdir'):
    images['training_curves'] = pictures.training_curves(ctx.config.workdir,
                                                         out('training_curves'))
  frames, videos, classes = _held_out_frames(ctx, cfg)
  feats = ctx.features(frames, key=('held_out', cfg.num_videos, cfg.frames_per_video))
  images['tsne'] = pictures.tsne_plot(feats, videos, classes, out('tsne'),
                                      class_names=list(synthetic_tasks.world.CLASS_NAMES))
  queries = np.arange(0, len(frames), len(frames) // cfg.num_queries)[:cfg.num_queries]
  images['neighbours'] = pictures.neighbour_grid(
      frames[queries], frames, feats[queries], feats, out('neighbours'), k=cfg.k,
      gallery_video_ids=videos, query_video_ids=videos[queries])
  if ctx.config.get('workdir') and 'vito' in ctx.encoder.info.get('objectives', []):
    images['attention'] = _attention(ctx, frames[queries], out('attention'))
  return {}, images


def _attention(ctx: Context, images: np.ndarray, out_png: str) -> np.ndarray | None:
  """VITO's attention masks over frames (Figure B.1), when the run had attention pooling."""
  from vivi.evaluate import attention_maps, pictures
  state, config, _ = checkpoint.restore_training(ctx.config.workdir, ctx.encoder.info['step'],
                                                 ctx.mesh)
  if not config.objectives.vito.get('attention', True):
    return None
  masks = attention_maps.attention_masks(
      config, {'params': state['params'], 'batch_stats': state['batch_stats']}, images)
  return pictures.attention_figure(images, attention_maps.saliency(masks, images.shape[1]),
                                   out_png)


EVALUATORS: dict[str, Callable[[Context, Any], Result]] = {
    'linear_probe': linear_probe_eval, 'knn': knn_eval, 'vtab': vtab_eval, 'pm_k': pm_k_eval,
    'object_nn': object_nn_eval, 'retrieval': retrieval_eval, 'pictures': pictures_eval,
    'object_discovery': object_discovery_eval,
}


def check(config: ml_collections.ConfigDict, key: str = '') -> None:
  """Evaluator names, their datasets and the split, checked before anything is rendered;
  `key` is where `config` sits in its parent ('probe' for a training config)."""
  where = f'config.{key}.' if key else 'config.'
  unknown = set(config.evaluators) - set(EVALUATORS)
  if unknown:
    raise errors.ConfigError(f'unknown evaluators {sorted(unknown)} in {where}evaluators; '
                             f'valid: {sorted(EVALUATORS)}')
  if config.get('split', 'test') not in SPLITS:
    raise errors.ConfigError(f'{where}split={config.split!r}; valid: {SPLITS}')
  if 'object_discovery' in config.evaluators:
    try:
      discovery.check(config.evaluators.object_discovery)
    except ValueError as e:
      raise errors.ConfigError(f'{where}evaluators.object_discovery: {e}') from None
  for name, cfg in config.evaluators.items():
    for d in cfg.get('datasets', ()):
      try:
        known = (labelled.synthetic_task(d) is not None or d.startswith('tfds/')
                 or d in vtab_tasks.TASKS)
      except ValueError as e:   # An unknown synthetic task.
        raise errors.ConfigError(f'{where}evaluators.{name}.datasets: {e}') from None
      if not known:
        raise errors.ConfigError(
            f"{where}evaluators.{name}.datasets: unknown dataset {d!r}; use 'synthetic/<task>' "
            f"({sorted(synthetic_tasks.DOWNSTREAM_TASKS)}), 'tfds/<name>' or a VTAB task")


class Suite:
  """The evaluators of `config.evaluators` with the data they read, rendered once: call it
  on an encoder (a `encoder_api.Encoder`, or `baselines.ColourHistogram()`) for the flat
  metrics {'<evaluator>/<metric>': value}; `counts` holds each metric's number of examples.

  `config` holds `evaluators` and the data settings: `seed`, `image_size`, `num_train`,
  `num_test`, optionally `split` ('test'), `data_dir` and `workdir` (configs/evaluate.py;
  the training loop's `config.probe`).
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh):
    check(config)
    self.config, self.mesh = config, mesh
    self._shared = {'data': {}, 'fns': {}}
    self.counts: dict[str, int] = {}

  def context(self, encoder, out_dir: str | None = None) -> Context:
    return Context(encoder, self.config, self.mesh, out_dir, self._shared)

  def evaluate(self, ctx: Context, name: str) -> Result:
    """One evaluator on the context's encoder; records its metrics' example counts."""
    ctx.counts = {}
    metrics, images = EVALUATORS[name](ctx, self.config.evaluators[name])
    self.counts.update({f'{name}/{k}': n for k, n in ctx.counts.items()})
    return metrics, images

  def __call__(self, encoder, names=None) -> dict[str, float]:
    ctx = self.context(encoder)
    out = {}
    for name in self.config.evaluators if names is None else names:
      metrics, _ = self.evaluate(ctx, name)
      out.update({f'{name}/{k}': v for k, v in metrics.items()})
    return out


def run(encoder: encoder_api.Encoder, config: ml_collections.ConfigDict, mesh,
        out_root: str) -> dict[str, dict[str, float]]:
  """Runs every evaluator named in `config.evaluators`; writes JSON, Markdown and PNGs
  under `out_root/step_<N>/` and TensorBoard events under `out_root`.

  Each evaluator's results are written as soon as it finishes (its JSON, and `results.md`
  with every evaluator so far); one that crashes is logged with its traceback and marked
  in `results.md`, the others still run, and the run then raises naming the failures.
  """
  from clu import metric_writers
  suite = Suite(config, mesh)
  step = int(encoder.info.get('step', 0))
  out_dir = os.path.join(out_root, f'step_{step}')
  os.makedirs(out_dir, exist_ok=True)
  ctx = suite.context(encoder, out_dir)
  writer = metric_writers.create_default_writer(out_root,
                                                just_logging=jax.process_index() > 0)
  results, seconds, failed = {}, {}, {}
  for n, (name, cfg) in enumerate(config.evaluators.items(), 1):
    logging.info('Evaluator %d of %d: %s ...', n, len(config.evaluators), name)
    start = time.perf_counter()
    try:
      metrics, images = suite.evaluate(ctx, name)
    except errors.UserError:
      raise
    except Exception as e:  # A bug in one evaluator: keep the others' results.
      logging.exception('Evaluator %s failed', name)
      failed[name] = f'{type(e).__name__}: {e}'
      metrics, images = {}, {}
    seconds[name] = time.perf_counter() - start
    logging.info('Evaluator %s done in %.0f s', name, seconds[name])
    if name in failed:
      _write_results(out_dir, results, seconds, failed, encoder.info)
      continue
    results[name] = metrics
    with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
      json.dump({'metrics': metrics, 'counts': dict(ctx.counts), 'seconds': seconds[name],
                 'config': cfg.to_dict(), 'encoder': encoder.info}, f, indent=1, default=float)
    writer.write_scalars(step, {f'{name}/{k}': v for k, v in metrics.items()})
    images = {k: v for k, v in images.items() if v is not None}
    if images:
      writer.write_images(step, {f'{name}/{k}': v[None] for k, v in images.items()})
    writer.flush()
    _write_results(out_dir, results, seconds, failed, encoder.info)
  if failed:
    raise RuntimeError(f'evaluators {sorted(failed)} failed (tracebacks above; the others\' '
                       f'results are in {out_dir}): {failed}')
  return results


def _write_results(out_dir: str, results: dict, seconds: dict, failed: dict,
                   info: dict) -> None:
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write(markdown(results, seconds, info, failed))


def markdown(results: dict, seconds: dict, info: dict, failed: dict | None = None) -> str:
  lines = [f'# Evaluation of {info.get("source", "?")} at step {info.get("step", "?")}', '',
           '| evaluator | metric | value |', '| --- | --- | --- |']
  for name, metrics in results.items():
    for k, v in metrics.items():
      lines.append(f'| {name} | {k} | {v:.4f} |')
  for name, error in (failed or {}).items():
    lines.append(f'| {name} | FAILED | {error[:200]} |')
  lines += ['', '| evaluator | wall time (s) |', '| --- | --- |']
  lines += [f'| {name} | {s:.1f} |' for name, s in seconds.items()]
  return '\n'.join(lines) + '\n'
