"""Tail estimators: empirical quantile, GPD fits (plain, censored), SPOT, censored thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detector.threshold.tails import (
    GpdFit,
    empirical_quantile,
    estimate_threshold,
    fit_gpd,
    fit_truncated_exponential,
    guard_bias,
    spot_quantile,
)

EMPTY = np.empty(0)


@pytest.mark.parametrize("seed", range(5))
def test_empirical_quantile_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.gamma(3.0, size=int(rng.integers(1, 3000)))
    for level in (0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0):
        assert empirical_quantile(x, level) == pytest.approx(np.quantile(x, level), rel=1e-12)


def test_empirical_quantile_rejects_empty_input_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="no values"):
        empirical_quantile(EMPTY, 0.5)
    with pytest.raises(ValueError, match="level"):
        empirical_quantile(np.ones(3), 1.5)


@pytest.mark.parametrize("xi", [-0.3, 0.0, 0.2, 0.5])
def test_gpd_fit_reaches_scipys_maximum_likelihood(xi: float) -> None:
    rng = np.random.default_rng(1)
    y = stats.genpareto.rvs(xi, scale=2.0, size=2000, random_state=rng)
    fit = fit_gpd(y)
    assert fit is not None
    c, _, scale = stats.genpareto.fit(y, floc=0)
    scipy_ll = float(stats.genpareto.logpdf(y, c, 0, scale).sum())
    ours_ll = float(stats.genpareto.logpdf(y, fit.xi, 0, fit.sigma).sum())
    assert ours_ll == pytest.approx(fit.loglik, abs=1e-6)
    assert ours_ll >= scipy_ll - 0.01  # at the same maximum (grid resolution)
    assert fit.xi == pytest.approx(c, abs=0.01)
    assert fit.sigma == pytest.approx(scale, rel=0.01)


@pytest.mark.parametrize("xi", [-0.2, 0.0, 0.3])
def test_censored_gpd_fit_recovers_the_parameters(xi: float) -> None:
    rng = np.random.default_rng(2)
    y = stats.genpareto.rvs(xi, scale=2.0, size=4000, random_state=rng)
    cap = float(np.quantile(y, 0.7))  # 30% censored
    fit = fit_gpd(y[y < cap], np.full(int((y >= cap).sum()), cap))
    dropped = fit_gpd(y[y < cap])  # what ignoring the censoring would give
    assert fit is not None and dropped is not None
    assert fit.xi == pytest.approx(xi, abs=0.12)
    assert fit.sigma == pytest.approx(2.0, rel=0.12)
    assert dropped.xi < xi - 0.25  # the bias that the censored likelihood removes


def test_gpd_fit_refuses_degenerate_input() -> None:
    assert fit_gpd(np.array([1.0, 2.0])) is None
    assert fit_gpd(np.full(10, 3.0)) is None


def test_gpd_isf_inverts_the_survival_function() -> None:
    for fit in (GpdFit(2.0, 0.0, 1, 0.0), GpdFit(2.0, 0.25, 1, 0.0), GpdFit(2.0, -0.2, 1, 0.0)):
        for p in (0.5, 0.1, 1e-3):
            x = fit.isf(p)
            assert stats.genpareto.sf(x, fit.xi, 0, fit.sigma) == pytest.approx(p, rel=1e-9)


@pytest.mark.parametrize(
    ("dist", "q"),
    [(stats.expon(), 1e-3), (stats.genpareto(0.2), 1e-3), (stats.gamma(8), 2e-3)],
    ids=["exponential", "gpd0.2", "gamma8"],
)
def test_spot_extrapolates_to_small_rates(dist: stats.rv_continuous, q: float) -> None:
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(20):
        x = dist.rvs(size=5000, random_state=rng)  # q * n = 5 or 10: too few for an empirical q
        ratios.append(dist.sf(spot_quantile(x, q).value) / q)
    assert 0.6 < float(np.median(ratios)) < 1.5


def test_spot_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        spot_quantile(np.ones(10), 0.0)
    with pytest.raises(ValueError):
        spot_quantile(EMPTY, 0.01)


def test_truncated_exponential_recovers_the_rate() -> None:
    rng = np.random.default_rng(4)
    y = rng.exponential(1 / 0.7, size=20_000)
    lam = fit_truncated_exponential(y[y <= 2.0], 2.0)
    assert lam == pytest.approx(0.7, rel=0.05)
    increasing = fit_truncated_exponential(rng.uniform(0, 1, 5000) ** 0.5, 1.0)
    assert increasing is not None and increasing < 0  # density rising towards the cut
    assert fit_truncated_exponential(EMPTY, 1.0) is None


def _censored_sample(
    rng: np.random.Generator, dist: stats.rv_continuous, n: int, cut: float
) -> tuple[np.ndarray, np.ndarray]:
    x = dist.rvs(size=n, random_state=rng)
    return x[x <= cut], np.full(int((x > cut).sum()), cut)


@pytest.mark.parametrize("tail", ["exponential", "gpd"])
@pytest.mark.parametrize("dist", [stats.gamma(8), stats.lognorm(0.5), stats.expon()],
                         ids=["gamma8", "lognormal", "exponential"])  # fmt: skip
def test_censored_estimate_is_calibrated(tail: str, dist: stats.rv_continuous) -> None:
    """Censored at the true 1% point (the steady state), the estimate's rate is right on average.

    Dropping the censored values instead would give a 1% quantile of the truncated sample, a
    rate near 2%: the censoring bias.
    """
    q = 0.01
    cut = float(dist.ppf(1 - q))
    rng = np.random.default_rng(5)
    bias = guard_bias(dist.rvs(size=2000, random_state=rng), q)  # as the bank does, once
    ratios, dropped, guarded = [], [], 0
    for _ in range(60):
        unc, cen = _censored_sample(rng, dist, 5000, cut)
        est = estimate_threshold(unc, cen, q, tail=tail, guard_bias=bias)  # type: ignore[arg-type]
        guarded += est.path == "guarded"
        ratios.append(dist.sf(est.value) / q)
        dropped.append(dist.sf(np.quantile(unc, 1 - q)) / q)
    assert 0.85 < float(np.mean(ratios)) < 1.2
    assert guarded <= 15  # the guard seldom second-guesses clean counts (and stays calibrated)
    assert float(np.mean(dropped)) > 1.8


def test_guard_stops_anomalies_inflating_the_censored_count() -> None:
    dist = stats.gamma(8)
    q = 0.01
    cut = float(dist.ppf(1 - q))
    rng = np.random.default_rng(6)
    bias = guard_bias(dist.rvs(size=2000, random_state=rng), q)
    for _ in range(10):
        unc, cen = _censored_sample(rng, dist, 5000, cut)
        anomalies = np.full(250, cut)  # 5% of windows, flagged: censored like the rest
        clean = estimate_threshold(unc, cen, q, guard_bias=bias)
        dirty = estimate_threshold(unc, np.concatenate([cen, anomalies]), q, guard_bias=bias)
        unguarded = estimate_threshold(unc, np.concatenate([cen, anomalies]), q, slack=1e9)
        assert clean.path != "guarded"
        assert dirty.path == "guarded"
        assert dirty.expected_censored is not None and dirty.expected_censored < 80
        assert 0.5 < dist.sf(dirty.value) / q < 1.3  # the guarded estimate is still calibrated
        assert dist.sf(unguarded.value) / q < 0.3  # trusting the count raises the bar


@pytest.mark.parametrize(
    ("dist", "low", "high"),
    [(stats.gamma(8), 1.1, 2.0), (stats.expon(), 0.7, 1.4), (stats.lomax(4), 0.3, 0.8)],
    ids=["gamma8", "exponential", "pareto4"],
)
def test_guard_bias_measures_the_tail_models_error(
    dist: stats.rv_continuous, low: float, high: float
) -> None:
    """The exponential overstates light tails and understates heavy ones; the factor says so."""
    rng = np.random.default_rng(7)
    assert low < guard_bias(dist.rvs(size=20_000, random_state=rng), 0.01) < high
    assert guard_bias(np.ones(50), 0.01) == 1.0  # too small to tell


def test_uncensored_small_sample_paths() -> None:
    assert math.isnan(estimate_threshold(EMPTY, EMPTY, 0.01).value)
    est = estimate_threshold(np.arange(1000.0), EMPTY, 0.01)
    assert est.path == "empirical"
    assert est.value == pytest.approx(np.quantile(np.arange(1000.0), 0.99))
