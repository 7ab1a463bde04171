"""Results as a reader sees them: accuracies with their binomial standard errors, and the
plain-text table the training run prints at its end."""

from __future__ import annotations

import math

# What a training run leaves in its workdir about its probes (vivi/loop.py writes them, the
# training-curves picture reads them): the encoder at initialisation, and the final table as
# JSON (trained, init, colour histogram, example counts).
INIT_PROBE_FILE = 'probe_init.json'
PROBE_RESULTS_FILE = 'probe_results.json'


def standard_error(accuracy: float, n: int) -> float:
  """Binomial standard error of an accuracy measured on n independent examples."""
  return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1))


def format_table(columns: dict[str, dict[str, float]], counts: dict[str, int],
                 gain: tuple[str, str] | None = None) -> str:
  """A plain-text table, one row per metric (a key of `counts`), one column per encoder,
  each value with its standard error; `gain=(a, b)` adds a column a - b, marked * beyond
  three standard errors of the difference (independent errors: sqrt(se_a^2 + se_b^2))."""
  tasks = [t for t in counts if any(t in c for c in columns.values())]
  width = max([12] + [len(t) + 2 for t in tasks])
  head = f'  {"":<{width}}' + ''.join(f'{name:>18}' for name in columns)
  if gain:
    head += f'{gain[0] + " - " + gain[1]:>22}'
  lines = [head]
  for task in tasks:
    n = counts[task]
    row = f'  {task:<{width}}'
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
