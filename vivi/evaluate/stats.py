"""The statistics the papers report beside their numbers.

  * `clopper_pearson`: the exact binomial confidence interval of an accuracy (VIVI Table 3
    gives ImageNet-Vid-Robust's anchor and pm-10 accuracies with it).
  * `bootstrap_interval`: the percentile bootstrap interval of a mean over repeated runs
    (Romijnders et al. section 4: "error bars ... bootstrapped 95% confidence intervals").
  * `welch_t_test`: Welch's two-sided t-test of two sets of runs with unequal variances
    (Romijnders et al.: "statistical significance at the p = 0.05 level on a Welch's two
    sided t-test based on 12 independent runs of the transfer protocol"; the tables' †).

Written from the definitions (the Beta quantiles of Clopper & Pearson 1934; Welch 1947 with
the Welch-Satterthwaite degrees of freedom); SciPy supplies only the distributions' special
functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
  """The exact (Clopper-Pearson) interval of a binomial proportion: the `alpha / 2` quantile
  of Beta(k, n - k + 1) and the `1 - alpha / 2` quantile of Beta(k + 1, n - k), with 0 and 1
  at k = 0 and k = n."""
  k, n = int(successes), int(trials)
  if n < 1 or not 0 <= k <= n:
    raise ValueError(f'need 0 <= successes <= trials and trials >= 1; got {k} of {n}')
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence}')
  alpha = 1 - confidence
  low = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, alpha / 2))
  high = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - alpha / 2))
  return low, high


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95,
                       num_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
  """The percentile bootstrap interval of the mean of `values`: the mean of `num_resamples`
  resamples with replacement (seeded), its `alpha / 2` and `1 - alpha / 2` percentiles."""
  x = np.asarray(values, np.float64)
  if x.ndim != 1 or len(x) < 1:
    raise ValueError(f'need a 1-D sequence of at least one value, got shape {x.shape}')
  rng = np.random.default_rng(seed)
  means = x[rng.integers(0, len(x), (num_resamples, len(x)))].mean(axis=1)
  alpha = 1 - confidence
  low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
  return float(low), float(high)


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> dict:
  """Welch's two-sided t-test of mean(a) = mean(b) with unequal variances.

  t = (mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b) (s^2: unbiased variances), with
  nu = (s_a^2/n_a + s_b^2/n_b)^2 / ((s_a^2/n_a)^2 / (n_a - 1) + (s_b^2/n_b)^2 / (n_b - 1))
  degrees of freedom; p = 2 P(T_nu > |t|) = I_{nu / (nu + t^2)}(nu / 2, 1 / 2). Returns
  {'t', 'dof', 'p', 'difference'}; identical constant samples give t = 0, p = 1.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    raise ValueError(f"Welch's test needs at least 2 runs on each side; got {len(a)} and "
                     f'{len(b)}')
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  difference = float(a.mean() - b.mean())
  if va + vb == 0:
    return {'t': 0.0 if difference == 0 else np.copysign(np.inf, difference),
            'dof': float(len(a) + len(b) - 2), 'p': 1.0 if difference == 0 else 0.0,
            'difference': difference}
  t = difference / np.sqrt(va + vb)
  dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  p = float(special.betainc(dof / 2, 0.5, dof / (dof + t ** 2)))
  return {'t': float(t), 'dof': float(dof), 'p': p, 'difference': difference}
