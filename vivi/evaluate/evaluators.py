"""The evaluators a config names in `evaluators` (`configs/evaluate.py`; the training loop's
`config.probe.evaluators`), each with its options and their defaults.

An evaluator is `run(ctx, options) -> (metrics {name: float}, pictures {name: RGB array})`
on a `data_cache.Context`; it records each metric's number of examples with `ctx.count`.
Its options are its `defaults` completed by the config's entry, and a key it does not take
is an error listing the ones it does (vivi/registry.py); `check` validates their values
before anything is rendered.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vivi import checkpoint, objectives, registry
from vivi.evaluate import (
  data_cache,
  discovery,
  knn,
  linear_probe,
  object_nn,
  retrieval,
  robustness,
  vtab,
  vtab_tasks,
)
from vivi.input import synthetic_tasks

Result = tuple[dict[str, float], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Evaluator:
  run: Callable[[data_cache.Context, Any], Result]
  defaults: Mapping[str, Any]
  check: Callable[[Any], None] | None = None   # Raises ValueError naming a bad value.
  # Runs before the others of its suite: it makes what they read (imagenet_linear: the
  # classifier the robustness evaluators score). A config's evaluators are otherwise in
  # ConfigDict's (sorted) order.
  first: bool = False


def run_order(names) -> list[str]:
  """`names` with the evaluators marked `first` ahead, the order kept otherwise."""
  return sorted(names, key=lambda name: not REGISTRY.get(name).first)


def _accuracies(ctx: data_cache.Context, options, score: Callable) -> Result:
  """`score(features...)` of every dataset x feature: the linear probe's and kNN's loop."""
  out = {}
  for d in options.datasets:
    for f in options.features:
      data = ctx.split_features(d, f)
      out[f'{d}/{f}'] = score(*data)
      ctx.count(f'{d}/{f}', len(data[3]))
      ctx.log(f'{d} {f}: {ctx.split} accuracy {out[f"{d}/{f}"]:.4f}')
  return out, {}


def linear_probe_eval(ctx: data_cache.Context, options) -> Result:
  """A linear classifier on frozen pooled features (linear_probe.py)."""
  return _accuracies(ctx, options, linear_probe.probe_accuracy)


def knn_eval(ctx: data_cache.Context, options) -> Result:
  """Weighted k-nearest-neighbour classification on frozen pooled features (knn.py)."""
  return _accuracies(ctx, options, lambda *data: knn.knn_accuracy(
      *data, k=options.k, temperature=options.temperature))


def vtab_eval(ctx: data_cache.Context, options) -> Result:
  """The VTAB-1k protocol (vtab.py): fine-tuning sweep (`learning_rates` x `schedules`,
  (steps, decay every)), selection on val200 (`selection` 'per_task', or 'per_model': one
  setting for all tasks, the best mean over them, as VIVI section 4 does), retraining on
  1000, median of `num_runs`; `augment` 'none' or '' (each task's label-preserving
  default), `num_test` 0: the whole test split. Writes every run to vtab_runs.json."""
  tasks = [t for spec in options.tasks for t in vtab_tasks.task_names(spec)]
  sweep = [vtab.Setting(lr, steps, decay) for lr in options.learning_rates
           for steps, decay in options.schedules]
  out = vtab.run_suite(ctx.encoder.module, ctx.encoder.variables, tasks,
                       data_dir=ctx.config.get('data_dir') or None,
                       image_size=ctx.config.image_size, num_test=options.num_test or None,
                       data_seed=ctx.config.seed, sweep=sweep, step_scale=options.step_scale,
                       num_runs=options.num_runs, batch_size=options.batch_size,
                       seed=ctx.config.seed, mesh=ctx.mesh, log=ctx.log,
                       augment=options.augment or None,
                       recalibrate_batch_stats=options.recalibrate_batch_stats,
                       sweep_once=options.sweep_once, selection=options.selection)
  with open(os.path.join(ctx.out_dir, 'vtab_runs.json'), 'w') as f:
    json.dump(out, f, indent=1, default=float)
  metrics = {t: r['test_accuracy'] for t, r in out['tasks'].items()}
  # VTAB's score ('mean', over tasks) and the group means ('mean/natural', ...).
  metrics.update({g if g == 'mean' else f'mean/{g}': v for g, v in out.items()
                  if g not in ('tasks', 'selection', 'model_selection')})
  return metrics, {}


def pm_k_eval(ctx: data_cache.Context, options) -> Result:
  """A linear probe fitted on the synthetic 'class' task labels every frame of held-out
  video sequences (label: the class covering most of the frame); pm-k per k."""
  x_tr, y_tr, _, _, classes = ctx.split_features('synthetic/class', 'pre_logits')
  probe = linear_probe.fit_probe(x_tr, y_tr, classes)
  frames, labels = robustness.synthetic_sequences(
      options.num_videos, options.frames_per_video, image_size=ctx.config.image_size,
      seed=ctx.config.seed)
  n, t = labels.shape
  predictions = probe.predict(ctx.features(frames.reshape((n * t,) + frames.shape[2:])))
  predictions = predictions.reshape(n, t)
  metrics = {}
  for k in options.ks:
    r = robustness.pm_k(list(predictions), list(labels), k)
    metrics.update({f'pm{k}/anchor_accuracy': r['anchor_accuracy'],
                    f'pm{k}/pm_k_accuracy': r['pm_k_accuracy'], f'pm{k}/drop': r['drop']})
  return metrics, {}


def _held_out_seed(ctx: data_cache.Context) -> int:
  """The held-out videos of the test split; validation scores on other ones."""
  return ctx.config.seed + (0 if ctx.split == 'test' else 1)


def object_nn_eval(ctx: data_cache.Context, options) -> Result:
  """The object nearest-neighbour fraction (object_nn.py; Romijnders et al., Table 2)."""
  if not options.num_videos or ctx.is_histogram:
    return {}, {}   # Off (num_videos=0); a histogram has no box features.
  seed = _held_out_seed(ctx)

  def make():
    ctx.log(f'rendering {options.num_videos} held-out videos for the object nearest neighbours')
    return object_nn.ObjectNearestNeighbour(
        ctx.encoder.module, ctx.mesh, num_videos=options.num_videos,
        frames_per_video=options.frames_per_video, image_size=ctx.config.image_size,
        seed=seed)

  nn_eval = ctx.cache.get(('object_nn', options.num_videos, options.frames_per_video, seed,
                           ctx.encoder.module), make)
  metrics = nn_eval(ctx.encoder.variables)
  for name in metrics:
    ctx.count(name, int(nn_eval.data['valid'].sum()))
  return metrics, {}


def object_discovery_eval(ctx: data_cache.Context, options) -> Result:
  """Odin's object discovery (discovery.py): k-means segments of a feature map of held-out
  frames against their true object masks; ABO and object recovery over the objects, and
  with an output folder a picture of a few frames (image | true masks | clusters)."""
  if not options.num_videos or ctx.is_histogram:
    return {}, {}   # Off (num_videos=0); a histogram has no feature map.
  frames, _, _, truth = ctx.cache.held_out_frames(
      options.num_videos, options.frames_per_video, _held_out_seed(ctx), return_truth=True)
  kw = {k: options[k] for k in ('feature', 'upsample', 'num_clusters', 'num_iterations')}
  segment = ctx.cache.get(('object_discovery', ctx.encoder.module, *kw.values()),
                          lambda: discovery.segmenter(ctx.encoder.module, ctx.mesh, **kw))
  cells = linear_probe.extract_features(segment, ctx.encoder.variables, frames, ctx.mesh)
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
      frames, masks, segments, options, os.path.join(ctx.out_dir, 'object_discovery.png'))}


def retrieval_eval(ctx: data_cache.Context, options) -> Result:
  """Frame-to-video retrieval on held-out videos (retrieval.py): recall at each of `ks`."""
  frames, videos, _ = ctx.cache.held_out_frames(options.num_videos, options.frames_per_video)
  feats = ctx.features(frames, key=('held_out', options.num_videos, options.frames_per_video))
  return retrieval.frame_to_video_recall(feats, videos, ks=tuple(options.ks)), {}


def pictures_eval(ctx: data_cache.Context, options) -> Result:
  """Training curves (with a workdir), t-SNE and nearest neighbours of held-out frames, and
  the attention maps of an objective that pools with attention (VITO, Figure B.1)."""
  from vivi.evaluate import pictures
  out = lambda name: os.path.join(ctx.out_dir, name + '.png')
  images = {}
  if ctx.config.get('workdir'):
    images['training_curves'] = pictures.training_curves(ctx.config.workdir,
                                                         out('training_curves'))
  frames, videos, classes = ctx.cache.held_out_frames(options.num_videos,
                                                      options.frames_per_video)
  feats = ctx.features(frames, key=('held_out', options.num_videos, options.frames_per_video))
  images['tsne'] = pictures.tsne_plot(feats, videos, classes, out('tsne'),
                                      class_names=list(synthetic_tasks.world.CLASS_NAMES))
  queries = np.arange(0, len(frames), len(frames) // options.num_queries)[:options.num_queries]
  images['neighbours'] = pictures.neighbour_grid(
      frames[queries], frames, feats[queries], feats, out('neighbours'), k=options.k,
      gallery_video_ids=videos, query_video_ids=videos[queries])
  if ctx.config.get('workdir') and _may_attend(ctx.encoder.info.get('objectives', [])):
    images['attention'] = _attention(ctx, frames[queries], out('attention'))
  return {}, images


def _may_attend(names: list[str]) -> bool:
  """Whether one of a run's objectives can pool with attention (before restoring its state)."""
  return any(n in objectives.REGISTRY and objectives.get(n).has_attention for n in names)


def _attention(ctx: data_cache.Context, images: np.ndarray, out_png: str) -> np.ndarray | None:
  """The attention masks over frames, when the run's objective had attention pooling on."""
  from vivi.evaluate import attention_maps, pictures
  state, config, _ = checkpoint.restore_training(ctx.config.workdir, ctx.encoder.info['step'],
                                                 ctx.mesh)
  if attention_maps.attending_objective(config) is None:
    return None
  masks = attention_maps.attention_masks(
      config, {'params': state['params'], 'batch_stats': state['batch_stats']}, images)
  return pictures.attention_figure(images, attention_maps.saliency(masks, images.shape[1]),
                                   out_png)


_HELD_OUT = dict(num_videos=40, frames_per_video=8)   # Held-out frames across shots.
REGISTRY: registry.Registry[Evaluator] = registry.Registry('evaluator', 'evaluators', {
    'linear_probe': Evaluator(linear_probe_eval, dict(datasets=(), features=('pre_logits',))),
    'knn': Evaluator(knn_eval, dict(datasets=(), features=('pre_logits',), k=20,
                                    temperature=0.07)),
    'vtab': Evaluator(vtab_eval, dict(
        tasks=('vtab',), step_scale=1.0, num_runs=3, batch_size=512,
        learning_rates=vtab.LEARNING_RATES, schedules=vtab.SCHEDULES, augment='none',
        recalibrate_batch_stats=False, sweep_once=False, num_test=0, selection='per_task'),
        lambda options: vtab.check_selection(options.selection, 'selection')),
    'pm_k': Evaluator(pm_k_eval, dict(ks=(1, 4), num_videos=40, frames_per_video=12)),
    'object_nn': Evaluator(object_nn_eval, dict(_HELD_OUT)),
    'object_discovery': Evaluator(object_discovery_eval, discovery.DEFAULTS, discovery.check),
    'retrieval': Evaluator(retrieval_eval, dict(ks=(1, 5), **_HELD_OUT)),
    'pictures': Evaluator(pictures_eval, dict(num_queries=6, k=5, **_HELD_OUT)),
    # The papers' evaluations on real datasets (TFDS under data_dir, or official releases'
    # folders), imported on first use.
    'imagenet_linear': 'vivi.evaluate.imagenet_transfer:LINEAR',
    'video_robustness': 'vivi.evaluate.video_robustness:VIDEO_ROBUSTNESS',
    'shape_bias': 'vivi.evaluate.shape_bias:SHAPE_BIAS',
    'imagenet_variants': 'vivi.evaluate.imagenet_robustness:VARIANTS',
    'imagenet_c': 'vivi.evaluate.imagenet_robustness:CORRUPTIONS',
    'objectnet': 'vivi.evaluate.imagenet_robustness:OBJECTNET',
    'semantic_segmentation': 'vivi.evaluate.segmentation:SEGMENTATION',
    'coco_discovery': 'vivi.evaluate.coco_discovery:COCO_DISCOVERY',
})
