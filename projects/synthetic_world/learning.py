r"""Does each method learn? Every tiny config, the same budget, one world seed, one table.

  python -m projects.synthetic_world.learning --world_seed=0       # all rows, ~2-3 h on 2 cores
  python -m projects.synthetic_world.learning --world_seed=1 --out=/tmp/world1.md
  python -m projects.synthetic_world.learning --sweep              # the learning-rate rule
  python -m projects.synthetic_world.learning --runs=vivi,vivi_obj  # some rows only
  python -m projects.synthetic_world.learning --seeds=0,1,2         # 3 training seeds per row

Each row is the README's main command for one tiny config (`python main.py
--config=configs/<file>.py:<variant>`), run as its own process with the world seed set
(`--config.data.synthetic.seed`), timed from start to exit (world build on first use,
compilation, training and the probes included). Every config has the same budget: the
images through the online encoder per step and the steps of configs/common.py (tiny). The
rows: the encoder at initialisation, the colour-histogram baseline (no learning, no shape),
each method and the papers' ablations, and the supervised ceiling (configs/supervised.py).
Columns: the linear probes of the world's held-out tasks, the object nearest-neighbour
fraction and object discovery's average best overlap (Odin; its binomial error bounds that
of a mean of IoUs), each ± its binomial standard error (with several `--seeds`: the mean
over the training seeds, the standard error also counting their spread), and the wall
time. Then the papers' claims, each "holds" when the difference is beyond two standard
errors of the difference, "does not hold" when it is beyond two in the other direction,
"within noise" otherwise.

`--sweep` runs each method's tiny config with its learning rate at 0.25, 1 and 4 times
the tiny runs' AdamW learning rate (configs/common.py: TINY_LEARNING_RATE,
TINY_LR_MULTIPLIERS) and the probe's validation split (held-out training images; the test
split is never rendered), and prints the multiplier with the best validation `class`
accuracy: the rule every tiny config follows (its TINY_LR_MULTIPLIER).

Runs whose workdir already holds results are not run again (delete the folder to redo one):
an interrupted benchmark continues where it stopped. The kept runs are in
projects/synthetic_world/records (its README says how to add to them), and
`python -m projects.synthetic_world.render` renders their tables into the results document.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

from configs import common
from projects.synthetic_world import ROOT
from vivi.evaluate import tables

RESULTS = 'probe_results.json'   # What a finished run leaves in its workdir (main.py writes it).

# Row name: (config file, variant). The order is the table's.
RUNS = {
    'vivi': ('VIVI', 'vivi', 'tiny'),
    'vivi_obj': ('VIVI + objects (Ours)', 'vivi_obj', 'tiny'),
    'also_ce': ('  also predict cross-entropy', 'vivi_obj', 'tiny,also_ce'),
    'ce_only': ('  cross-entropy only', 'vivi_obj', 'tiny,ce_only'),
    'random_boxes': ('  boxes at random coordinates', 'vivi_obj', 'tiny,random_boxes'),
    'random_labels': ('  boxes and labels at random', 'vivi_obj', 'tiny,random_labels'),
    'distill': ('  distilling a classifier', 'vivi_obj', 'tiny,distill'),
    'object_only': ('  only the object level', 'vivi_obj', 'tiny,object_only'),
    'vince': ('VINCE (multi-frame multi-pair)', 'vince', 'tiny'),
    'vince_same_frame': ('  same frame', 'vince', 'tiny,same_frame'),
    'vince_multi_frame': ('  multi-frame', 'vince', 'tiny,multi_frame'),
    'vito': ('VITO', 'vito', 'tiny'),
    'vito_no_attention': ('  no attention', 'vito', 'tiny,no_attention'),
    'vito_single_scale': ('  single-scale attention', 'vito', 'tiny,single_scale'),
    'vito_average_pooling': ('  single-scale average pooling', 'vito', 'tiny,average_pooling'),
    'vito_delta': ('  delta sampling (fixed spacing)', 'vito', 'tiny,delta'),
    'vito_uniform': ('  uniform sampling (one view per chunk)', 'vito', 'tiny,uniform'),
    'detcon': ('DetCon (FH masks)', 'detcon', 'tiny'),
    # MoCLR is DetCon_B's objective on whole images (configs/moclr.py): DetCon's ablation.
    'moclr': ('MoCLR (DetCon on whole images)', 'moclr', 'tiny'),
    'odin': ('Odin (discovered masks)', 'odin', 'tiny'),
    'supervised': ('supervised (labels of class)', 'supervised', 'tiny'),
}
# The methods whose learning rate the sweep sets; their ablations inherit it. Distillation is
# swept as a method of its own: it trains VIVI with a classifier's soft labels and none of
# the object level (no boxes), so neither VIVI's multiplier nor the object level's is its.
SWEPT = ('vivi', 'vivi_obj', 'distill', 'vince', 'vito', 'detcon', 'odin', 'moclr',
         'supervised')
MULTIPLIERS = common.TINY_LR_MULTIPLIERS
# Column: the probe metric it shows (configs/common.py: config.probe).
COLUMNS = {**{t: f'linear_probe/synthetic/{t}/pre_logits' for t in common.PROBE_TASKS},
           'object_nn': 'object_nn/same_class_fraction',
           # The same with the neighbour from another video (vivi/evaluate/object_nn.py).
           'object_nn_other': 'object_nn/same_class_fraction_other_videos',
           'object_discovery': 'object_discovery/abo'}
# (claim, paper, row a, row b, column): "a beats b on column".
CLAIMS = (
    ('object level beats VIVI on class', 'Romijnders et al. Table 2', 'vivi_obj', 'vivi',
     'class'),
    ('object level beats VIVI on the NN same-class fraction', 'Romijnders et al. Table 2',
     'vivi_obj', 'vivi', 'object_nn'),
    ('... with the neighbour from another video', 'Romijnders et al. Table 2', 'vivi_obj',
     'vivi', 'object_nn_other'),
    ('Ours beats VIVI', 'Romijnders et al. Table 1', 'vivi_obj', 'vivi', 'class'),
    ('also cross-entropy beats VIVI', 'Romijnders et al. Table 1', 'also_ce', 'vivi',
     'class'),
    ('cross-entropy only beats VIVI', 'Romijnders et al. Table 1', 'ce_only', 'vivi',
     'class'),
    # Ablation 4 (section 5.1) compares the two cross-entropy rows with Ours: adding the
    # box classifier helps (VTAB 64.9 vs 64.1), replacing the triplet loss by it does not
    # (63.7 vs 64.1, "the advantage of the contrastive formulation").
    ('also cross-entropy beats Ours', 'Romijnders et al. 5.1, ablation 4 (64.9 vs 64.1)',
     'also_ce', 'vivi_obj', 'class'),
    ('Ours beats cross-entropy only', 'Romijnders et al. 5.1, ablation 4 (64.1 vs 63.7)',
     'vivi_obj', 'ce_only', 'class'),
    ('Ours beats random boxes', 'Romijnders et al. Table 1', 'vivi_obj', 'random_boxes',
     'class'),
    ('Ours beats random boxes and labels', 'Romijnders et al. Table 1', 'vivi_obj',
     'random_labels', 'class'),
    ('distillation beats VIVI', 'Romijnders et al. Table 1', 'distill', 'vivi', 'class'),
    ('Ours beats the object level alone', 'Romijnders et al. Table 3 (COCO mAP 40.4 vs 39.3)',
     'vivi_obj', 'object_only', 'class'),
    ('the object level alone beats VIVI', 'Romijnders et al. Table 3 (39.3 vs 35.1)',
     'object_only', 'vivi', 'class'),
    ('multi-frame multi-pair beats same frame', 'VINCE Table 3', 'vince',
     'vince_same_frame', 'class'),
    ('multi-frame multi-pair beats multi-frame', 'VINCE Table 3', 'vince',
     'vince_multi_frame', 'class'),
    ('attention pooling beats no attention', 'VITO Figure B.2', 'vito', 'vito_no_attention',
     'class'),
    ('two-scale attention beats single-scale attention', 'VITO 4.4 (+1% mIoU on PASCAL)',
     'vito', 'vito_single_scale', 'class'),
    ('single-scale attention beats single-scale average pooling', 'VITO 4.4 (+0.2% mIoU)',
     'vito_single_scale', 'vito_average_pooling', 'class'),
    ('two scales beat one, without attention', 'VITO 4.4 (+0.6% mIoU)', 'vito_no_attention',
     'vito_average_pooling', 'class'),
    ('marginal sampling beats delta sampling', 'VITO Figure B.3 (PASCAL, ADE20K)', 'vito',
     'vito_delta', 'class'),
    ('marginal sampling beats uniform sampling', 'VITO Figure B.3 (PASCAL, ADE20K)', 'vito',
     'vito_uniform', 'class'),
    ('FH masks beat whole images (DetCon beats MoCLR)', 'DetCon (slides; Hénaff et al. 2021)',
     'detcon', 'moclr', 'class'),
    ('discovered masks beat FH masks (Odin beats DetCon)', 'Odin (slides; Hénaff et al. 2022)',
     'odin', 'detcon', 'class'),
    ('Odin beats MoCLR', 'Odin (slides; Hénaff et al. 2022)', 'odin', 'moclr', 'class'),
    ('Odin discovers objects better than DetCon', 'Odin (slides: ABO 41.5 vs 34.1 on COCO)',
     'odin', 'detcon', 'object_discovery'),
    ('Odin discovers objects better than MoCLR', 'Odin (slides)', 'odin', 'moclr',
     'object_discovery'),
)


def workdir(root: str, world_seed: int, key: str, seed: int) -> str:
  """Where a row's run for one world seed and training seed lives (seed 0 keeps the row's
  name, so single-seed tables and several-seed ones share it)."""
  return os.path.join(root, f'seed{world_seed}', key if seed == 0 else f'{key}_init{seed}')


def run_seed(key: str, world_seed: int, seed: int, args) -> dict:
  """A row's run (RUNS[key]) on one world seed with one training seed, in `workdir`'s folder."""
  _, config, variant = RUNS[key]
  folder = workdir(args.workdir_root, world_seed, key, seed)
  args = argparse.Namespace(**{**vars(args), 'world_seed': world_seed})
  return run(os.path.basename(folder), config, variant, folder, args,
             overrides=[f'--config.seed={seed}'])


def report(text: str, out: str | None) -> None:
  """Prints the Markdown tables, and writes them to `out` too if given."""
  print(text, flush=True)
  if out:
    with open(out, 'w') as f:
      f.write(text)


def read_results(folder: str) -> dict | None:
  """The probe results of the finished run in `folder`, or None if it has not finished."""
  path = os.path.join(folder, RESULTS)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def run(key: str, config: str, variant: str, workdir: str, args, overrides=()) -> dict:
  """Runs one tiny config as the README's main command; returns its probe results."""
  finished = read_results(workdir)
  if finished is not None:
    return finished
  results = os.path.join(workdir, RESULTS)
  command = [sys.executable, os.path.join(ROOT, 'main.py'),
             f'--config={os.path.join(ROOT, "configs", config)}.py:{variant}',
             f'--workdir={workdir}', f'--config.data.synthetic.seed={args.world_seed}',
             f'--config.data.cache_dir={args.cache_dir}', f'--config.probe.seed={args.probe_seed}',
             *overrides]
  print(f'[{time.strftime("%H:%M:%S")}] {key}: {" ".join(command[1:])}', flush=True)
  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'log.txt'), 'w') as log:
    done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  if done.returncode:
    raise RuntimeError(f'{key} failed (exit {done.returncode}); see {workdir}/log.txt')
  with open(results) as f:
    out = json.load(f)
  out['wall_seconds'] = time.time() - start
  with open(results, 'w') as f:
    json.dump(out, f, indent=1)
  print(f'  {key}: class {out["trained"].get(COLUMNS["class"], float("nan")):.3f} '
        f'(init {out["init"].get(COLUMNS["class"], float("nan")):.3f}) in '
        f'{out["wall_seconds"] / 60:.1f} min', flush=True)
  return out


def over_seeds(runs: list[dict]) -> dict:
  """One row from the runs of several training seeds: each value the mean over seeds, its
  standard error the probe's binomial one (every seed is probed on the same images, so that
  part does not shrink with more seeds) combined with the standard error of the mean across
  seeds (training noise)."""
  out = {'counts': runs[0]['counts'], 'reference': runs[0].get('reference', {}),
         'wall_seconds': sum(r.get('wall_seconds', math.nan) for r in runs) / len(runs),
         'seeds': len(runs)}
  for part in ('trained', 'init'):
    out[part], out[part + '_se'] = {}, {}
    for k in [k for k in runs[0][part] if all(k in r[part] for r in runs)]:
      values = [r[part][k] for r in runs]
      mean = sum(values) / len(values)
      se = tables.standard_error(mean, out['counts'].get(k, 1))
      if len(values) > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        se = math.hypot(se, sd / math.sqrt(len(values)))
      out[part][k], out[part + '_se'][k] = mean, se
  return out


# What the tables' marks and verdicts mean (the results document prints them under its tables).
CLAIMS_LEGEND = ('"holds": a beats b by more than two standard errors of the difference; "does '
                 'not hold": b beats a by as much; "within noise" otherwise.')


def results_legend(num_seeds: int) -> str:
  """What `results_table`'s errors and marks are, for rows of `num_seeds` training seeds."""
  errors = ('the probe\'s binomial standard error' if num_seeds == 1 else
            f'the probe\'s binomial standard error combined with that of the mean over '
            f'{num_seeds} training seeds')
  return f'± {errors}; * gain over the encoder at initialisation beyond three standard errors.'


def cell(value, se) -> str:
  return '–' if value is None else f'{value:.3f} ± {se:.3f}'


def results_table(rows: dict[str, dict]) -> str:
  """Rows (`over_seeds` of each row's runs) beside the encoder at initialisation and the
  colour histogram, with `results_legend`'s marks. Every row starts from the same encoder
  (config.seed) probed on the same images, so the first row's init is every row's."""
  first = next(iter(rows.values()))
  counts = first['counts']
  lines = ['| row | ' + ' | '.join(COLUMNS) + ' | wall time |',
           '| --- |' + ' --- |' * (len(COLUMNS) + 1)]
  lines.append('| encoder at initialisation | ' + ' | '.join(
      cell(first['init'].get(k), first['init_se'].get(k)) for k in COLUMNS.values()) +
      ' | – |')
  hist = first.get('reference', {}).get('color_histogram', {})
  lines.append('| colour histogram (no learning, no shape) | ' + ' | '.join(
      cell(hist.get(k), hist.get(k) is not None
           and tables.standard_error(hist[k], counts.get(k, 1))) for k in COLUMNS.values()) +
      ' | – |')
  init, init_se = first['init'], first['init_se']
  for key, r in rows.items():
    cells = []
    for k in COLUMNS.values():
      v = r['trained'].get(k)
      if v is None:
        cells.append('–')
        continue
      mark = ' *' if v - init[k] > 3 * math.hypot(r['trained_se'][k], init_se[k]) else ''
      cells.append(cell(v, r['trained_se'][k]) + mark)
    lines.append(f'| {RUNS[key][0].strip()} | ' + ' | '.join(cells) +
                 f' | {r.get("wall_seconds", float("nan")) / 60:.1f} min |')
  return '\n'.join(lines)


def claims_table(rows: dict[str, dict]) -> str:
  """CLAIMS on the rows (`over_seeds`), each difference ± its two errors combined."""
  lines = ['| claim | paper | measured (a vs b) | difference | verdict |',
           '| --- | --- | --- | --- | --- |']
  for claim, paper, a, b, column in CLAIMS:
    key = COLUMNS[column]
    if a not in rows or b not in rows or any(key not in rows[r]['trained'] for r in (a, b)):
      continue   # Not run, or run without this column.
    va, vb = rows[a]['trained'][key], rows[b]['trained'][key]
    se = math.hypot(rows[a]['trained_se'][key], rows[b]['trained_se'][key])
    d = va - vb
    verdict = 'holds' if d > 2 * se else 'does not hold' if d < -2 * se else 'within noise'
    lines.append(f'| {claim} ({column}) | {paper} | {va:.3f} vs {vb:.3f} | {d:+.3f} ± '
                 f'{se:.3f} | {verdict} |')
  return '\n'.join(lines)


def sweep_folder(root: str, world_seed: int, key: str, multiplier: float) -> str:
  """Where a row's sweep run at one learning-rate multiplier lives."""
  return os.path.join(root, f'sweep_seed{world_seed}', f'{key}_x{multiplier}')


def sweep_table(runs: dict[str, dict[float, dict]]) -> str:
  """Each swept row's validation `class` at every multiplier (its runs' probe results by
  multiplier) and the multiplier the rule chooses: the best of them."""
  lines = ['| method | ' + ' | '.join(f'×{m}' for m in MULTIPLIERS) + ' | chosen |',
           '| --- |' + ' --- |' * (len(MULTIPLIERS) + 1)]
  key = COLUMNS['class']
  for row, by_multiplier in runs.items():
    accuracy = {m: r['trained'][key] for m, r in by_multiplier.items()}
    n = next(iter(by_multiplier.values()))['counts'][key]
    lines.append(f'| {RUNS[row][0].strip()} | ' + ' | '.join(
        cell(accuracy[m], tables.standard_error(accuracy[m], n)) for m in MULTIPLIERS) +
        f' | ×{max(accuracy, key=accuracy.get)} |')
  return '\n'.join(lines)


def sweep(args) -> str:
  runs = {}
  for key in [k for k in args.runs if k in SWEPT]:
    _, config, variant = RUNS[key]
    runs[key] = {m: run(f'{key} x{m}', config, variant,
                        sweep_folder(args.workdir_root, args.world_seed, key, m), args,
                        overrides=[
                            '--config.probe.split=validation', f'--config.seed={args.seeds[0]}',
                            '--config.schedule.base_learning_rate='
                            f'{common.TINY_LEARNING_RATE * m}',
                            '--config.probe.evaluators.linear_probe.datasets='
                            '("synthetic/class",)',
                            '--config.probe.evaluators.object_nn.num_videos=0',
                            '--config.probe.evaluators.object_discovery.num_videos=0'])
                 for m in MULTIPLIERS}
    print(sweep_table({key: runs[key]}).splitlines()[-1], flush=True)
  return sweep_table(runs)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--world_seed', type=int, default=0)
  parser.add_argument('--seeds', default='0',
                      help='comma-separated training seeds (initialisation and data order); '
                      'with several, each cell is the mean over them')
  parser.add_argument('--probe_seed', type=int, default=1)
  parser.add_argument('--runs', default=','.join(RUNS),
                      help=f'comma-separated, from {",".join(RUNS)}')
  parser.add_argument('--sweep', action='store_true')
  parser.add_argument('--workdir_root', default='/tmp/vivi_learning')
  parser.add_argument('--cache_dir', default='~/.cache/vivi')
  parser.add_argument('--out', help='write the Markdown tables here too')
  args = parser.parse_args(argv)
  args.runs = [r for r in args.runs.split(',') if r]
  args.seeds = [int(s) for s in args.seeds.split(',') if s]
  unknown = sorted(set(args.runs) - set(RUNS))
  if unknown:
    parser.error(f'unknown runs {unknown}; valid: {list(RUNS)}')
  if args.sweep:
    text = (f'## Learning-rate sweep, world seed {args.world_seed} (validation `class` '
            f'accuracy)\n\n{sweep(args)}\n')
  else:
    rows = {}
    for key in [k for k in RUNS if k in args.runs]:   # The table's order.
      rows[key] = over_seeds([run_seed(key, args.world_seed, seed, args)
                              for seed in args.seeds])
    text = (f'## World seed {args.world_seed} (probe seed {args.probe_seed}, training '
            f'seed{"s" * (len(args.seeds) > 1)} {",".join(map(str, args.seeds))})\n\n'
            f'{results_table(rows)}\n\n{results_legend(len(args.seeds))}\n\n'
            f'### The papers\' claims\n\n{claims_table(rows)}\n\n{CLAIMS_LEGEND}\n')
  report(text, args.out)


if __name__ == '__main__':
  main()
