"""The statistics of a comparison, on top of scipy.stats.

Everything a verdict needs, and nothing that knows about run folders:

* :func:`describe`: n, mean, sample std, min, max and the Student-t 95 % CI of
  the mean of a few seeds' scores (no CI for one value: there is no spread to
  estimate).
* :func:`welch`: Welch's t-test of two arms (unequal variances) with the 95 % CI
  of the difference of means on the Welch–Satterthwaite degrees of freedom.
* :func:`single_run_t`: the t-test of one run against another arm's seeds
  (Crawford and Howell 1998), borrowing that arm's seed spread.
* :func:`mcnemar`: McNemar's exact test on paired predictions of two trained
  models on the same test images (the exact binomial test on the discordant
  pairs), with a CI of the difference in accuracy.
* :func:`holm`: Holm's step-down correction over a family of p-values.
* :func:`seeds_for_power`: how many seeds per arm a two-sided t-test needs to
  detect a given difference with a given power (noncentral t).
* :func:`calibration`: expected calibration error and the reliability diagram
  from equal-width confidence bins (a run stores 15, as in Guo et al. 2017).

Scores are fractions (0.9123), as in summary.json; the callers turn them into
points (percentage points) for people.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as st

#: Confidence level of every interval, and the significance level of every verdict.
CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Description:
    """A sample of scores (one per seed)."""

    n: int
    mean: float
    std: float | None  # sample std (ddof=1); None for n=1
    ci95: tuple[float, float] | None  # Student-t CI of the mean; None for n=1
    min: float
    max: float


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> Description:
    """n, mean, std, t-CI of the mean, min and max of a non-empty sample."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("describe() needs a non-empty 1-d sample")
    n, mean = int(x.size), float(x.mean())
    if n < 2:
        return Description(n, mean, None, None, float(x.min()), float(x.max()))
    std = float(x.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Description(n, mean, std, (mean - half, mean + half), float(x.min()), float(x.max()))


@dataclass(frozen=True)
class TestResult:
    """One two-arm test.  ``diff`` is a minus b; ``p_value`` is None when no test was possible."""

    test: str  # "welch" | "single-run t" | "mcnemar"
    diff: float
    ci95: tuple[float, float] | None
    p_value: float | None
    statistic: float | None = None
    df: float | None = None  # welch: Welch–Satterthwaite degrees of freedom; single-run t: n - 1
    discordant: tuple[int, int] | None = None  # mcnemar: (a right & b wrong, a wrong & b right)
    count: int | None = None  # mcnemar: paired test images
    note: str = ""  # why p_value is None


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> TestResult:
    """Welch's two-sided t-test of mean(a) = mean(b); each arm needs at least two values."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size < 2 or xb.size < 2:
        raise ValueError("Welch's t-test needs at least two values per arm")
    diff = float(xa.mean() - xb.mean())
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:  # (var() of equal floats can come out as 1e-33, not 0)
        # The t statistic is 0/0 or x/0: the seeds did not vary at all, so there is nothing to test.
        return TestResult("welch", diff, None, None, note="every seed of both arms scored the same, so there is no spread to test against")
    with warnings.catch_warnings():
        # scipy warns of "catastrophic cancellation" when one arm's seeds all scored the same; a zero-spread
        # arm is legitimate (the other arm's spread carries the test), so the warning would only alarm people.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_ind(xa, xb, equal_var=False)
    ci = res.confidence_interval(confidence)
    return TestResult("welch", diff, (float(ci.low), float(ci.high)), float(res.pvalue),
                      statistic=float(res.statistic), df=float(res.df))


def single_run_t(x: float, sample: Sequence[float], confidence: float = CONFIDENCE) -> TestResult:
    """Two-sided t-test of one run's score ``x`` against the mean of another arm's seeds (``sample``).

    One run has no seed spread of its own, so Welch's test cannot be used; this test borrows the
    sample's, assuming that both recipes vary as much from seed to seed.  It is Crawford and Howell's
    (1998) test of one score against a small sample: ``t = (x - mean) / (s * sqrt(1 + 1/n))`` on
    ``n - 1`` degrees of freedom.  The ``1`` counts the one run's own seed noise, the ``1/n`` that of the
    sample's mean, so under normal scores of equal variance the test is exact (x lies outside the
    sample's prediction interval exactly when p < 1 - confidence).  The CI is that of ``x - mean``.
    """
    xs = np.asarray(sample, dtype=float)
    if xs.ndim != 1 or xs.size < 2:
        raise ValueError("the single-run t-test needs at least two values in the sample")
    n, diff = int(xs.size), float(x - xs.mean())
    if np.ptp(xs) == 0:
        return TestResult("single-run t", diff, None, None, df=float(n - 1),
                          note="every seed of the other arm scored the same, so there is no seed spread to test against")
    scale = float(xs.std(ddof=1)) * math.sqrt(1 + 1 / n)
    df = n - 1
    t = diff / scale
    half = float(st.t.ppf(0.5 + confidence / 2, df)) * scale
    return TestResult("single-run t", diff, (diff - half, diff + half), float(2 * st.t.sf(abs(t), df)),
                      statistic=t, df=float(df))


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], confidence: float = CONFIDENCE) -> TestResult:
    """McNemar's exact test of two models' accuracies on the same images.

    Only the discordant images carry information: ``n01`` that a gets right and b
    wrong, ``n10`` the reverse.  Under equal accuracy each discordant image is a
    fair coin, so the p-value is the exact two-sided binomial test of ``n01``
    out of ``n01 + n10`` at 1/2.  The CI of the difference in accuracy,
    ``(n01 - n10) / N = (n01 + n10) / N * (2θ - 1)``, maps the Clopper–Pearson CI of
    θ = n01 / (n01 + n10): it is conditional on the number of discordant images.
    """
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape or ca.ndim != 1 or ca.size == 0:
        raise ValueError("McNemar's test needs two equally long, non-empty sequences of paired outcomes")
    n = int(ca.size)
    n01, n10 = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    m = n01 + n10
    diff = (n01 - n10) / n
    if m == 0:  # the models agree on every image: no evidence of any difference
        return TestResult("mcnemar", 0.0, (0.0, 0.0), 1.0, discordant=(0, 0), count=n)
    p_value = float(st.binomtest(n01, m, 0.5).pvalue)
    # Clopper–Pearson from its beta-quantile definition: what binomtest().proportion_ci(method="exact")
    # returns, without its root finding (5x the cost of the test itself).
    tail = (1 - confidence) / 2
    low = float(st.beta.ppf(tail, n01, m - n01 + 1)) if n01 > 0 else 0.0
    high = float(st.beta.ppf(1 - tail, n01 + 1, m - n01)) if n01 < m else 1.0
    scale = m / n
    return TestResult("mcnemar", diff, (scale * (2 * low - 1), scale * (2 * high - 1)), p_value,
                      statistic=float(n01), discordant=(n01, n10), count=n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest (1-based) is multiplied by m - i + 1; the
    running maximum keeps the adjusted values monotone; they are capped at 1.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def power_t_test(n: int, sd: float, delta: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided two-sample t-test with ``n`` per arm, common std ``sd``, true difference ``delta``.

    Under the alternative the statistic follows a noncentral t with 2n - 2 degrees of
    freedom and noncentrality delta / (sd * sqrt(2 / n)).  For equal arm sizes and
    similar spreads Welch's test has practically the same power.
    """
    if n < 2:
        return 0.0
    df = 2 * n - 2
    ncp = abs(delta) / (sd * math.sqrt(2.0 / n))
    crit = st.t.ppf(1 - alpha / 2, df)
    upper = float(st.nct.sf(crit, df, ncp))
    lower = float(st.nct.cdf(-crit, df, ncp))  # the wrong-sign rejections: negligible, and nan in scipy for ncp >~ 15
    return upper + (lower if math.isfinite(lower) else 0.0)


def seeds_for_power(sd: float, delta: float, power: float = 0.8, alpha: float = ALPHA, max_n: int = 100_000) -> int | None:
    """The smallest n per arm with :func:`power_t_test` >= ``power``; None beyond ``max_n``.

    With no spread at all (sd = 0) any difference shows with 2 seeds per arm.
    """
    if delta == 0:
        return None
    if sd <= 0:
        return 2
    if power_t_test(max_n, sd, delta, alpha) < power:
        return None
    lo, hi = 1, 2  # power(lo) < target <= power(hi), found by doubling then bisection (power rises with n)
    while power_t_test(hi, sd, delta, alpha) < power:
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_t_test(mid, sd, delta, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def pooled_spread(samples: Sequence[Sequence[float]]) -> tuple[float, int] | None:
    """The pooled sample std of several arms (the std a t-test assumes they share) and its degrees of
    freedom (each arm's values less one); None without two values in one arm."""
    ss, df = 0.0, 0
    for s in samples:
        x = np.asarray(s, dtype=float)
        if x.size >= 2:
            ss += float(((x - x.mean()) ** 2).sum())
            df += x.size - 1
    return (math.sqrt(ss / df), df) if df else None


def pooled_std(samples: Sequence[Sequence[float]]) -> float | None:
    """:func:`pooled_spread`'s std alone."""
    spread = pooled_spread(samples)
    return spread[0] if spread else None


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and the bins of a reliability diagram."""

    ece: float
    edges: np.ndarray  # (bins + 1,) bin edges on [0, 1]
    confidence: np.ndarray  # (bins,) mean confidence of the images in each bin (nan if empty)
    accuracy: np.ndarray  # (bins,) accuracy in each bin (nan if empty)
    count: np.ndarray  # (bins,) images in each bin


def calibration(bins: dict) -> Calibration:
    """ECE = sum over bins of (images in bin / all images) * |accuracy - mean confidence|, from the per-bin
    image counts, confidence sums and correct counts over equal-width confidence bins: what a run stores
    (:func:`classbench.runfolder.calibration_bins` makes them from per-image confidences and outcomes, the
    one binning for stored and freshly evaluated predictions).  ValueError when the bins hold no image."""
    count = np.asarray(bins["count"], dtype=np.int64)
    conf_sum = np.asarray(bins["confidence_sum"], dtype=float)
    acc_sum = np.asarray(bins["correct"], dtype=float)
    total = int(count.sum())
    if total <= 0 or conf_sum.shape != count.shape or acc_sum.shape != count.shape:
        raise ValueError("calibration needs bins of equal length holding at least one image")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / total)  # = sum_b (n_b / N) |acc_b - conf_b|
    return Calibration(ece, np.linspace(0.0, 1.0, count.size + 1), mean_conf, acc, count)

