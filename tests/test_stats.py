"""The statistics of `classbench compare`, checked against values computed independently.

Each expected value comes from the formula written out here by hand, or from a
published table; the simulations check the tests' error rates on simulated
seeds, without any training.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from classbench.compare import stats
from classbench.runfolder import calibration_bins


# ---------------------------------------------------------------- describe: mean, std, Student-t CI
def test_describe_by_hand():
    x = [0.90, 0.92, 0.91, 0.95, 0.89]
    mean = sum(x) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / 4)
    t_975_4 = 2.776  # Student t, 4 df, two-sided 95 % (any printed t table)
    d = stats.describe(x)
    assert d.n == 5 and d.mean == pytest.approx(0.914) and d.std == pytest.approx(sd)
    assert d.min == 0.89 and d.max == 0.95
    half = t_975_4 * sd / math.sqrt(5)
    assert d.ci95[0] == pytest.approx(mean - half, abs=2e-5) and d.ci95[1] == pytest.approx(mean + half, abs=2e-5)


def test_describe_one_value_has_no_ci_and_zero_spread_a_point_ci():
    d = stats.describe([0.9])
    assert d.n == 1 and d.std is None and d.ci95 is None and d.mean == d.min == d.max == 0.9
    d = stats.describe([0.5, 0.5, 0.5])
    assert d.std == 0 and d.ci95 == (0.5, 0.5)
    with pytest.raises(ValueError):
        stats.describe([])


# ---------------------------------------------------------------- Welch's t-test
def test_welch_by_hand():
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((v - ma) ** 2 for v in a) / (na - 1)
    vb = sum((v - mb) ** 2 for v in b) / (nb - 1)
    se2 = va / na + vb / nb
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))  # Welch–Satterthwaite
    r = stats.welch(a, b)
    assert r.test == "welch"
    assert r.diff == pytest.approx(ma - mb) and r.statistic == pytest.approx(t) and r.df == pytest.approx(df)
    # Wikipedia's worked example ("Welch's t-test", example 1) gives t = -2.46, df = 24.99, p = 0.021.
    assert round(t, 2) == -2.46 and round(df, 1) == 25.0 and round(r.p_value, 3) == 0.021
    from scipy.stats import t as t_dist  # the quantile only; the CI arithmetic is the formula's

    half = t_dist.ppf(0.975, df) * math.sqrt(se2)
    assert r.ci95[0] == pytest.approx(ma - mb - half) and r.ci95[1] == pytest.approx(ma - mb + half)
    assert r.ci95[0] < r.diff < r.ci95[1] < 0  # p < 0.05: the CI excludes 0


def test_welch_refuses_one_seed_and_names_zero_spread():
    with pytest.raises(ValueError):
        stats.welch([0.9], [0.8, 0.81])
    r = stats.welch([0.9, 0.9], [0.8, 0.8])
    assert r.p_value is None and r.ci95 is None and "no spread" in r.note and r.diff == pytest.approx(0.1)


# ---------------------------------------------------------------- one run against several seeds
def test_single_run_t_by_hand():
    sample = [0.90, 0.92, 0.91, 0.95, 0.89]
    mean = sum(sample) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in sample) / 4)
    scale = sd * math.sqrt(1 + 1 / 5)  # Crawford & Howell (1998): the one score's noise plus the mean's
    t_975_4 = 2.776  # Student t, 4 df, two-sided 95 % (any printed t table)
    r = stats.single_run_t(0.97, sample)
    assert r.test == "single-run t" and r.df == 4
    assert r.diff == pytest.approx(0.97 - mean) and r.statistic == pytest.approx((0.97 - mean) / scale)
    assert r.ci95[0] == pytest.approx(0.97 - mean - t_975_4 * scale, abs=2e-5)
    assert r.ci95[1] == pytest.approx(0.97 - mean + t_975_4 * scale, abs=2e-5)
    # A score exactly at the edge of the 95 % prediction interval has p = 0.05 (to the table's 3 decimals).
    assert stats.single_run_t(mean + t_975_4 * scale, sample).p_value == pytest.approx(0.05, abs=2e-4)
    assert stats.single_run_t(mean - t_975_4 * scale, sample).p_value == pytest.approx(0.05, abs=2e-4)
    assert (r.p_value < 0.05) == (r.ci95[0] > 0)


def test_single_run_t_refuses_one_seed_and_names_zero_spread():
    with pytest.raises(ValueError):
        stats.single_run_t(0.9, [0.8])
    r = stats.single_run_t(0.9, [0.8, 0.8, 0.8])
    assert r.p_value is None and r.ci95 is None and "no seed spread" in r.note and r.diff == pytest.approx(0.1)


# ---------------------------------------------------------------- McNemar's exact test
def _paired(n01: int, n10: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([True] * n01 + [False] * n10 + [True] * both + [False] * neither)
    b = np.array([False] * n01 + [True] * n10 + [True] * both + [False] * neither)
    return a, b


def test_mcnemar_exact_by_hand():
    # 1 image only a gets right, 7 only b: exact two-sided p = 2 * P(X <= 1), X ~ Bin(8, 1/2).
    a, b = _paired(1, 7, 50, 42)
    p = 2 * (math.comb(8, 0) + math.comb(8, 1)) / 2**8
    r = stats.mcnemar(a, b)
    assert r.test == "mcnemar" and r.discordant == (1, 7) and r.count == 100
    assert r.p_value == pytest.approx(p) and p == pytest.approx(0.0703125)
    assert r.diff == pytest.approx((1 - 7) / 100) == pytest.approx(a.mean() - b.mean())
    assert r.ci95[0] < r.diff < r.ci95[1]
    assert r.ci95[1] > 0  # p > 0.05: the CI holds 0


@pytest.mark.parametrize("n01, n10", [(3, 17), (0, 6), (9, 0), (40, 41)])
def test_mcnemar_ci_maps_clopper_pearson(n01, n10):
    # Clopper–Pearson as scipy's binomtest computes it (root finding), mapped to the accuracy difference.
    from scipy.stats import binomtest

    a, b = _paired(n01, n10, 30, 50)
    m, n = n01 + n10, n01 + n10 + 80
    ci = binomtest(n01, m).proportion_ci(0.95, method="exact")
    r = stats.mcnemar(a, b)
    assert r.ci95[0] == pytest.approx(m / n * (2 * ci.low - 1), abs=1e-9)
    assert r.ci95[1] == pytest.approx(m / n * (2 * ci.high - 1), abs=1e-9)
    assert r.p_value == pytest.approx(min(1.0, 2 * sum(math.comb(m, k) for k in range(min(n01, n10) + 1)) / 2**m))
    assert (r.p_value < 0.05) == (r.ci95[0] > 0 or r.ci95[1] < 0)  # the CI and the test agree here


def test_mcnemar_identical_models():
    a, b = _paired(0, 0, 10, 5)
    r = stats.mcnemar(a, b)
    assert r.p_value == 1.0 and r.diff == 0.0
    with pytest.raises(ValueError):
        stats.mcnemar([True, False], [True])


# ---------------------------------------------------------------- Holm
def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.02]) == [0.02] and stats.holm([]) == []


# ---------------------------------------------------------------- power
@pytest.mark.parametrize("d, n", [(0.5, 64), (0.8, 26), (1.0, 17)])
def test_seeds_for_power_matches_cohens_table(d, n):
    # Cohen (1988), Statistical Power Analysis, Table 2.4.1: n per group for power 0.80 at two-sided alpha 0.05.
    assert stats.seeds_for_power(1.0, d) == n
    assert stats.seeds_for_power(0.004, 0.004 * d) == n  # only the ratio matters: points or fractions alike
    assert stats.power_t_test(n, 1.0, d) >= 0.8 > stats.power_t_test(n - 1, 1.0, d)


def test_seeds_for_power_normal_approximation_and_edges():
    # Large n: the normal approximation 2 (z_.975 + z_.80)^2 (sd / delta)^2 holds within a seed.
    z = 1.959964 + 0.841621
    assert abs(stats.seeds_for_power(1.0, 0.1) - 2 * z**2 / 0.1**2) < 2
    assert stats.seeds_for_power(0.0, 0.005) == 2
    assert stats.seeds_for_power(1.0, 0.0) is None
    assert stats.seeds_for_power(1.0, 1e-6) is None  # beyond 100,000 seeds


def test_pooled_std_by_hand():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0]
    ss = (1 + 0 + 1) + (1 + 1)
    assert stats.pooled_std([a, b]) == pytest.approx(math.sqrt(ss / 3))
    assert stats.pooled_std([[1.0], [2.0]]) is None
    sd, df = stats.pooled_spread([a, b, [5.0]])  # a lone value adds no degree of freedom
    assert sd == pytest.approx(math.sqrt(ss / 3)) and df == 3
    assert stats.pooled_spread([[1.0], [2.0]]) is None


# ---------------------------------------------------------------- calibration
def test_ece_by_hand():
    conf = [0.95, 0.95, 0.55, 0.55, 0.30, 0.02]
    ok = [True, False, True, True, False, False]
    # bins of width 1/15: 0.95 -> bin 14, 0.55 -> bin 8, 0.30 -> bin 4, 0.02 -> bin 0
    ece = (2 / 6) * abs(0.5 - 0.95) + (2 / 6) * abs(1.0 - 0.55) + (1 / 6) * abs(0 - 0.30) + (1 / 6) * abs(0 - 0.02)
    c = stats.calibration(calibration_bins(conf, ok))
    assert c.ece == pytest.approx(ece)
    assert c.count.sum() == 6 and c.count[14] == 2 and c.count[8] == 2 and c.count[4] == 1 and c.count[0] == 1
    assert c.accuracy[14] == 0.5 and c.confidence[8] == pytest.approx(0.55) and math.isnan(c.accuracy[7])
    assert len(c.edges) == 16 and c.edges[0] == 0 and c.edges[-1] == 1


def test_ece_of_a_calibrated_model_is_small():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 200_000)
    ok = rng.uniform(size=conf.size) < conf  # right exactly as often as it says
    assert stats.calibration(calibration_bins(conf, ok)).ece < 0.01
    underconfident = stats.calibration(calibration_bins(conf, np.ones_like(ok)))
    assert underconfident.ece == pytest.approx(1 - conf.mean(), abs=1e-9)
    for bad in (([1.5], [True]), ([float("nan")], [True]), ([0.5, 0.5], [True]), ([], [])):
        with pytest.raises(ValueError):
            calibration_bins(*bad)
    with pytest.raises(ValueError):
        stats.calibration({"count": [0, 0], "confidence_sum": [0.0, 0.0], "correct": [0, 0]})


# ---------------------------------------------------------------- simulations: the tests' error rates
SEED_SD = 0.003  # seed-to-seed std of test top-1 seen in small CIFAR runs: 0.3 points


def test_truly_different_arms_give_p_below_001_with_5_seeds():
    # A 2-point gap at 0.3-point seed noise: the power at p < 0.01 is 1 - 1e-6, so any draw must pass.
    assert stats.power_t_test(5, SEED_SD, 0.02, alpha=0.01) > 1 - 1e-6
    rng = np.random.default_rng(15)
    for _ in range(20):
        r = stats.welch(rng.normal(0.920, SEED_SD, 5), rng.normal(0.900, SEED_SD, 5))
        assert r.p_value < 0.01 and r.ci95[0] > 0
    # A 1-point gap is found at p < 0.01 about as often as the power calculation says (~94 %):
    # the p-values are right, not just small.
    hits = sum(stats.welch(rng.normal(0.910, SEED_SD, 5), rng.normal(0.900, SEED_SD, 5)).p_value < 0.01 for _ in range(400))
    expected = stats.power_t_test(5, SEED_SD, 0.01, alpha=0.01)
    assert expected > 0.9
    assert abs(hits / 400 - expected) < 4 * math.sqrt(expected * (1 - expected) / 400) + 0.02  # 4 binomial sd + Welch vs Student


@pytest.mark.slow  # 4,000 repeats
def test_false_positive_rate_of_equal_arms_stays_near_005():
    """4,000 repeats: the rate's binomial sd is sqrt(0.05 * 0.95 / 4000) = 0.0034, so 4 sd = +-0.014.

    Welch's test with 5 seeds per arm and equal spreads is very slightly conservative
    (its df estimate is below the 8 of Student's), which this band allows.
    """
    rng = np.random.default_rng(2026)
    repeats = 4000
    hits = sum(stats.welch(rng.normal(0.9, SEED_SD, 5), rng.normal(0.9, SEED_SD, 5)).p_value < 0.05 for _ in range(repeats))
    rate = hits / repeats
    tol = 4 * math.sqrt(0.05 * 0.95 / repeats)
    assert abs(rate - 0.05) < tol, rate


def test_single_run_t_false_positive_rate_stays_near_005():
    """One run against 3 seeds of an equally good recipe, 4,000 repeats (4 binomial sd = +-0.014).

    The exact rate is 0.05.  A one-sample t-test of the seeds' mean against the one run, which forgets
    that run's own seed noise, would reject about 16 % of the time here (`ttest_1samp`, 20,000 draws); the test must not."""
    rng = np.random.default_rng(21)
    repeats = 4000
    hits = sum(stats.single_run_t(rng.normal(0.9, SEED_SD), rng.normal(0.9, SEED_SD, 3)).p_value < 0.05
               for _ in range(repeats))
    assert abs(hits / repeats - 0.05) < 4 * math.sqrt(0.05 * 0.95 / repeats), hits / repeats


@pytest.mark.slow  # 2,000 repeats
def test_mcnemar_false_positive_rate_is_at_most_005():
    """Two equally good models (independent errors at 90 %) on 1,000 images, 2,000 repeats.
    The exact test is conservative: its rate may be below 0.05 but not above (4 binomial sd)."""
    rng = np.random.default_rng(7)
    repeats = 2000
    hits = sum(stats.mcnemar(rng.uniform(size=1000) < 0.9, rng.uniform(size=1000) < 0.9).p_value < 0.05 for _ in range(repeats))
    assert hits / repeats < 0.05 + 4 * math.sqrt(0.05 * 0.95 / repeats)
    assert hits / repeats > 0.02  # and not absurdly conservative
