r"""The VTAB-1k transfer protocol (Zhai et al. 2019, arXiv:1910.04867v1), as VIVI uses it.

VIVI (section 4, "Downstream evaluation") evaluates on the 19 tasks of VTAB version 1 in
three groups (natural, specialized, structured), each with 1000 labelled training images.
Per task (Romijnders et al. section 4 spell the sweep out):
  1. fine-tune the whole network plus a new linear head on the 800-example train split,
     for each of 4 settings: learning rate {0.1, 0.01} x schedule {10k steps with a 10x
     decay every 3k, 2.5k steps with a 10x decay every 750} (`SWEEP`);
  2. pick the setting with the best accuracy on the 200-example validation split;
  3. retrain with it on all 1000 (train800 + val200) and report test accuracy;
  4. repeat independently (VIVI: 3 times) and report the median test accuracy.
VTAB's score is the mean over the 19 tasks; the group scores are the means within groups.

This module holds:
  * the task definitions and their data: `vtab_tasks.py`;
  * `protocol`: steps 1-4 given any `train_and_eval(train, evaluation, setting, seed) ->
    accuracy` (so it is testable with a stub); `run_task` plugs in `finetune.py`;
    `run_suite` runs several tasks and averages per group.

Run it as the evaluation suite's `vtab` evaluator (configs/evaluate.py documents the keys
and what to expect):

  python evaluate.py --config=configs/evaluate.py:vtab_tiny --random_init
  python evaluate.py --config=configs/evaluate.py:vtab --encoder=/path/to/exported_encoder \
      --config.data_dir=/path/to/tensorflow_datasets
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vivi.evaluate.vtab_tasks import GROUPS, TaskData, load_task

LEARNING_RATES = (0.1, 0.01)
SCHEDULES = ((10_000, 3_000), (2_500, 750))  # (steps, decay every): VTAB's two schedules.


# ---------------------------------------------------------------------------------------
# The sweep.

@dataclasses.dataclass(frozen=True)
class Setting:
  """One point of the sweep: SGD's initial learning rate, steps, and the interval of its
  10x decays."""
  learning_rate: float
  steps: int
  decay_every: int

  def scaled(self, step_scale: float) -> Setting:
    """Steps and decay interval times `step_scale`, rounded half up, at least 1."""
    scale = lambda n: max(1, int(math.floor(n * step_scale + 0.5)))
    return Setting(self.learning_rate, scale(self.steps), scale(self.decay_every))

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


SWEEP = tuple(Setting(lr, steps, decay) for lr in LEARNING_RATES for steps, decay in SCHEDULES)


def scaled_sweep(sweep: Sequence[Setting] = SWEEP, step_scale: float = 1.0) -> tuple:
  if step_scale <= 0:
    raise ValueError(f'step_scale must be > 0, got {step_scale}')
  return tuple(Setting(*s).scaled(step_scale) if not isinstance(s, Setting)
               else s.scaled(step_scale) for s in sweep)


# ---------------------------------------------------------------------------------------
# The protocol.

TrainAndEval = Callable[[tuple, tuple, Setting, int], float]


def _seed(*parts: int) -> int:
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


def _select(task_data: TaskData, train_and_eval: TrainAndEval, sweep: Sequence[Setting],
            run_seed: int) -> tuple[Setting, list[dict]]:
  """Fine-tunes on train800 with every setting, evaluates on val200; the best setting
  (ties: the first in sweep order) and every validation accuracy."""
  validation, best, best_acc = [], None, -math.inf
  for i, setting in enumerate(sweep):
    acc = float(train_and_eval(task_data.train800, task_data.val200, setting,
                               _seed(run_seed, i)))
    validation.append({**setting.as_dict(), 'accuracy': acc})
    if acc > best_acc:
      best, best_acc = setting, acc
  return best, validation


def protocol(task_data: TaskData, train_and_eval: TrainAndEval, *,
             sweep: Sequence[Setting] = SWEEP, step_scale: float = 1.0, num_runs: int = 3,
             seed: int = 0, sweep_once: bool = False, log: Callable[[str], Any] | None = None
             ) -> dict:
  """VTAB-1k on one task with any trainer (module docstring, steps 1-4).

  train_and_eval(train, evaluation, setting, seed) -> accuracy: fine-tunes on `train`
    (images, labels) with `setting`, returns the accuracy on `evaluation`.
  sweep: the settings (VTAB's `SWEEP`); steps and decay intervals are multiplied by
    `step_scale` (at least 1 step).
  num_runs: independent runs (run r uses seed + r); each repeats the whole protocol
    (sweep, selection, retraining), as Romijnders et al. count "independent runs of the
    transfer protocol". With `sweep_once`, the sweep runs once (run 0's seed) and only
    the retraining repeats.

  Returns a dict:
    'task', 'num_classes', 'sweep' (the scaled settings),
    'test_accuracy': median over runs (mean of the middle two for an even count),
    'test_accuracies': per run,
    'chosen': per run, the chosen setting,
    'runs': per run {'seed', 'validation': [{setting..., 'accuracy'}] in sweep order,
      'chosen', 'test_accuracy', 'train_examples'}.
  """
  if num_runs < 1:
    raise ValueError(f'num_runs must be >= 1, got {num_runs}')
  sweep = scaled_sweep(sweep, step_scale)
  if not sweep:
    raise ValueError('the sweep is empty')
  log = log or (lambda msg: None)
  retrain = task_data.train800val200
  runs, shared = [], None
  for r in range(num_runs):
    run_seed = seed + r
    if sweep_once and shared is not None:
      chosen, validation = shared
    else:
      chosen, validation = _select(task_data, train_and_eval, sweep, run_seed)
      shared = (chosen, validation)
      for v in validation:
        log(f'{task_data.name} run {r}: lr {v["learning_rate"]} steps {v["steps"]} decay '
            f'every {v["decay_every"]}: val200 accuracy {v["accuracy"]:.4f}')
    test_acc = float(train_and_eval(retrain, task_data.test, chosen,
                                    _seed(run_seed, len(sweep))))
    log(f'{task_data.name} run {r}: chose {chosen.as_dict()}, test accuracy {test_acc:.4f}')
    runs.append({'seed': run_seed, 'validation': validation, 'chosen': chosen.as_dict(),
                 'test_accuracy': test_acc, 'train_examples': int(len(retrain[1]))})
  tests = [run['test_accuracy'] for run in runs]
  return {'task': task_data.name, 'num_classes': task_data.num_classes,
          'sweep': [s.as_dict() for s in sweep], 'test_accuracy': float(np.median(tests)),
          'test_accuracies': tests, 'chosen': [run['chosen'] for run in runs], 'runs': runs}


def finetune_train_and_eval(encoder, variables, num_classes: int, *, batch_size: int = 512,
                            mesh=None, augment: str = 'none',
                            recalibrate_batch_stats: bool = False) -> TrainAndEval:
  """The protocol's trainer: `finetune.finetune` from (encoder, variables) each time, then
  `finetune.accuracy`."""
  from vivi.evaluate import finetune

  def train_and_eval(train, evaluation, setting: Setting, seed: int) -> float:
    fitted = finetune.finetune(
        encoder, variables, train[0], train[1], num_classes,
        learning_rate=setting.learning_rate, steps=setting.steps,
        decay_every=setting.decay_every, batch_size=batch_size, seed=seed, mesh=mesh,
        augment=augment, recalibrate_batch_stats=recalibrate_batch_stats)
    return finetune.accuracy(encoder, fitted, evaluation[0], evaluation[1], mesh=mesh,
                             batch_size=min(batch_size, 256))

  return train_and_eval


def run_task(encoder, variables, task_data: TaskData, *, sweep: Sequence[Setting] = SWEEP,
             step_scale: float = 1.0, num_runs: int = 3, seed: int = 0, mesh=None,
             batch_size: int = 512, augment: str | None = None,
             recalibrate_batch_stats: bool = False, sweep_once: bool = False,
             train_and_eval: TrainAndEval | None = None,
             log: Callable[[str], Any] | None = print) -> dict:
  """VTAB-1k on one task by fine-tuning `encoder` from `variables` (see `protocol` for the
  result). augment: None is the task's own label-preserving default (`TaskData.augment`);
  'none' is VTAB's (no augmentation). `train_and_eval` replaces fine-tuning (tests)."""
  augment = task_data.augment if augment is None else augment
  if train_and_eval is None:
    train_and_eval = finetune_train_and_eval(
        encoder, variables, task_data.num_classes, batch_size=batch_size, mesh=mesh,
        augment=augment, recalibrate_batch_stats=recalibrate_batch_stats)
  result = protocol(task_data, train_and_eval, sweep=sweep, step_scale=step_scale,
                    num_runs=num_runs, seed=seed, sweep_once=sweep_once, log=log)
  result.update(group=task_data.group, augment=augment)
  return result


def group_means(results: Mapping[str, dict]) -> dict:
  """Mean test accuracy per group present, and 'mean' over all tasks (VTAB's score: the
  mean over tasks, not over group means)."""
  out = {}
  groups = list(GROUPS) + sorted({r.get('group', '') for r in results.values()} - set(GROUPS))
  for group in groups:
    accs = [r['test_accuracy'] for r in results.values() if r.get('group', '') == group]
    if accs and group:
      out[group] = float(np.mean(accs))
  if results:
    out['mean'] = float(np.mean([r['test_accuracy'] for r in results.values()]))
  return out


def run_suite(encoder, variables, tasks: Sequence[str | TaskData], *,
              data_dir: str | None = None, image_size: int = 224,
              num_test: int | None = None, data_seed: int = 0,
              log: Callable[[str], Any] | None = print, **run_task_kwargs) -> dict:
  """`run_task` on every task (names are loaded with `load_task`, one at a time).

  Returns {'tasks': {name: run_task's result}, 'natural', 'specialized', 'structured'
  (and 'synthetic') for the groups present: mean test accuracy, 'mean': over all tasks}.
  """
  results = {}
  for task in tasks:
    data = task if isinstance(task, TaskData) else load_task(
        task, data_dir=data_dir, image_size=image_size, num_test=num_test, seed=data_seed)
    results[data.name] = run_task(encoder, variables, data, log=log, **run_task_kwargs)
    if log:
      log(f'{data.name}: median test accuracy {results[data.name]["test_accuracy"]:.4f}')
  return {'tasks': results, **group_means(results)}
