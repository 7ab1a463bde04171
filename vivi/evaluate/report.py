"""Where an evaluation's results go: under `<out_root>/step_<N>/` one JSON per evaluator
(metrics, example counts, wall time, options, the encoder's provenance), `results.md` (every
evaluator so far as a Markdown table, failures marked, wall times) and the pictures'
PNGs (written by the evaluators themselves); metrics and pictures also to TensorBoard
(`<out_root>`). Each evaluator's results are written as soon as it finishes."""

from __future__ import annotations

import json
import os

import jax
import numpy as np


class Report:
  """The results of one evaluation of one encoder at one step."""

  def __init__(self, out_root: str, info: dict):
    from clu import metric_writers
    self.info, self.step = info, int(info.get('step', 0))
    self.out_dir = os.path.join(out_root, f'step_{self.step}')
    os.makedirs(self.out_dir, exist_ok=True)
    self.writer = metric_writers.create_default_writer(out_root,
                                                       just_logging=jax.process_index() > 0)
    self.results: dict[str, dict[str, float]] = {}
    self.seconds: dict[str, float] = {}
    self.failed: dict[str, str] = {}

  def add(self, name: str, metrics: dict[str, float], images: dict[str, np.ndarray | None],
          counts: dict[str, int], seconds: float, options: dict) -> None:
    """One evaluator's results: its JSON, TensorBoard, and `results.md` rewritten."""
    self.results[name], self.seconds[name] = metrics, seconds
    with open(os.path.join(self.out_dir, f'{name}.json'), 'w') as f:
      json.dump({'metrics': metrics, 'counts': dict(counts), 'seconds': seconds,
                 'config': options, 'encoder': self.info}, f, indent=1, default=float)
    self.writer.write_scalars(self.step, {f'{name}/{k}': v for k, v in metrics.items()})
    images = {k: v for k, v in images.items() if v is not None}
    if images:
      self.writer.write_images(self.step, {f'{name}/{k}': v[None] for k, v in images.items()})
    self.writer.flush()
    self._write_markdown()

  def add_failure(self, name: str, error: str, seconds: float) -> None:
    """An evaluator that crashed (a bug): marked in `results.md`, the others still run."""
    self.failed[name], self.seconds[name] = error, seconds
    self._write_markdown()

  def _write_markdown(self) -> None:
    with open(os.path.join(self.out_dir, 'results.md'), 'w') as f:
      f.write(markdown(self.results, self.seconds, self.info, self.failed))


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
