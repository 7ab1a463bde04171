"""The pictures researchers look at: training curves, t-SNE, nearest neighbours, attention.

`training_curves` plots the scalars a run wrote to TensorBoard (losses, learning rate,
probe accuracies with their standard errors against the encoder at initialisation and the
colour histogram); `tsne_plot` embeds features coloured by video and by class (Gordon et
al., VINCE Figure 4); `neighbour_grid` shows each query's cosine nearest neighbours, at
most one per video (VINCE Figure 3); `attention_figure` shows images above their VITO
saliency overlays (Parthasarathy et al., VITO Figure B.1); `segmentation_figure` shows
frames beside their true object masks and their k-means segments (Hénaff et al., Odin,
the talk's "k-means segmentation of CNN features" figure: image | human-annotated |
clusters). Every function writes a PNG and returns the same picture as an RGB uint8 array
[H, W, 3], ready for a TensorBoard image summary.
"""

from __future__ import annotations

import io
import json
import os
import re
import textwrap

import matplotlib

matplotlib.use('Agg')  # Headless: figures are only ever written to files.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from vivi.evaluate import knn, tables  # noqa: E402

DPI = 120


def _finish(fig, out_png: str) -> np.ndarray:
  """Writes the figure and returns exactly the pixels written (PNG and array agree)."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=DPI, facecolor='white')
  plt.close(fig)
  data = buf.getvalue()
  if os.path.dirname(out_png):
    os.makedirs(os.path.dirname(out_png), exist_ok=True)
  with open(out_png, 'wb') as f:
    f.write(data)
  return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


def _finish_pictures(fig, axes, title: str, fontsize: float, out_png: str) -> np.ndarray:
  """`_finish` for a grid of images: no ticks (pictures, not plots), the title above."""
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title, fontsize=fontsize)
  fig.tight_layout()
  return _finish(fig, out_png)


# ---------------------------------------------------------------------------------------
# Training curves.


def _event_files(workdir: str) -> list[str]:
  import tensorflow as tf  # Lazy: TF takes seconds to import and only this reader needs it.
  files = tf.io.gfile.glob(os.path.join(workdir, 'events.out.tfevents.*'))

  # A resumed run opens a new file; its creation time is in the name, so sorting by it
  # replays the writes in order and later values overwrite earlier ones.
  def created(path):
    m = re.match(r'events\.out\.tfevents\.(\d+)', os.path.basename(path))
    return (int(m.group(1)) if m else 0, path)
  return sorted(files, key=created)


def read_scalars(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{tag: (steps, values)} of every scalar in the workdir's event files, sorted by step.

  A step written twice (a run resumed from an earlier checkpoint repeats steps) keeps the
  value written last.
  """
  import tensorflow as tf
  from tensorflow.core.util import event_pb2
  by_tag: dict[str, dict[int, float]] = {}
  for path in _event_files(workdir):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for v in event.summary.value:
        if v.WhichOneof('value') == 'simple_value':
          value = v.simple_value
        elif (v.WhichOneof('value') == 'tensor'
              and v.metadata.plugin_data.plugin_name == 'scalars'):  # Not hparams, images.
          value = float(np.asarray(tf.make_ndarray(v.tensor)).reshape(()))
        else:
          continue
        by_tag.setdefault(v.tag, {})[int(event.step)] = value
  out = {}
  for tag, points in by_tag.items():
    steps = np.array(sorted(points), np.int64)
    out[tag] = (steps, np.array([points[s] for s in steps], np.float64))
  return out


def _maybe_log(ax, values: np.ndarray) -> None:
  # Losses and warmup/decay schedules span decades; a linear axis flattens the late part.
  positive = values[np.isfinite(values) & (values > 0)]
  if len(positive) == len(values) and len(values) > 1 and positive.max() > 20 * positive.min():
    ax.set_yscale('log')


def _read_json(path: str) -> dict:
  """The JSON object in `path`, or {} where there is none (a run still training has no
  probe_results.json yet)."""
  import tensorflow as tf
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def probe_references(workdir: str, scalars: dict) -> dict[str, dict[str, float]]:
  """What the probe panels draw besides the trained encoder's points, each {metric: value}
  ('linear_probe/synthetic/class/pre_logits': ...) and holding only the metrics known:

    'init'              the encoder at initialisation: the 'probe_init/<metric>' scalar,
                        else the workdir's probe_init.json, else probe_results.json's 'init';
    'color_histogram'   the colour-histogram baseline of probe_results.json (written at the
                        end of training; evaluators that need a network have none);
    'counts'            each metric's number of held-out examples, from probe_results.json,
                        for the standard errors (none while the run is still training).
  """
  results = _read_json(os.path.join(workdir, tables.PROBE_RESULTS_FILE))
  init = {**results.get('init', {}),
          **_read_json(os.path.join(workdir, tables.INIT_PROBE_FILE))}
  init.update({t.split('/', 1)[1]: v[-1] for t, (_, v) in scalars.items()
               if t.startswith('probe_init/')})
  return {'init': init,
          'color_histogram': results.get('reference', {}).get('color_histogram', {}),
          'counts': results.get('counts', {})}


def _wrap(text: str, width: int) -> str:
  """`text` in lines of at most `width` characters, broken at spaces and after a '/'."""
  lines = textwrap.wrap(text.replace('/', '/ '), width)  # A space: a break point.
  return '\n'.join(line.replace('/ ', '/') for line in lines)


def probe_titles(metrics: list[str], width: int = 34) -> dict[str, str]:
  """{metric: panel title}: the part that tells an evaluator's metrics apart ('orientation'
  of 'linear_probe/synthetic/orientation/pre_logits'), then the evaluator with the parts
  its metrics share ('linear_probe synthetic/*/pre_logits'), each wrapped to `width`
  characters, so that the titles of neighbouring panels never run into each other."""
  groups: dict[str, list[list[str]]] = {}
  for m in metrics:
    evaluator, _, rest = m.partition('/')
    groups.setdefault(evaluator, []).append(rest.split('/') if rest else [])
  titles = {}
  for evaluator, names in groups.items():
    # A part is shared when every metric of the evaluator has it, at the same place.
    same_shape = len(names) > 1 and len({len(n) for n in names}) == 1
    shared = [same_shape and len({n[i] for n in names}) == 1 for i in range(len(names[0]))]
    for parts in names:
      own = '/'.join(p for p, s in zip(parts, shared) if not s) if same_shape else '/'.join(parts)
      context = '/'.join(p if s else '*' for p, s in zip(parts, shared)) if any(shared) else ''
      if own:
        lines = [_wrap(own.replace('_', ' '), width), _wrap(f'{evaluator} {context}', width + 6)]
      else:  # A metric named by its evaluator alone.
        lines = [_wrap(evaluator.replace('_', ' '), width)]
      titles['/'.join([evaluator] + parts)] = '\n'.join(lines)
  return titles


def _probe_panel(ax, metric: str, scalars: dict, references: dict) -> None:
  """The trained encoder's probe points over steps, with standard errors where the example
  counts are known, and the encoder at initialisation and the colour histogram as
  horizontal lines where they are known. The errors are binomial, as in the final table:
  exact for the linear probes' accuracies, rough for object_nn's shares and object
  discovery's (see evaluators.object_discovery_eval)."""
  n = references['counts'].get(metric)
  if f'probe/{metric}' in scalars:
    steps, values = scalars[f'probe/{metric}']
    # The ± the final table prints (tables.format_table), so picture and table agree.
    errors = None if n is None else np.array([tables.standard_error(v, n) for v in values])
    label = f'trained {values[-1]:.3f}' + ('' if errors is None else f' ± {errors[-1]:.3f}')
    ax.errorbar(steps, values, yerr=errors, marker='o', ms=4, lw=1.5, capsize=3, label=label)
  if metric in references['init']:
    init = references['init'][metric]
    ax.axhline(init, ls='--', color='gray', label=f'at init {init:.3f}')
  if metric in references['color_histogram']:
    hist = references['color_histogram'][metric]
    ax.axhline(hist, ls=':', color='tab:red', label=f'colour histogram {hist:.3f}')
  handles, labels = ax.get_legend_handles_labels()
  first = sorted(range(len(labels)), key=lambda i: not labels[i].startswith('trained'))
  ax.legend([handles[i] for i in first], [labels[i] for i in first], fontsize=6.5, loc='best',
            framealpha=0.8)
  evaluator = metric.split('/', 1)[0]
  ax.set_ylabel('accuracy' if evaluator in ('linear_probe', 'knn') else 'score', fontsize=8)


def training_curves_figure(workdir: str):
  """The figure `training_curves` writes, left open (for tests to inspect its axes): a grid
  of panels, the total loss, each '<objective>/loss', the learning rate, then one panel per
  probe metric (see `_probe_panel`), all on one step axis; each panel's label (`get_label`)
  is its scalar's tag ('probe/<metric>' for the probes)."""
  scalars = read_scalars(workdir)
  references = probe_references(workdir, scalars)
  objectives = sorted(t for t in scalars if t.endswith('/loss') and not t.startswith('probe'))
  metrics = sorted({t.split('/', 1)[1] for t in scalars if t.startswith(('probe/', 'probe_init/'))}
                   | set(references['init']))
  titles = probe_titles(metrics)
  panels = [('loss', 'total loss')] + [(t, _wrap(t, 30)) for t in objectives]
  panels += [('learning_rate', 'learning rate')]
  panels = [(tag, title) for tag, title in panels if tag in scalars]
  panels += [(f'probe/{m}', titles[m]) for m in metrics]
  if not panels:
    raise ValueError(f'no scalars to plot in {workdir}')
  cols = min(4, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows + 0.4), squeeze=False,
                           layout='constrained')
  last_step = max([1] + [int(steps[-1]) for steps, _ in scalars.values()])
  for ax, (tag, title) in zip(axes.flat, panels):
    ax.set_label(tag)  # Not drawn: names the panel for whoever inspects the figure.
    if tag.startswith('probe/'):
      _probe_panel(ax, tag.split('/', 1)[1], scalars, references)
    else:
      steps, values = scalars[tag]
      ax.plot(steps, values, marker='o' if len(steps) < 10 else None, ms=4, lw=1.5)
      _maybe_log(ax, values)
      ax.set_ylabel('loss' if 'loss' in tag else title, fontsize=8)
    # One step axis for every panel, so probes line up with the losses under them.
    ax.set_xlim(0, last_step * 1.03)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('step', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  for ax in axes.flat[len(panels):]:
    ax.axis('off')
  fig.suptitle(f'Training curves: {os.path.basename(os.path.normpath(workdir))}', fontsize=12)
  return fig


def training_curves(workdir: str, out_png: str) -> np.ndarray:
  """`training_curves_figure` of the workdir, written to `out_png`."""
  return _finish(training_curves_figure(workdir), out_png)


# ---------------------------------------------------------------------------------------
# t-SNE and nearest neighbours.


def tsne_plot(features, video_ids, classes, out_png: str, class_names=None,
              seed: int = 0) -> np.ndarray:
  """t-SNE of [N, D] features coloured by video and, if given, by class (VINCE Fig. 4)."""
  from sklearn.manifold import TSNE  # Lazy: only this figure needs scikit-learn.
  from threadpoolctl import threadpool_limits
  features = np.asarray(features, np.float32)
  n = len(features)
  if n < 4:
    raise ValueError(f't-SNE needs at least 4 points, got {n}')
  tsne = TSNE(perplexity=min(30.0, (n - 1) / 3), init='pca', random_state=seed)
  # One OpenMP thread: the Barnes-Hut step's threads spin-wait, which made a 300-point
  # embedding 7x slower on a busy host (training, input pipeline) than one thread.
  with threadpool_limits(1, user_api='openmp'):
    emb = tsne.fit_transform(features)
  _, video_index = np.unique(np.asarray(video_ids), return_inverse=True)
  num_panels = 1 if classes is None else 2
  fig, axes = plt.subplots(1, num_panels, figsize=(5.5 * num_panels + 1.5, 5), squeeze=False)
  ax = axes[0, 0]
  # Many videos: a cyclic colour map keeps neighbouring ids distinct; no legend (too many).
  ax.scatter(emb[:, 0], emb[:, 1], c=video_index % 20, cmap='tab20', vmin=0, vmax=19, s=12)
  ax.set_title(f'coloured by video ({video_index.max() + 1} videos)', fontsize=11)
  if classes is not None:
    ax = axes[0, 1]
    classes = np.asarray(classes)
    cmap = plt.get_cmap('tab10' if len(np.unique(classes)) <= 10 else 'tab20')
    for i, c in enumerate(np.unique(classes)):
      name = class_names[c] if class_names is not None else str(c)
      ax.scatter(*emb[classes == c].T, color=cmap(i % cmap.N), s=12, label=name)
    ax.set_title('coloured by class', fontsize=11)
    ax.legend(fontsize=8, loc='center left', bbox_to_anchor=(1.0, 0.5), markerscale=1.5)
  return _finish_pictures(fig, axes, f't-SNE of {n} features (dim {features.shape[1]})', 12,
                          out_png)


def nearest_neighbours(query_features, gallery_features, k: int, gallery_video_ids=None,
                       one_per_video: bool = True, query_video_ids=None
                       ) -> tuple[np.ndarray, np.ndarray]:
  """([Q, k] gallery indices, [Q, k] cosine similarities), best first; -1/nan pad.

  With video ids, at most one neighbour per video (VINCE Fig. 3: otherwise the frames of
  one video fill the row), and with `query_video_ids` the query's own video is skipped.
  """
  sims = knn.l2_normalize(query_features) @ knn.l2_normalize(gallery_features).T
  vids = None if gallery_video_ids is None else np.asarray(gallery_video_ids)
  indices = np.full((len(sims), k), -1, np.int64)
  values = np.full((len(sims), k), np.nan)
  for q, row in enumerate(sims):
    order = np.argsort(-row, kind='stable')
    if vids is not None and query_video_ids is not None:
      order = order[vids[order] != np.asarray(query_video_ids)[q]]
    if vids is not None and one_per_video:
      _, first = np.unique(vids[order], return_index=True)  # Best item of each video.
      order = order[np.sort(first)]
    order = order[:k]
    indices[q, :len(order)] = order
    values[q, :len(order)] = row[order]
  return indices, values


def neighbour_grid(query_images, gallery_images, query_features, gallery_features,
                   out_png: str, k: int = 5, gallery_video_ids=None, one_per_video: bool = True,
                   query_video_ids=None) -> np.ndarray:
  """A row per query: the query, then its k cosine nearest gallery images (VINCE Fig. 3)."""
  indices, sims = nearest_neighbours(query_features, gallery_features, k, gallery_video_ids,
                                     one_per_video, query_video_ids)
  rows = len(indices)
  fig, axes = plt.subplots(rows, k + 1, figsize=(1.5 * (k + 1), 1.65 * rows + 0.4),
                           squeeze=False)
  for q in range(rows):
    axes[q, 0].imshow(query_images[q])
    axes[q, 0].set_title('query', fontsize=9, fontweight='bold')
    for j in range(k):
      ax = axes[q, j + 1]
      if indices[q, j] >= 0:  # Fewer candidates than k leave the tail of the row blank.
        ax.imshow(gallery_images[indices[q, j]])
        ax.set_title(f'cos {sims[q, j]:.3f}', fontsize=8)
  for side in ('top', 'bottom', 'left', 'right'):  # A frame sets the query column apart.
    for ax in axes[:, 0]:
      ax.spines[side].set(color='tab:red', linewidth=2)
  rule = ', at most one per video' if gallery_video_ids is not None and one_per_video else ''
  if gallery_video_ids is not None and query_video_ids is not None:
    rule += ", none from the query's video"
  return _finish_pictures(fig, axes, f'{k} cosine nearest neighbours{rule}', 11, out_png)


# ---------------------------------------------------------------------------------------
# Attention.


def attention_figure(images, saliency_maps, out_png: str) -> np.ndarray:
  """Images (top) above their saliency overlays (bottom), as VITO Figure B.1."""
  from vivi.evaluate import attention_maps  # Lazy: it imports the whole model.
  images = np.asarray(images)
  overlays = attention_maps.overlay(images, np.asarray(saliency_maps))
  n = len(images)
  fig, axes = plt.subplots(2, n, figsize=(max(1.8 * n, 4.5), 4.0), squeeze=False)
  for i in range(n):
    axes[0, i].imshow(images[i])
    axes[1, i].imshow(overlays[i])
  axes[0, 0].set_ylabel('image', fontsize=10)
  axes[1, 0].set_ylabel('attention', fontsize=10)
  return _finish_pictures(fig, axes, 'VITO attention pooling\n(the overlay dims what it ignores)',
                          10, out_png)


# ---------------------------------------------------------------------------------------
# Object discovery.


def segmentation_figure(images, masks, segments, out_png: str, overlaps=None,
                        title: str = 'k-means of the feature map') -> np.ndarray:
  """A row per image: the image | its true object masks [m, H, W] (one colour per object,
  background black) | its k-means segments [H, W] (one colour per cluster), as the Odin
  talk's figure; `overlaps` (one list of best IoUs per image) titles the segments."""
  n = len(images)
  fig, axes = plt.subplots(n, 3, figsize=(5.4, 1.8 * n + 0.5), squeeze=False)
  palette = plt.get_cmap('tab10')(np.arange(10))[:, :3]
  for i in range(n):
    truth = np.zeros(images[i].shape, np.float64)     # Black background.
    for j, mask in enumerate(masks[i]):
      truth[mask] = palette[j % 10]
    axes[i, 0].imshow(images[i])
    axes[i, 1].imshow(truth, interpolation='nearest')
    axes[i, 2].imshow(palette[np.asarray(segments[i]) % 10], interpolation='nearest')
    if overlaps is not None and len(overlaps[i]):
      best = ' '.join(f'{v:.2f}' for v in overlaps[i])
      axes[i, 2].set_title(f'best IoU {best}', fontsize=7)
  for ax, column in zip(axes[0], ('image', 'true masks', 'k-means clusters')):
    ax.set_title(column + (f'\n{ax.get_title()}' if ax.get_title() else ''), fontsize=9)
  return _finish_pictures(fig, axes, f'Object discovery: {title}', 10, out_png)
