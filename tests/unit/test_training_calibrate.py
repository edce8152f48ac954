"""Threshold calibration: the promised false-alarm rate holds on fresh normal data."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import MIN_TAIL_EXCESSES, calibrate, gpd_quantile, reference_errors


@pytest.mark.parametrize("method", ["empirical", "gpd"])
@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.exponential(size=n),
        lambda rng, n: rng.lognormal(sigma=0.6, size=n),
        lambda rng, n: rng.chisquare(df=4, size=n) / 140,  # like a mean of squared errors
    ],
)
def test_realised_far_is_close_to_target_on_fresh_data(method: str, draw) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    realised = []
    for _ in range(20):
        calibration = draw(rng, 2500)
        fresh = draw(rng, 20_000)
        thr = calibrate(calibration, 0.01, method).value  # type: ignore[arg-type]
        realised.append(np.mean(fresh > thr))
    # Averaged over repetitions the promise holds within 15 %, and no single run is off by 2x.
    assert abs(np.mean(realised) - 0.01) < 0.0015
    assert min(realised) > 0.005 and max(realised) < 0.02


def test_gpd_is_less_noisy_than_the_empirical_quantile_on_a_heavy_tail() -> None:
    rng = np.random.default_rng(1)
    emp, gpd = [], []
    for _ in range(40):
        x = rng.pareto(4.0, size=800)
        emp.append(calibrate(x, 0.01, "empirical").value)
        gpd.append(calibrate(x, 0.01, "gpd").value)
    true_q = (1 - 0.99) ** (-1 / 4.0) - 1
    assert abs(np.median(gpd) - true_q) / true_q < 0.1
    assert np.std(gpd) < np.std(emp)


def test_gpd_falls_back_when_the_tail_is_too_small() -> None:
    x = np.random.default_rng(2).exponential(size=MIN_TAIL_EXCESSES * 5)  # tail of 15 < 30
    rec = calibrate(x, 0.01, "gpd")
    assert "empirical" in rec.method and "GPD fit not possible" in rec.method
    assert rec.value == pytest.approx(np.quantile(x, 0.99))
    assert gpd_quantile(np.ones(1000), 0.99) is None  # no spread in the tail


def test_recommendation_fields() -> None:
    x = np.random.default_rng(3).exponential(size=3000)
    rec = calibrate(x, 0.02, "gpd")
    assert rec.target_far == 0.02
    assert rec.n_samples == 3000
    assert rec.method.startswith("GPD tail fit")


def test_bad_calibration_input() -> None:
    with pytest.raises(ValueError, match="no held-out"):
        calibrate(np.array([]), 0.01)
    with pytest.raises(ValueError, match="target_far"):
        calibrate(np.ones(10), 1.5)


def test_reference_errors_keep_quantiles_and_a_sorted_sample() -> None:
    x = np.random.default_rng(4).exponential(size=5000)
    ref = reference_errors(x, "out-of-fold, 5 folds", target_far=0.005, max_sample=1000)
    assert ref.n == 5000
    assert len(ref.sample) == 1000
    assert ref.sample == sorted(ref.sample)
    assert set(ref.sample) <= set(x.tolist())
    assert ref.quantiles["0.995"] == pytest.approx(np.quantile(x, 0.995))
    assert ref.quantiles["0.5"] < ref.quantiles["0.99"]
    small = reference_errors(x[:10], "tiny", target_far=0.01)
    assert len(small.sample) == 10
