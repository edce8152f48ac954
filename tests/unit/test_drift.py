"""Drift statistics: KS and PSI with p-values, the false-alarm budget, change points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from detector.threshold.drift import (
    change_point,
    chi2_sf,
    drift_test,
    kolmogorov_sf,
    ks_2samp,
    per_test_alpha,
    psi,
    rank_shift_z,
)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.1, 0.2, 0.3])
def test_ks_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(0)
    ref = np.sort(rng.gamma(8, size=4000))
    recent = rng.gamma(8, size=1000) * (1 + shift)
    d, p = ks_2samp(ref, recent)
    asymp = stats.ks_2samp(ref, recent, method="asymp")
    exact = stats.ks_2samp(ref, recent, method="exact")
    assert d == pytest.approx(exact.statistic, abs=1e-12)
    if exact.pvalue > 1e-12:  # where the level of a drift test lives
        assert np.log(p) == pytest.approx(np.log(asymp.pvalue), abs=0.1)
        assert np.log(p) == pytest.approx(np.log(exact.pvalue), abs=0.15)
    else:
        assert p < 1e-12


def test_kolmogorov_sf_matches_scipy() -> None:
    for x in (0.1, 0.3, 0.5, 1.0, 1.36, 2.0, 3.0):
        assert kolmogorov_sf(x) == pytest.approx(special.kolmogorov(x), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 9, 10, 19])
def test_chi2_sf_matches_scipy(k: int) -> None:
    for x in (0.0, 0.5, 3.0, 10.0, 30.0, 60.0):
        assert chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-9, abs=1e-300)
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


@pytest.mark.parametrize("statistic", ["ks", "psi"])
def test_p_values_hold_their_level_without_drift(statistic: str) -> None:
    """The false-alarm budget rests on this: under no drift, P(p < alpha) <= alpha."""
    rng = np.random.default_rng(1)
    p = np.array([
        drift_test(rng.gamma(8, size=2000), rng.gamma(8, size=1000), statistic).p_value  # type: ignore[arg-type]
        for _ in range(1500)
    ])  # fmt: skip
    for alpha in (0.1, 0.01):
        assert (p < alpha).mean() < 1.6 * alpha
    assert (p < 0.1).mean() > 0.04  # not vacuous: p-values are spread, not all near 1


@pytest.mark.parametrize("statistic", ["ks", "psi"])
def test_a_small_shift_is_detected(statistic: str) -> None:
    rng = np.random.default_rng(2)
    result = drift_test(rng.gamma(8, size=4000), 1.15 * rng.gamma(8, size=1000), statistic)  # type: ignore[arg-type]
    assert result.p_value < 1e-6
    assert (result.reference_n, result.recent_n) == (4000, 1000)


def test_psi_of_identical_samples_is_zero_and_grows_with_the_shift() -> None:
    x = np.sort(np.random.default_rng(3).normal(size=5000))
    assert psi(x, x)[0] == pytest.approx(0.0, abs=1e-12)
    values = [psi(x, x + s)[0] for s in (0.1, 0.3, 0.6)]
    assert values == sorted(values)


def test_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError):
        ks_2samp(np.empty(0), np.ones(3))
    with pytest.raises(ValueError):
        psi(np.ones(3), np.empty(0))


def test_per_test_alpha_spends_the_budget_by_the_union_bound() -> None:
    assert per_test_alpha(1.0, 500) == pytest.approx(5e-4)
    assert per_test_alpha(10.0, 1000) == pytest.approx(1e-2)
    assert per_test_alpha(1e6, 1000) == 0.5


@pytest.mark.parametrize("at", [150, 400, 800])
def test_change_point_finds_a_level_shift(at: int) -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.gamma(8, size=at), 1.4 * rng.gamma(8, size=1000 - at)])
    assert abs(change_point(x) - at) < 60
    assert change_point(np.ones(1)) == 0


def test_rank_shift_z_is_standard_normal_without_a_shift_and_large_with_one() -> None:
    rng = np.random.default_rng(0)
    nulls = [rank_shift_z(rng.gamma(8, size=900), rng.gamma(8, size=500)) for _ in range(400)]
    assert abs(np.mean(nulls)) < 0.2 and 0.85 < np.std(nulls) < 1.15
    # one-sided: a bulk 10% higher is far out, one 10% lower far out the other way
    older = rng.gamma(8, size=2000)
    assert rank_shift_z(older, rng.gamma(8, size=500) * 1.1) > 4
    assert rank_shift_z(older, rng.gamma(8, size=500) * 0.9) < -4
    # ties count half; empty samples say nothing
    assert rank_shift_z(np.ones(10), np.ones(10)) == 0.0
    assert rank_shift_z(np.empty(0), older) == 0.0
