"""Evaluators chosen by config, run on one restored encoder: `python evaluate.py`.

`config.evaluators` maps an evaluator name (a key of `EVALUATORS`) to its settings; each
evaluator returns flat metrics {name: float} and optionally pictures {name: RGB array}.
`run` writes, under `<workdir>/eval/step_<N>/`, one JSON per evaluator, `results.md` (all
of them as a Markdown table) and the PNGs, and logs metrics and pictures to TensorBoard
(`<workdir>/eval`).

Datasets for the probe and kNN: 'synthetic/<task>' (the synthetic world's held-out tasks)
or 'tfds/<name>' (any TFDS image classification data set prepared under `data_dir`, its
'train' and 'test' splits), resized to `image_size`.
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
from vivi.evaluate import knn, linear_probe, object_nn, retrieval, robustness, vtab, vtab_tasks
from vivi.input import labelled, synthetic_tasks
from vivi.models import video_model

Result = tuple[dict[str, float], dict[str, np.ndarray]]
# What `Context.features` pools: block 4 averaged over its positions is 'pre_logits'.
POOLED_FEATURES = ('pre_logits', 'block1', 'block2', 'block3')


class Context:
  """What every evaluator shares: the encoder, the mesh, the output folder, and a cache of
  datasets and features (the probe and kNN read the same features)."""

  def __init__(self, encoder: checkpoint.Encoder, config: ml_collections.ConfigDict, mesh,
               out_dir: str):
    self.encoder, self.config, self.mesh, self.out_dir = encoder, config, mesh, out_dir
    self._data: dict[str, Any] = {}
    self._features: dict[tuple, np.ndarray] = {}
    self._fns: dict[str, Callable] = {}

  @staticmethod
  def log(message: str) -> None:
    """A progress line (evaluators print one per task, so a long one is never silent)."""
    logging.info('  %s', message)

  def dataset(self, name: str):
    """(train images, train labels, test images, test labels, num classes) of `name`."""
    if name not in self._data:
      c = self.config
      self.log(f'loading {name} ({c.num_train} training and {c.num_test} test images)')
      task = labelled.synthetic_task(name)
      if task is not None:
        tr = synthetic_tasks.render_downstream(task, 'train', c.num_train,
                                               image_size=c.image_size, seed=c.seed)
        te = synthetic_tasks.render_downstream(task, 'test', c.num_test,
                                               image_size=c.image_size, seed=c.seed)
        self._data[name] = (*tr, *te, synthetic_tasks.DOWNSTREAM_TASKS[task])
      elif name.startswith('tfds/'):
        dataset = name.split('/', 1)[1]
        read = lambda split, n, d=dataset: labelled.read_tfds(
            d, split, data_dir=c.data_dir, image_size=c.image_size, limit=n)
        tr, te = read('train', c.num_train), read('test', c.num_test)
        self._data[name] = (*tr[:2], *te)
      elif name in vtab_tasks.TASKS:  # A VTAB-1k task: its 1000 training examples, its test set.
        t = vtab_tasks.load_task(name, data_dir=c.data_dir or None, image_size=c.image_size,
                           num_test=c.num_test)
        self._data[name] = (*t.train800val200, *t.test, t.num_classes)
      else:
        raise ValueError(f"unknown dataset {name!r}: use 'synthetic/<task>' "
                         f"({sorted(synthetic_tasks.DOWNSTREAM_TASKS)}), 'tfds/<name>' or a "
                         f"VTAB task ({sorted(vtab_tasks.TASKS)})")
    return self._data[name]

  def features(self, images: np.ndarray, feature: str = 'pre_logits', key=None) -> np.ndarray:
    """Pooled features [N, C] of uint8 images: 'pre_logits' (block 4 averaged over its
    positions), or an earlier block ('block1'..'block3') averaged the same way. `key`
    caches them."""
    if feature not in POOLED_FEATURES:
      raise errors.ConfigError(
          f'feature {feature!r}: valid {POOLED_FEATURES}; block 4 averaged over its positions '
          f'is pre_logits itself')
    if key is not None and (key, feature) in self._features:
      return self._features[key, feature]
    if feature not in self._fns:
      module = self.encoder.module

      def encode(variables, x):
        out = module.apply(variables, video_model.normalize_images(x), train=False)[feature]
        return out if out.ndim == 2 else jnp.mean(out, axis=(1, 2))

      self._fns[feature] = linear_probe.jit_encoder(encode, self.mesh)
    out = linear_probe.extract_features(self._fns[feature], self.encoder.variables, images,
                                        self.mesh)
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
      out[f'{d}/{f}'] = linear_probe.probe_accuracy(*ctx.split_features(d, f))
      ctx.log(f'{d} {f}: test accuracy {out[f"{d}/{f}"]:.4f}')
  return out, {}


def knn_eval(ctx: Context, cfg) -> Result:
  out = {}
  for d in cfg.datasets:
    for f in cfg.features:
      out[f'{d}/{f}'] = knn.knn_accuracy(*ctx.split_features(d, f), k=cfg.k,
                                         temperature=cfg.temperature)
      ctx.log(f'{d} {f}: test accuracy {out[f"{d}/{f}"]:.4f}')
  return out, {}


def vtab_eval(ctx: Context, cfg) -> Result:
  tasks = [t for spec in cfg.tasks for t in vtab_tasks.task_names(spec)]
  out = vtab.run_suite(ctx.encoder.module, ctx.encoder.variables, tasks,
                       data_dir=ctx.config.data_dir or None, image_size=ctx.config.image_size,
                       data_seed=ctx.config.seed, step_scale=cfg.step_scale,
                       num_runs=cfg.num_runs, batch_size=cfg.batch_size, seed=ctx.config.seed,
                       mesh=ctx.mesh, log=ctx.log)
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
  nn_eval = object_nn.ObjectNearestNeighbour(
      ctx.encoder.module, ctx.mesh, num_videos=cfg.num_videos,
      frames_per_video=cfg.frames_per_video, image_size=ctx.config.image_size,
      seed=ctx.config.seed)
  return {'same_class_fraction': nn_eval(ctx.encoder.variables)}, {}


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
  if ctx.config.workdir:
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
  if ctx.config.workdir and 'vito' in ctx.encoder.info.get('objectives', []):
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
}


def run(encoder: checkpoint.Encoder, config: ml_collections.ConfigDict, mesh,
        out_root: str) -> dict[str, dict[str, float]]:
  """Runs every evaluator named in `config.evaluators`; writes JSON, Markdown and PNGs
  under `out_root/step_<N>/` and TensorBoard events under `out_root`.

  Each evaluator's results are written as soon as it finishes (its JSON, and `results.md`
  with every evaluator so far); one that crashes is logged with its traceback and marked
  in `results.md`, the others still run, and the run then raises naming the failures.
  """
  from clu import metric_writers
  unknown = set(config.evaluators) - set(EVALUATORS)
  if unknown:
    raise errors.ConfigError(f'unknown evaluators {sorted(unknown)} in config.evaluators; '
                             f'valid: {sorted(EVALUATORS)}')
  step = int(encoder.info.get('step', 0))
  out_dir = os.path.join(out_root, f'step_{step}')
  os.makedirs(out_dir, exist_ok=True)
  ctx = Context(encoder, config, mesh, out_dir)
  writer = metric_writers.create_default_writer(out_root,
                                                just_logging=jax.process_index() > 0)
  results, seconds, failed = {}, {}, {}
  for n, (name, cfg) in enumerate(config.evaluators.items(), 1):
    logging.info('Evaluator %d of %d: %s ...', n, len(config.evaluators), name)
    start = time.perf_counter()
    try:
      metrics, images = EVALUATORS[name](ctx, cfg)
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
      json.dump({'metrics': metrics, 'seconds': seconds[name], 'config': cfg.to_dict(),
                 'encoder': encoder.info}, f, indent=1, default=float)
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
