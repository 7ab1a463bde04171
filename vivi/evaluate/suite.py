"""Evaluators chosen by config: `python evaluate.py` on a checkpoint, and the training loop's
probes (`config.probe`) on the encoder being trained, through the same `Suite`.

`config.evaluators` maps an evaluator name (vivi/evaluate/evaluators.py) to its options;
the rest of `config` is the data settings every evaluator shares: `seed`, `image_size`,
`num_train`, `num_test`, optionally `split` ('test' or 'validation'), `data_dir` and
`workdir` (configs/evaluate.py; the training loop's `config.probe`). A `Suite` keeps its
`data_cache.DataCache` between calls, so the training loop renders the probe's data once;
`run` evaluates one encoder and writes its report (vivi/evaluate/report.py).
"""

from __future__ import annotations

import time

import ml_collections
from absl import logging

from vivi import encoder as encoder_api
from vivi import errors
from vivi.evaluate import data_cache, evaluators, report


def check(config: ml_collections.ConfigDict,
          key: str = '') -> dict[str, ml_collections.FrozenConfigDict]:
  """Evaluator names, their options, datasets and the split, checked before anything is
  rendered; returns each evaluator's options. `key` is where `config` sits in its parent
  ('probe' for a training config)."""
  where = f'config.{key}.' if key else 'config.'
  unknown = set(config.evaluators) - set(evaluators.REGISTRY.names())
  if unknown:
    raise errors.ConfigError(f'unknown evaluators {sorted(unknown)} in {where}evaluators; '
                             f'valid: {sorted(evaluators.REGISTRY.names())}')
  if config.get('split', 'test') not in data_cache.SPLITS:
    raise errors.ConfigError(f'{where}split={config.split!r}; valid: {data_cache.SPLITS}')
  resolved = {}
  for name, given in config.evaluators.items():
    options = evaluators.REGISTRY.options(name, given, f'{where}evaluators.{name}')
    check_values = evaluators.REGISTRY.get(name).check
    try:
      if check_values:
        check_values(options)
    except ValueError as e:
      raise errors.ConfigError(f'{where}evaluators.{name}: {e}') from None
    try:
      unknown_datasets = [d for d in options.get('datasets', ())
                          if not data_cache.known_dataset(d)]
    except ValueError as e:   # An unknown synthetic task.
      raise errors.ConfigError(f'{where}evaluators.{name}.datasets: {e}') from None
    if unknown_datasets:
      raise errors.ConfigError(
          f"{where}evaluators.{name}.datasets: unknown dataset {unknown_datasets[0]!r}; use "
          f"'synthetic/<task>', 'tfds/<name>' or a VTAB task")
    resolved[name] = options
  return resolved


class Suite:
  """The evaluators of `config.evaluators` with the data they read, made once: call it on
  an encoder (an `encoder.Encoder`, or `baselines.ColourHistogram()`) for the flat metrics
  {'<evaluator>/<metric>': value}; `counts` holds each metric's number of examples."""

  def __init__(self, config: ml_collections.ConfigDict, mesh):
    self.options = check(config)
    self.config, self.mesh = config, mesh
    self.cache = data_cache.DataCache(config)
    self.counts: dict[str, int] = {}

  def context(self, encoder, out_dir: str | None = None) -> data_cache.Context:
    return data_cache.Context(encoder, self.cache, self.mesh, out_dir)

  def evaluate(self, ctx: data_cache.Context, name: str) -> evaluators.Result:
    """One evaluator on the context's encoder; records its metrics' example counts."""
    ctx.counts = {}
    metrics, images = evaluators.REGISTRY.get(name).run(ctx, self.options[name])
    self.counts.update({f'{name}/{k}': n for k, n in ctx.counts.items()})
    return metrics, images

  def __call__(self, encoder, names=None) -> dict[str, float]:
    ctx = self.context(encoder)
    out = {}
    for name in evaluators.run_order(self.config.evaluators if names is None else names):
      metrics, _ = self.evaluate(ctx, name)
      out.update({f'{name}/{k}': v for k, v in metrics.items()})
    return out


def run(encoder: encoder_api.Encoder, config: ml_collections.ConfigDict, mesh,
        out_root: str) -> dict[str, dict[str, float]]:
  """Runs every evaluator named in `config.evaluators` and writes the report under
  `out_root` as each finishes. One that crashes is logged with its traceback and marked in
  `results.md`, the others still run, and the run then raises naming the failures."""
  suite = Suite(config, mesh)
  results = report.Report(out_root, encoder.info)
  ctx = suite.context(encoder, results.out_dir)
  for n, name in enumerate(evaluators.run_order(config.evaluators), 1):
    logging.info('Evaluator %d of %d: %s ...', n, len(config.evaluators), name)
    start = time.perf_counter()
    try:
      metrics, images = suite.evaluate(ctx, name)
    except errors.UserError:
      raise
    except Exception as e:  # A bug in one evaluator: keep the others' results.
      logging.exception('Evaluator %s failed', name)
      results.add_failure(name, f'{type(e).__name__}: {e}', time.perf_counter() - start)
      continue
    seconds = time.perf_counter() - start
    logging.info('Evaluator %s done in %.0f s', name, seconds)
    results.add(name, metrics, images, ctx.counts, seconds, suite.options[name].to_dict())
  if results.failed:
    raise RuntimeError(f'evaluators {sorted(results.failed)} failed (tracebacks above; the '
                       f'others\' results are in {results.out_dir}): {results.failed}')
  return results.results
