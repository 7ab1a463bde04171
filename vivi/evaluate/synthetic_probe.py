"""Linear probes of the frozen encoder on the synthetic world's held-out tasks.

The training loop runs this on the encoder at initialisation and every
`config.probe.every_steps`, so every run reports what its representation is worth. Task
images are rendered once (deterministically from `config.probe.seed`), features are the
pooled representation ('pre_logits') with BatchNorm in inference mode. It also reports the
object nearest-neighbour diagnostic of Romijnders et al. Table 2 ('object_nn', `object_nn.py`).

Every result carries the number of examples it was measured on (`counts`), so a table can
show its binomial standard error sqrt(p (1 - p) / n). `reference()` gives the colour-histogram
baseline (`baselines.py`): the same probe on features with colour and no shape.

`split='test'` (training runs) fits each probe on the task's training images and scores it on
its test images. `split='validation'` never renders the test images: it fits on the first
3/4 of the training images and scores on the last 1/4, for choosing hyper-parameters
(benchmarks/learning.py) without looking at the test split.
"""

from __future__ import annotations

import math

import ml_collections
from absl import logging

from vivi.evaluate import baselines, linear_probe, object_nn
from vivi.input import synthetic_tasks
from vivi.models import video_model

SPLITS = ('test', 'validation')


def standard_error(accuracy: float, n: int) -> float:
  """Binomial standard error of an accuracy measured on n independent examples."""
  return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1))


class SyntheticProbe:

  def __init__(self, config: ml_collections.ConfigDict, model, mesh, split: str = 'test'):
    if split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    p = config.probe
    self.mesh = mesh
    self.tasks, self.counts = {}, {}
    for task in p.tasks:
      logging.info('  rendering probe task %s (%d + %d images) ...', task, p.num_train,
                   p.num_test if split == 'test' else 0)
      x, y = synthetic_tasks.render_downstream(task, 'train', p.num_train,
                                               image_size=p.image_size, seed=p.seed)
      if split == 'test':
        train = (x, y)
        test = synthetic_tasks.render_downstream(task, 'test', p.num_test,
                                                 image_size=p.image_size, seed=p.seed)
      else:
        cut = p.num_train * 3 // 4
        train, test = (x[:cut], y[:cut]), (x[cut:], y[cut:])
      self.tasks[task] = (train, test, synthetic_tasks.DOWNSTREAM_TASKS[task])
      self.counts[task] = len(test[1])
    encode = lambda variables, images: model.apply(
        variables, images, method=video_model.VideoModel.encode)['pre_logits']
    self.encode = linear_probe.jit_encoder(encode, mesh)
    self.object_nn = None
    if p.nn_videos:  # 0 (and no tasks) turns the probe off: quick runs, tests.
      logging.info('  rendering %d held-out videos for the object nearest neighbours ...',
                   p.nn_videos)
      self.object_nn = object_nn.ObjectNearestNeighbour(
          model.encoder, mesh, num_videos=p.nn_videos, frames_per_video=p.nn_frames_per_video,
          image_size=p.image_size, seed=p.seed + (0 if split == 'test' else 1))
      self.counts['object_nn'] = int(self.object_nn.data['valid'].sum())
    self._reference = None

  def __call__(self, state) -> dict[str, float]:
    """Accuracy of each task's probe on its evaluation images, and the 'object_nn'
    fraction."""
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    results = {}
    for task, ((x_tr, y_tr), (x_te, y_te), num_classes) in self.tasks.items():
      f_tr = linear_probe.extract_features(self.encode, variables, x_tr, self.mesh)
      f_te = linear_probe.extract_features(self.encode, variables, x_te, self.mesh)
      results[task] = linear_probe.probe_accuracy(f_tr, y_tr, f_te, y_te, num_classes)
      # A line per task: a pass over every task takes about a minute on 2 CPU cores.
      logging.info('  probe %s: %.3f', task, results[task])
    if self.object_nn is not None:
      results['object_nn'] = self.object_nn(
          {'params': state.params['encoder'], 'batch_stats': state.batch_stats.get('encoder', {})})
      logging.info('  probe object_nn: %.3f', results['object_nn'])
    return results

  def reference(self) -> dict[str, dict[str, float]]:
    """{'color_histogram': {task: accuracy}}: the same probes on colour histograms (no
    learning, no shape); computed once."""
    if self._reference is None:
      hist = {}
      for task, ((x_tr, y_tr), (x_te, y_te), num_classes) in self.tasks.items():
        hist[task] = linear_probe.probe_accuracy(
            baselines.color_histogram(x_tr), y_tr, baselines.color_histogram(x_te), y_te,
            num_classes)
      self._reference = {'color_histogram': hist}
    return self._reference


def format_table(columns: dict[str, dict[str, float]], counts: dict[str, int],
                 gain: tuple[str, str] | None = None) -> str:
  """A plain-text table, one row per task, one column per encoder, each value with its
  standard error; `gain=(a, b)` adds a column a - b, marked * beyond three standard errors
  of the difference (independent errors: sqrt(se_a^2 + se_b^2))."""
  tasks = [t for t in counts if any(t in c for c in columns.values())]
  head = f'  {"":<12}' + ''.join(f'{name:>18}' for name in columns)
  if gain:
    head += f'{gain[0] + " - " + gain[1]:>22}'
  lines = [head]
  for task in tasks:
    n = counts[task]
    row = f'  {task:<12}'
    for values in columns.values():
      v = values.get(task)
      row += f'{"–":>18}' if v is None else f'{f"{v:.3f} ± {standard_error(v, n):.3f}":>18}'
    if gain:
      a, b = columns[gain[0]].get(task), columns[gain[1]].get(task)
      if a is None or b is None:
        row += f'{"–":>22}'
      else:
        se = math.hypot(standard_error(a, n), standard_error(b, n))
        mark = ' *' if a - b > 3 * se else '  '
        row += f'{f"{a - b:+.3f} ± {se:.3f}{mark}":>22}'
    lines.append(row)
  return '\n'.join(lines)
