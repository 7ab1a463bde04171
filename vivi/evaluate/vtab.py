r"""The VTAB-1k transfer protocol (Zhai et al. 2019, arXiv:1910.04867v1), as VIVI uses it.

VIVI (section 4, "Downstream evaluation") evaluates on the 19 tasks of VTAB version 1 in
three groups (natural, specialized, structured), each with 1000 labelled training images.
Per task (Romijnders et al. section 4.2 spell the sweep out):
  1. fine-tune the whole network plus a new linear head on the 800-example train split,
     for each of 4 settings: learning rate {0.1, 0.01} x schedule {10k steps with a 10x
     decay every 3k, 2.5k steps with a 10x decay every 750} (`SWEEP`);
  2. pick the setting with the best accuracy on the 200-example validation split: per task
     (Romijnders et al. section 4.2, `selection='per_task'`), or, as VIVI does ("we choose
     the models that had the best validation accuracy when averaged over these 19 tasks"),
     one setting per model, the best in mean validation accuracy over all the tasks
     (`selection='per_model'`);
  3. retrain with it on all 1000 (train800 + val200) and report test accuracy;
  4. repeat independently (VIVI: 3 times) and report the median test accuracy.
VTAB's score is the mean over the 19 tasks; the group scores are the means within groups.

This module holds:
  * the task definitions and their data: `vtab_tasks.py`;
  * `protocol`: steps 1-4 given any `train_and_eval(train, evaluation, setting, seed) ->
    accuracy` (so it is testable with a stub), built of `sweep_runs` (step 1), `choose`
    (step 2) and its retraining loop (steps 3-4); `run_task` plugs in `finetune.py`;
    `run_suite` runs several tasks, selecting per task or per model, and averages per
    group.

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

from vivi import errors
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


def _sweep_run(task_data: TaskData, train_and_eval: TrainAndEval, sweep: Sequence[Setting],
               run_seed: int) -> list[dict]:
  """Step 1 of one run: fine-tunes on train800 with every setting and evaluates on val200;
  [{setting..., 'accuracy'}] in sweep order (fine-tuning i uses seed (run_seed, i))."""
  return [{**setting.as_dict(), 'accuracy': float(train_and_eval(
      task_data.train800, task_data.val200, setting, _seed(run_seed, i)))}
          for i, setting in enumerate(sweep)]


def choose(validation: Sequence[dict], sweep: Sequence[Setting]) -> Setting:
  """Step 2: the setting of `sweep` with the best validation 'accuracy' (`validation` in
  sweep order, as `_sweep_run` or `mean_validation` give it); ties go to the first."""
  best, best_acc = None, -math.inf
  for setting, v in zip(sweep, validation, strict=True):
    if v['accuracy'] > best_acc:
      best, best_acc = setting, v['accuracy']
  return best


def mean_validation(per_task: Sequence[Sequence[dict]]) -> list[dict]:
  """Per setting, the mean validation accuracy over tasks (`per_task`: one task's
  validation of one run each, in sweep order): what VIVI's per-model selection ranks
  (VIVI section 4, "Downstream evaluation": the setting "that had the best validation
  accuracy when averaged over these 19 tasks")."""
  if not per_task:
    raise ValueError('no tasks to average the validation accuracies over')
  return [{**{k: v for k, v in per_task[0][i].items() if k != 'accuracy'},
           'accuracy': float(np.mean([task[i]['accuracy'] for task in per_task]))}
          for i in range(len(per_task[0]))]


def _log_validation(log, name: str, r: int, validation: Sequence[dict], what: str) -> None:
  for v in validation:
    log(f'{name} run {r}: lr {v["learning_rate"]} steps {v["steps"]} decay every '
        f'{v["decay_every"]}: {what} {v["accuracy"]:.4f}')


def _prepare(sweep: Sequence[Setting], step_scale: float, num_runs: int) -> tuple:
  if num_runs < 1:
    raise ValueError(f'num_runs must be >= 1, got {num_runs}')
  sweep = scaled_sweep(sweep, step_scale)
  if not sweep:
    raise ValueError('the sweep is empty')
  return sweep


def sweep_runs(task_data: TaskData, train_and_eval: TrainAndEval, *,
               sweep: Sequence[Setting] = SWEEP, step_scale: float = 1.0, num_runs: int = 3,
               seed: int = 0, sweep_once: bool = False,
               log: Callable[[str], Any] | None = None) -> list[list[dict]]:
  """Step 1 of every run (run r: seed + r; with `sweep_once`, run 0's sweep for all): per
  run, the validation accuracies in sweep order. `protocol` takes them back as
  `validation`, which is how per-model selection sweeps every task before choosing."""
  sweep = _prepare(sweep, step_scale, num_runs)
  log = log or (lambda msg: None)
  out = []
  for r in range(num_runs):
    if sweep_once and out:
      out.append(out[0])
      continue
    out.append(_sweep_run(task_data, train_and_eval, sweep, seed + r))
    _log_validation(log, task_data.name, r, out[-1], 'val200 accuracy')
  return out


def protocol(task_data: TaskData, train_and_eval: TrainAndEval, *,
             sweep: Sequence[Setting] = SWEEP, step_scale: float = 1.0, num_runs: int = 3,
             seed: int = 0, sweep_once: bool = False, log: Callable[[str], Any] | None = None,
             validation: Sequence[Sequence[dict]] | None = None,
             chosen: Sequence[Setting] | None = None) -> dict:
  """VTAB-1k on one task with any trainer (module docstring, steps 1-4).

  train_and_eval(train, evaluation, setting, seed) -> accuracy: fine-tunes on `train`
    (images, labels) with `setting`, returns the accuracy on `evaluation`.
  sweep: the settings (VTAB's `SWEEP`); steps and decay intervals are multiplied by
    `step_scale` (at least 1 step).
  num_runs: independent runs (run r uses seed + r); each repeats the whole protocol
    (sweep, selection, retraining), as Romijnders et al. count "independent runs of the
    transfer protocol". With `sweep_once`, the sweep runs once (run 0's seed) and only
    the retraining repeats.
  validation: per run, step 1's result already computed by `sweep_runs` with the same
    arguments (then nothing is swept here); chosen: per run, the setting to retrain with
    instead of this task's best (per-model selection, `run_suite`). Without them every
    run sweeps, chooses on this task's val200 and retrains in turn.

  Returns a dict:
    'task', 'num_classes', 'sweep' (the scaled settings),
    'test_accuracy': median over runs (mean of the middle two for an even count),
    'test_accuracies': per run,
    'chosen': per run, the chosen setting,
    'runs': per run {'seed', 'validation': [{setting..., 'accuracy'}] in sweep order,
      'chosen', 'test_accuracy', 'train_examples'}.
  """
  sweep = _prepare(sweep, step_scale, num_runs)
  for what, given in (('validation', validation), ('chosen', chosen)):
    if given is not None and len(given) != num_runs:
      raise ValueError(f'{what} has {len(given)} runs, num_runs is {num_runs}')
  log = log or (lambda msg: None)
  retrain = task_data.train800val200
  runs = []
  for r in range(num_runs):
    run_seed = seed + r
    if validation is not None:
      run_validation = list(validation[r])
    elif sweep_once and runs:
      run_validation = runs[0]['validation']
    else:
      run_validation = _sweep_run(task_data, train_and_eval, sweep, run_seed)
      _log_validation(log, task_data.name, r, run_validation, 'val200 accuracy')
    run_chosen = choose(run_validation, sweep) if chosen is None else chosen[r]
    test_acc = float(train_and_eval(retrain, task_data.test, run_chosen,
                                    _seed(run_seed, len(sweep))))
    log(f'{task_data.name} run {r}: chose {run_chosen.as_dict()}, test accuracy '
        f'{test_acc:.4f}')
    runs.append({'seed': run_seed, 'validation': run_validation,
                 'chosen': run_chosen.as_dict(), 'test_accuracy': test_acc,
                 'train_examples': int(len(retrain[1]))})
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


def _trainer(encoder, variables, task_data: TaskData, *, mesh, batch_size: int,
             augment: str | None, recalibrate_batch_stats: bool,
             train_and_eval: TrainAndEval | None) -> tuple[str, TrainAndEval]:
  """The task's augmentation (None: its own default) and its trainer."""
  augment = task_data.augment if augment is None else augment
  if train_and_eval is None:
    train_and_eval = finetune_train_and_eval(
        encoder, variables, task_data.num_classes, batch_size=batch_size, mesh=mesh,
        augment=augment, recalibrate_batch_stats=recalibrate_batch_stats)
  return augment, train_and_eval


def run_task(encoder, variables, task_data: TaskData, *, sweep: Sequence[Setting] = SWEEP,
             step_scale: float = 1.0, num_runs: int = 3, seed: int = 0, mesh=None,
             batch_size: int = 512, augment: str | None = None,
             recalibrate_batch_stats: bool = False, sweep_once: bool = False,
             train_and_eval: TrainAndEval | None = None,
             log: Callable[[str], Any] | None = print,
             validation: Sequence[Sequence[dict]] | None = None,
             chosen: Sequence[Setting] | None = None) -> dict:
  """VTAB-1k on one task by fine-tuning `encoder` from `variables` (see `protocol` for the
  result, `validation` and `chosen`). augment: None is the task's own label-preserving
  default (`TaskData.augment`); 'none' is VTAB's (no augmentation). `train_and_eval`
  replaces fine-tuning (tests)."""
  augment, train_and_eval = _trainer(
      encoder, variables, task_data, mesh=mesh, batch_size=batch_size, augment=augment,
      recalibrate_batch_stats=recalibrate_batch_stats, train_and_eval=train_and_eval)
  result = protocol(task_data, train_and_eval, sweep=sweep, step_scale=step_scale,
                    num_runs=num_runs, seed=seed, sweep_once=sweep_once, log=log,
                    validation=validation, chosen=chosen)
  result.update(group=task_data.group, augment=augment)
  return result


def sweep_task(encoder, variables, task_data: TaskData, *, sweep: Sequence[Setting] = SWEEP,
               step_scale: float = 1.0, num_runs: int = 3, seed: int = 0, mesh=None,
               batch_size: int = 512, augment: str | None = None,
               recalibrate_batch_stats: bool = False, sweep_once: bool = False,
               train_and_eval: TrainAndEval | None = None,
               log: Callable[[str], Any] | None = print) -> list[list[dict]]:
  """Step 1 alone of `run_task` (the same arguments): per run, the val200 accuracies of
  every setting in sweep order (`sweep_runs`)."""
  _, train_and_eval = _trainer(
      encoder, variables, task_data, mesh=mesh, batch_size=batch_size, augment=augment,
      recalibrate_batch_stats=recalibrate_batch_stats, train_and_eval=train_and_eval)
  return sweep_runs(task_data, train_and_eval, sweep=sweep, step_scale=step_scale,
                    num_runs=num_runs, seed=seed, sweep_once=sweep_once, log=log)


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


SELECTIONS = ('per_task', 'per_model')


def check_selection(selection: str, where: str = 'selection') -> None:
  """A ConfigError naming `where` unless `selection` is one of `SELECTIONS`."""
  if selection not in SELECTIONS:
    raise errors.ConfigError(f'{where}={selection!r}; valid: '
                             f'{", ".join(repr(s) for s in SELECTIONS)}')


def run_suite(encoder, variables, tasks: Sequence[str | TaskData], *,
              data_dir: str | None = None, image_size: int = 224,
              num_test: int | None = None, data_seed: int = 0,
              log: Callable[[str], Any] | None = print, selection: str = 'per_task',
              **run_task_kwargs) -> dict:
  """`run_task` on every task (names are loaded with `load_task`, one at a time).

  selection: where step 2 chooses the setting.
    'per_task': on each task's own val200 (Romijnders et al. section 4.2: "for each
      dataset ... pick the learning rate and learning rate schedule according to the
      highest validation accuracy on the 200 validation samples").
    'per_model': one setting for all tasks (VIVI section 4, "Downstream evaluation": "we
      choose the models that had the best validation accuracy when averaged over these 19
      tasks"): every task is swept first (`sweep_task`), then per run r the setting with
      the best mean val200 accuracy over the tasks (ties: the first in sweep order) is
      retrained on every task's train800 + val200 and scored on its test split. The sweep
      and the retraining use the seeds `per_task` uses, so both see the same validation
      accuracies. Task names are loaded twice (sweep, retraining) rather than all held in
      memory at once.

  Returns {'tasks': {name: run_task's result}, 'natural', 'specialized', 'structured'
  (and 'synthetic') for the groups present: mean test accuracy, 'mean': over all tasks};
  with 'per_model' also 'selection': 'per_model' and 'model_selection': per run
  {'chosen': the setting, 'mean_validation': [{setting..., 'accuracy': mean val200
  accuracy over the tasks}] in sweep order}.
  """
  check_selection(selection)
  load = lambda task: task if isinstance(task, TaskData) else load_task(
      task, data_dir=data_dir, image_size=image_size, num_test=num_test, seed=data_seed)
  model_selection, chosen, validation = None, None, {}
  if selection == 'per_model':
    for task in tasks:
      data = load(task)
      validation[data.name] = sweep_task(encoder, variables, data, log=log, **run_task_kwargs)
    sweep = scaled_sweep(run_task_kwargs.get('sweep', SWEEP),
                         run_task_kwargs.get('step_scale', 1.0))
    num_runs = len(next(iter(validation.values()))) if validation else 0
    model_selection = []
    for r in range(num_runs):
      means = mean_validation([v[r] for v in validation.values()])
      model_selection.append({'chosen': choose(means, sweep).as_dict(),
                              'mean_validation': means})
      if log:
        _log_validation(log, 'all tasks', r, means, 'mean val200 accuracy')
        log(f'all tasks run {r}: chose {model_selection[-1]["chosen"]}')
    chosen = [Setting(**m['chosen']) for m in model_selection]
  results = {}
  for task in tasks:
    data = load(task)
    results[data.name] = run_task(encoder, variables, data, log=log,
                                  validation=validation.get(data.name), chosen=chosen,
                                  **run_task_kwargs)
    if log:
      log(f'{data.name}: median test accuracy {results[data.name]["test_accuracy"]:.4f}')
  out = {'tasks': results, **group_means(results)}
  if model_selection is not None:
    out.update(selection=selection, model_selection=model_selection)
  return out
