"""The acceptance claims of adaptive thresholds, on streams with a known truth.

Each test feeds a stream through a :class:`ThresholdBank` as the detector does: judge each
window against the threshold in force, run the episode lifecycle (open on a flagged window,
resolve after ``RESOLVE_AFTER`` consecutive normal ones, as :mod:`detector.lifecycle`), then
``update``. Normal scores come from a known distribution, so the realised false-alarm rate is
the share of *normal* windows flagged, counted after a warm-up. Gamma(8) scores stand in for
reconstruction errors (a mean of squared errors is chi-square-like: light-tailed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from detector.events import DriftDetected, Event, RetrainRecommended, ThresholdRecalibrated
from detector.threshold import ThresholdBank, ThresholdConfig

RESOLVE_AFTER = 3
WARMUP = 5000
TARGET = 0.01
GAMMA = stats.gamma(8)
Q99 = float(GAMMA.ppf(1 - TARGET))

Convention = Literal["after", "before"]
E = TypeVar("E", ThresholdRecalibrated, DriftDetected, RetrainRecommended)


@dataclass
class Run:
    flagged: npt.NDArray[np.bool_]
    thresholds: npt.NDArray[np.float64]
    events: list[Event] = field(default_factory=list)

    def far(self, normal: npt.NDArray[np.bool_] | None = None, start: int = WARMUP) -> float:
        """Share of normal windows flagged from ``start`` on, relative to the target."""
        mask = np.ones_like(self.flagged) if normal is None else normal.copy()
        mask[:start] = False
        return float(self.flagged[mask].mean()) / TARGET

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def run_stream(
    bank: ThresholdBank,
    scores: npt.NDArray[np.float64],
    *,
    source: str = "s",
    convention: Convention = "after",
    drop_flagged: bool = False,
) -> Run:
    """Score a stream window by window, like the detector.

    Args:
        convention: report ``episode_open`` as the state after the window (what the detector
            does) or before it.
        drop_flagged: the naive protection: flagged windows never reach the bank.
    """
    n = scores.shape[0]
    run = Run(np.zeros(n, dtype=bool), np.empty(n))
    is_open, streak = False, 0
    for i, score in enumerate(scores.tolist()):
        threshold = bank.get(source).value
        flagged = score > threshold
        was_open = is_open
        if is_open:
            streak = 0 if flagged else streak + 1
            is_open = streak < RESOLVE_AFTER
        elif flagged:
            is_open, streak = True, 0
        reported = is_open if convention == "after" else was_open
        if not (drop_flagged and flagged):
            run.events += bank.update(
                source, score, i * 1000, flagged=flagged, episode_open=reported
            )
        run.flagged[i] = flagged
        run.thresholds[i] = threshold
    return run


def gamma_bank(method: str, seed: int = 0, **config: object) -> ThresholdBank:
    """A bank warm-started from a 2000-score reference of the same distribution."""
    ref = GAMMA.rvs(size=2000, random_state=np.random.default_rng(1000 + seed))
    cfg = ThresholdConfig.model_validate({"method": method, "target_far": TARGET, **config})
    return ThresholdBank(cfg, ref, float(np.quantile(ref, 1 - cfg.target_far)))


# -- stationary --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "dist", "convention"),
    [
        ("quantile", GAMMA, "after"),
        ("quantile", GAMMA, "before"),
        ("quantile", stats.lognorm(0.5), "after"),
        ("spot", GAMMA, "after"),
        ("spot", stats.lognorm(0.5), "after"),
    ],
    ids=["quantile-gamma", "quantile-gamma-before", "quantile-lognormal", "spot-gamma",
         "spot-lognormal"],
)  # fmt: skip
def test_stationary_flagged_fraction_stays_within_30_percent(
    method: str, dist: stats.rv_continuous, convention: Convention
) -> None:
    rng = np.random.default_rng(2)
    ref = dist.rvs(size=2000, random_state=rng)
    cfg = ThresholdConfig.model_validate({"method": method})
    bank = ThresholdBank(cfg, ref, float(np.quantile(ref, 0.99)))
    run = run_stream(bank, dist.rvs(size=100_000, random_state=rng), convention=convention)
    assert 0.7 <= run.far() <= 1.3
    # and it got there by its own calibration, quietly: no drift alarm on a stationary stream
    # (the budget is 1 per 1e6 windows; measured: 1 in 3e6 over 30 streams)
    assert bank.get("s").scope == "source"
    assert run.of(DriftDetected) == []
    assert abs(bank.stats("s").flag_rate / TARGET - 1) < 0.5


def test_spot_holds_a_small_rate() -> None:
    """At 2e-3 a 5000-score window holds 10 exceedances; SPOT's tail extrapolates."""
    rng = np.random.default_rng(2)
    bank = gamma_bank("spot", target_far=0.002)
    run = run_stream(bank, GAMMA.rvs(size=150_000, random_state=rng))
    assert 0.7 <= run.far() * TARGET / 0.002 <= 1.3


def test_dropping_flagged_windows_walks_the_threshold_down() -> None:
    """Why flagged windows enter censored: leave them out and each recalibration sits lower.

    This is the same stream as the stationary test, learnt the naive way (flagged windows
    reported as episode windows, so the reference never sees the top 1%).
    """
    rng = np.random.default_rng(1)
    bank = gamma_bank("quantile")
    run = run_stream(bank, GAMMA.rvs(size=30_000, random_state=rng), drop_flagged=True)
    assert run.far(start=20_000) > 3.0
    assert run.thresholds[-1] < 0.9 * Q99


# -- anomalies -----------------------------------------------------------------------------


def _with_anomalies(
    rng: np.random.Generator, n: int, share: float, low: float, high: float, burst: int = 1
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    scores = GAMMA.rvs(size=n, random_state=rng)
    anomalous = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(rng.random(n // burst) < share) * burst
    for s in starts:
        anomalous[s : s + burst] = True
    scores[anomalous] = Q99 * rng.uniform(low, high, int(anomalous.sum()))
    return scores, anomalous


@pytest.mark.parametrize("method", ["quantile", "spot"])
@pytest.mark.parametrize(("low", "high", "burst"), [(1.0, 3.0, 1), (2.0, 6.0, 1), (1.0, 3.0, 20)],
                         ids=["isolated-1-3x", "isolated-2-6x", "bursts-of-20"])  # fmt: skip
def test_five_percent_anomalies_do_not_raise_the_threshold(
    method: str, low: float, high: float, burst: int
) -> None:
    """5% of windows anomalous (scores 1-6 times the normal 1% point): the bar stays put.

    Compared with the same normal stream without anomalies, the mean threshold after warm-up
    moves by under 7% (the guard's tail model is that accurate; over 8 seeds: -5% to +5%),
    where learning the anomalies would lift it by 50% or more (next test), and normal
    windows are still flagged within the [0.5x, 2x] band promised under drift.
    """
    seed = 3
    clean_scores = GAMMA.rvs(size=60_000, random_state=np.random.default_rng(seed))
    scores, anomalous = _with_anomalies(np.random.default_rng(seed), 60_000, 0.05, low, high, burst)
    assert 0.04 < anomalous.mean() < 0.06
    clean = run_stream(gamma_bank(method), clean_scores)
    dirty = run_stream(gamma_bank(method), scores)
    ratio = dirty.thresholds[WARMUP:].mean() / clean.thresholds[WARMUP:].mean()
    assert 0.93 < ratio < 1.07
    assert 0.5 <= dirty.far(~anomalous) <= 2.0


def test_learning_from_flagged_scores_would_raise_it() -> None:
    """The failure the protection prevents (River's and Beam's quantile filters): learn every
    window, anomalies included, and 5% anomalies lift the bar and hide their successors."""
    scores, _ = _with_anomalies(np.random.default_rng(3), 30_000, 0.05, 1.0, 3.0)
    bank = gamma_bank("quantile")
    thresholds = []
    for i, score in enumerate(scores.tolist()):
        thresholds.append(bank.get("s").value)
        bank.update("s", score, i, flagged=False, episode_open=False)  # no protection
    assert np.mean(thresholds[WARMUP:]) > 1.5 * Q99


# -- drift ---------------------------------------------------------------------------------


def _gradual(rng: np.random.Generator, n: int, end_scale: float) -> npt.NDArray[np.float64]:
    return np.asarray(GAMMA.rvs(size=n, random_state=rng)) * np.linspace(1.0, end_scale, n)


@pytest.mark.parametrize("method", ["quantile", "spot"])
def test_gradual_doubling_keeps_the_promised_rate(method: str) -> None:
    run = run_stream(gamma_bank(method), _gradual(np.random.default_rng(4), 100_000, 2.0))
    assert 0.5 <= run.far() <= 2.0
    assert 0.5 <= run.far(start=90_000) <= 2.0  # at the end too, not only on average
    assert run.thresholds[-1] > 1.7 * Q99  # it followed the drift


def test_a_static_threshold_does_not_survive_the_same_drift() -> None:
    run = run_stream(gamma_bank("static"), _gradual(np.random.default_rng(4), 100_000, 2.0))
    assert run.far() > 10.0
    assert run.of(ThresholdRecalibrated) == []


@pytest.mark.parametrize("statistic", ["ks", "psi"])
@pytest.mark.parametrize("factor", [1.3, 0.6])
def test_a_step_change_is_reported_once(statistic: str, factor: float) -> None:
    n, step = 40_000, 15_000
    scores = GAMMA.rvs(size=n, random_state=np.random.default_rng(0))
    scores[step:] *= factor
    run = run_stream(gamma_bank("quantile", drift_statistic=statistic), scores)
    drifts = run.of(DriftDetected)
    assert len(drifts) == 1, [d.at_ms for d in drifts]
    assert step * 1000 < drifts[0].at_ms < (step + 2000) * 1000
    assert drifts[0].statistic == statistic and drifts[0].p_value is not None
    assert drifts[0].alpha is not None and drifts[0].p_value < drifts[0].alpha
    # it recalibrated straight away, and the rate is back on target after the step
    assert any(e.reason == "drift" for e in run.of(ThresholdRecalibrated))
    assert 0.7 <= run.far(start=step + 5000) <= 1.3


def test_a_shift_spread_over_thousands_of_windows_is_reported_once() -> None:
    """A ramp leaves part of the shift in the window kept after the detection, so the next
    tests still see a difference: the detector stays disarmed until they no longer do."""
    scores = GAMMA.rvs(size=40_000, random_state=np.random.default_rng(0))
    scores[15_000:18_000] *= np.linspace(1.0, 1.5, 3000)
    scores[18_000:] *= 1.5
    run = run_stream(gamma_bank("quantile"), scores)
    assert len(run.of(DriftDetected)) == 1


def test_retraining_is_recommended_once_when_errors_outgrow_recalibration() -> None:
    run = run_stream(gamma_bank("quantile"), _gradual(np.random.default_rng(6), 60_000, 5.0))
    advice = run.of(RetrainRecommended)
    assert len(advice) == 1  # once, not at every recalibration beyond the limit
    ratio = advice[0].value
    assert 3.0 < ratio < 3.0 * 1.25  # as soon as the threshold crossed 3x the bundle's
    assert run.thresholds[-1] > 4.0 * Q99  # and recalibration went on absorbing the drift
