"""The papers' statistics (vivi/evaluate/stats.py) against SciPy's implementations and their
definitions: Clopper-Pearson (Beta quantiles), Welch's t-test (t, Welch-Satterthwaite
degrees of freedom, two-sided p) and the percentile bootstrap of a mean."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from vivi.evaluate import stats


@pytest.mark.parametrize('k,n', [(0, 10), (1, 10), (7, 10), (10, 10), (480, 500),
                                 (3, 1000)])
@pytest.mark.parametrize('confidence', [0.95, 0.9])
def test_clopper_pearson_is_the_beta_quantiles(k, n, confidence):
  alpha = 1 - confidence
  low, high = stats.clopper_pearson(k, n, confidence)
  expected_low = 0.0 if k == 0 else scipy_stats.beta.ppf(alpha / 2, k, n - k + 1)
  expected_high = 1.0 if k == n else scipy_stats.beta.ppf(1 - alpha / 2, k + 1, n - k)
  assert low == pytest.approx(expected_low, rel=1e-10, abs=1e-14)
  assert high == pytest.approx(expected_high, rel=1e-10, abs=1e-14)
  assert low <= k / n <= high
  if hasattr(scipy_stats, 'binomtest'):   # SciPy's own exact interval agrees.
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence, method='exact')
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-14)


def test_clopper_pearson_hand_values_and_bad_input():
  # k = 0: the upper bound solves (1 - p)^n = alpha / 2; k = n: p^n = alpha / 2.
  assert stats.clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** 0.1)
  assert stats.clopper_pearson(10, 10)[0] == pytest.approx(0.025 ** 0.1)
  for bad in [(11, 10), (-1, 10), (0, 0)]:
    with pytest.raises(ValueError, match='successes'):
      stats.clopper_pearson(*bad)
  with pytest.raises(ValueError, match='confidence'):
    stats.clopper_pearson(1, 10, 1.0)


def test_clopper_pearson_covers_at_least_the_nominal_rate():
  # Exact intervals are conservative: coverage >= 95% at every p (summed exactly over k).
  n = 40
  intervals = [stats.clopper_pearson(k, n) for k in range(n + 1)]
  for p in (0.05, 0.3, 0.5, 0.82):
    coverage = sum(scipy_stats.binom.pmf(k, n, p) for k, (lo, hi) in enumerate(intervals)
                   if lo <= p <= hi)
    assert coverage >= 0.95


WELCH_CASES = [
    ([0.61, 0.63, 0.60, 0.64, 0.62], [0.58, 0.59, 0.61, 0.57, 0.60]),
    ([1.0, 2.0, 3.0], [1.5, 9.0, 2.0, 7.0, 4.5, 3.0]),
    ([0.5, 0.5001], [0.2, 0.9, 0.4]),
    (list(np.random.default_rng(0).normal(0.6, 0.02, 12)),
     list(np.random.default_rng(1).normal(0.62, 0.05, 12))),
]


@pytest.mark.parametrize('a,b', WELCH_CASES)
def test_welch_matches_scipy_and_the_definitions(a, b):
  result = stats.welch_t_test(a, b)
  expected = scipy_stats.ttest_ind(a, b, equal_var=False)
  assert result['t'] == pytest.approx(expected.statistic, rel=1e-10)
  assert result['p'] == pytest.approx(expected.pvalue, rel=1e-8)
  # Welch-Satterthwaite degrees of freedom, written out.
  va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
  dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  assert result['dof'] == pytest.approx(dof, rel=1e-12)
  if hasattr(expected, 'df'):
    assert result['dof'] == pytest.approx(expected.df, rel=1e-10)
  # p from the t distribution with those degrees of freedom.
  assert result['p'] == pytest.approx(2 * scipy_stats.t.sf(abs(result['t']), dof), rel=1e-8)
  assert result['difference'] == pytest.approx(np.mean(a) - np.mean(b))
  flipped = stats.welch_t_test(b, a)
  assert flipped['t'] == pytest.approx(-result['t']) and flipped['p'] == pytest.approx(
      result['p'])


def test_welch_hand_computed_case():
  # a: mean 2, s^2 = 1, n = 3; b: mean 5, s^2 = 16/3, n = 4 -> se^2 = 1/3 + 4/3 = 5/3,
  # nu = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 3) = 30/7.
  result = stats.welch_t_test([1, 2, 3], [3, 3, 7, 7])
  assert result['t'] == pytest.approx(-3 / np.sqrt(5 / 3))
  assert result['dof'] == pytest.approx(30 / 7)
  assert result['difference'] == -3.0


def test_welch_degenerate_samples_and_too_few_runs():
  same = stats.welch_t_test([0.5, 0.5, 0.5], [0.5, 0.5])
  assert same['t'] == 0.0 and same['p'] == 1.0
  apart = stats.welch_t_test([0.6, 0.6], [0.5, 0.5])
  assert apart['t'] == np.inf and apart['p'] == 0.0
  with pytest.raises(ValueError, match='at least 2 runs'):
    stats.welch_t_test([0.5], [0.4, 0.6])


def test_welch_rejects_at_the_nominal_rate_under_the_null():
  # Equal means, unequal variances and sizes: about 5% of p-values below 0.05.
  rng = np.random.default_rng(0)
  p = [stats.welch_t_test(rng.normal(0, 1, 6), rng.normal(0, 3, 12))['p'] for _ in range(2000)]
  assert 0.035 < np.mean(np.asarray(p) < 0.05) < 0.065


@pytest.mark.parametrize('values', [[0.61, 0.63, 0.60, 0.64, 0.62, 0.66, 0.59],
                                    [0.2, 0.9], [0.1, 0.5, 0.4, 0.45, 0.3, 0.8, 0.75, 0.2]])
def test_bootstrap_is_scipys_percentile_bootstrap_with_the_same_generator(values):
  # SciPy draws its resamples as `rng.integers(0, n, (num_resamples, n))` too, so the same
  # seeded Generator gives the same resamples and, with percentiles, the same interval.
  low, high = stats.bootstrap_interval(values, num_resamples=3000, seed=4)
  expected = scipy_stats.bootstrap((np.asarray(values),), np.mean, method='percentile',
                                   n_resamples=3000, rng=np.random.default_rng(4),
                                   vectorized=True, batch=None).confidence_interval
  assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-12)


def test_bootstrap_by_hand_determinism_and_bad_input():
  x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
  rng = np.random.default_rng(7)
  means = [x[rng.integers(0, len(x), len(x))].mean() for _ in range(500)]
  # The vectorised draw consumes the Generator as 500 draws of len(x) in a row.
  hand = np.percentile(means, [2.5, 97.5])
  assert stats.bootstrap_interval(x, num_resamples=500, seed=7) == pytest.approx(tuple(hand))
  assert stats.bootstrap_interval(x, seed=1) == stats.bootstrap_interval(x, seed=1)
  # Another seed, other resamples (few, so that the percentiles move off the 1/6 grid's
  # shared values).
  assert stats.bootstrap_interval(x, num_resamples=20, seed=1) != stats.bootstrap_interval(
      x, num_resamples=20, seed=2)
  low, high = stats.bootstrap_interval(x)
  assert x.min() <= low <= x.mean() <= high <= x.max()
  assert stats.bootstrap_interval([0.7]) == (0.7, 0.7)
  narrow = stats.bootstrap_interval(x, confidence=0.5)
  assert low <= narrow[0] <= narrow[1] <= high
  with pytest.raises(ValueError, match='1-D'):
    stats.bootstrap_interval([])


def test_bootstrap_covers_the_true_mean_near_the_nominal_rate():
  # Percentile intervals of a mean of 12 normal runs undercover slightly (about 93-94%).
  rng = np.random.default_rng(0)
  hits = [lo <= 0.6 <= hi for lo, hi in (
      stats.bootstrap_interval(rng.normal(0.6, 0.02, 12), num_resamples=1000, seed=s)
      for s in range(300))]
  assert 0.88 < np.mean(hits) <= 0.99
