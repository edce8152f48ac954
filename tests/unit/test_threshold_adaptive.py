"""The adaptive threshold's promise, through the same core the service runs (no Kafka).

Each test streams windows whose MeanScorer score is chosen, through ``build_decider`` with the
default settings unless it says otherwise, and checks the realised flag rate, the events and
the alerts. The first two are the failure modes measured on real recordings (issue 13): the
freeze deadlock and the downward ratchet; both fail with the previous defaults
(``method="quantile"``, no sustained-shift rule), which :data:`OLD_DEFAULTS` reproduces.
"""

from __future__ import annotations

import numpy as np
import pytest

from detector.backtest import BacktestRun, replay_records, window_records
from detector.core import build_decider
from detector.events import ThresholdRecalibrated
from detector.settings import LifecycleSettings
from detector.threshold import ThresholdBank, ThresholdConfig
from detector.threshold.adaptive import ReferenceTail, adaptive_value, log_level, reference_tail
from tests.unit.helpers import MeanScorer, make_manifest

TARGET = 0.01
WINDOW = 8
OLD_DEFAULTS = ({"method": "quantile"}, {"shift_after_windows": 0})


def run(
    scores: np.ndarray,
    threshold: dict[str, object] | None = None,
    lifecycle: dict[str, object] | None = None,
) -> BacktestRun:
    """Stream one window per score (one source) through a fresh core."""
    manifest = make_manifest(window=WINDOW)
    core = build_decider(
        manifest,
        ThresholdConfig.model_validate(threshold or {}),
        LifecycleSettings.model_validate(lifecycle or {}),
    )
    values = np.repeat(scores.astype(np.float32)[:, None], WINDOW, axis=1)[:, :, None]
    times = np.arange(scores.shape[0], dtype=np.int64) * 1000
    records = window_records(values, ["pump-1"] * scores.shape[0], times)
    return replay_records(core, MeanScorer().score, records)


def flag_rate(result: BacktestRun, start: int) -> float:
    return float(np.mean(result.flags[start:]))


def normal(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """Normal scores shaped like the bundle reference of make_manifest (uniform 0-0.9)."""
    return rng.uniform(0.0, 0.9, size=n) * scale


# -- the failure modes of issue 13 ---------------------------------------------------------


def shifted_stream() -> np.ndarray:
    """200 windows like the training rows, then a level shift that never goes away."""
    rng = np.random.default_rng(0)
    return np.concatenate([normal(rng, 200), 3.0 + normal(rng, 4000, scale=2.0)])


def test_a_sustained_shift_ends_the_episode_and_the_threshold_learns_it() -> None:
    result = run(shifted_stream())
    shifts = [e for e in result.events if e.type == "shift_accepted"]
    assert len(shifts) == 1
    assert shifts[0].windows == LifecycleSettings().shift_after_windows
    resolved = [a for a in result.alerts if a.state.value == "resolved"]
    assert any("sustained shift" in (a.resolved_reason or "") for a in resolved)
    recal = [e for e in result.events if e.type == "threshold_recalibrated"]
    assert any(e.reason == "shift" for e in recal)
    # after the shift was accepted the promise holds again
    assert 0.5 * TARGET <= flag_rate(result, 1200) <= 2.0 * TARGET


def test_the_freeze_deadlock_of_the_old_defaults_is_what_the_test_above_catches() -> None:
    old = run(shifted_stream(), *OLD_DEFAULTS)
    assert not [e for e in old.events if e.type == "shift_accepted"]
    assert flag_rate(old, 1200) > 0.9  # frozen for ever: every window flagged


def ratchet_stream() -> np.ndarray:
    """Stationary, autocorrelated, heavier-tailed than the reference: real operations metrics."""
    rng = np.random.default_rng(3)
    n = 8000
    x = np.empty(n)
    x[0] = 0.0
    for i in range(1, n):
        x[i] = 0.9 * x[i - 1] + rng.normal(0.0, 0.35)
    return np.exp(x) * 0.4


def test_no_downward_ratchet_on_a_stationary_stream_unlike_the_reference() -> None:
    result = run(ratchet_stream())
    own = result.scopes.index("source")
    assert 0.5 * TARGET <= flag_rate(result, own + 1000) <= 2.0 * TARGET
    thresholds = np.asarray(result.thresholds[own:])
    first, last = np.median(thresholds[:1000]), np.median(thresholds[-1000:])
    assert last >= 0.8 * first  # no walk down


def test_the_old_defaults_ratchet_on_the_same_stream() -> None:
    old = run(ratchet_stream(), *OLD_DEFAULTS)
    assert flag_rate(old, 2000) > 2.0 * TARGET


# -- incidents are still caught, and do not move the bar -----------------------------------


def test_short_incidents_alert_and_are_not_learnt() -> None:
    rng = np.random.default_rng(1)
    scores = normal(rng, 12_000)  # incidents much rarer than the target rate, as in operation
    incidents = [3000, 6000, 9000]
    for start in incidents:
        scores[start : start + 20] = 5.0
    result = run(scores)
    assert all(result.episode_ids[start] for start in incidents)  # each one is alerted on
    assert not [e for e in result.events if e.type == "shift_accepted"]
    flags = np.asarray(result.flags)
    assert all(flags[s : s + 20].all() for s in incidents)  # the bar did not rise during one
    normal_mask = np.ones(12_000, dtype=bool)
    for start in incidents:
        normal_mask[start : start + 20] = False
    normal_mask[:500] = False
    far = flags[normal_mask].mean()
    assert 0.5 * TARGET <= far <= 2.0 * TARGET


def margins(result: BacktestRun, after_ms: int, before_ms: int) -> list[float]:
    """The margin of every recalibration between two event times."""
    return [
        e.margin
        for e in result.events
        if isinstance(e, ThresholdRecalibrated)
        and e.margin is not None
        and after_ms < e.at_ms < before_ms
    ]


def test_a_long_incident_spends_a_bounded_budget() -> None:
    rng = np.random.default_rng(2)
    scores = normal(rng, 5000)
    scores[2000:2200] = 5.0  # 200 windows, under shift_after_windows
    result = run(scores)
    before = margins(result, 0, 2_000_000)
    after = margins(result, 2_200_000, 10**9)
    assert before and after
    # 10 flags counted at most (plus the windows around it): exp(0.03 * 11) at most
    assert after[0] <= before[-1] * np.exp(0.03 * 11)


def test_shift_policy_off_keeps_the_freeze_and_says_so_in_settings() -> None:
    result = run(shifted_stream(), None, {"shift_after_windows": 0})
    assert not [e for e in result.events if e.type == "shift_accepted"]
    assert "0: never" in (LifecycleSettings.model_fields["shift_after_windows"].description or "")


# -- the pieces ------------------------------------------------------------------------------


def test_reference_tail_reads_the_quantile_of_standardised_log_scores() -> None:
    ref = np.random.default_rng(0).lognormal(0.0, 0.5, size=20_000)
    tail = reference_tail(ref, 0.01)
    assert tail.resolved
    level, spread = log_level(ref)
    value = adaptive_value(level, spread, 1.0, tail)
    assert value == pytest.approx(np.quantile(ref, 0.99), rel=0.02)


def test_a_reference_too_small_for_the_rate_is_extrapolated_and_said_so() -> None:
    ref = np.random.default_rng(0).lognormal(0.0, 0.5, size=60)
    tail = reference_tail(ref, 0.01)
    assert not tail.resolved
    assert tail.k > (np.log(ref).max() - np.median(np.log(ref))) / tail.spread * 0.5


def test_the_spread_is_floored_so_a_constant_source_does_not_flag_noise() -> None:
    tail = ReferenceTail(k=2.0, spread=1.0, resolved=True)
    assert adaptive_value(0.0, 0.0, 1.0, tail) == pytest.approx(np.exp(0.2))


def test_state_round_trips_mid_episode_bit_for_bit() -> None:
    scores = shifted_stream()[:400]
    cfg = ThresholdConfig()
    ref = make_manifest(window=WINDOW).reference_errors.sample
    a = ThresholdBank(cfg, ref, 1.0)
    for i, s in enumerate(scores[:350]):
        value = a.value("s")
        flagged = bool(s > value)
        a.update("s", float(s), i, flagged=flagged, episode_open=flagged or i > 200)
    b = ThresholdBank(cfg, ref, 1.0)
    b.restore("s", a.snapshot("s"))
    assert a.snapshot("s") == b.snapshot("s")
    assert a.stats("s") == b.stats("s")


def test_a_slow_level_drift_is_followed_not_alerted_on() -> None:
    """A channel drifting slowly (a warming temperature) raises every score a little at a
    time: the level follows it, so windows do not all go over the threshold."""
    rng = np.random.default_rng(4)
    n = 8000
    ramp = np.linspace(1.0, 6.0, n)  # the scores' scale grows six-fold over the stream
    result = run(normal(rng, n) * ramp)
    assert not [e for e in result.events if e.type == "shift_accepted"]
    assert 0.5 * TARGET <= flag_rate(result, 500) <= 2.0 * TARGET
    assert result.thresholds[-1] > 4.0 * result.thresholds[600]


def test_one_sustained_shift_is_accepted_once_after_a_long_history() -> None:
    """After a long normal history the accepted windows replace it: a level kept from before
    would leave the median where it was, and the next window would open another episode."""
    rng = np.random.default_rng(5)
    scores = np.concatenate([normal(rng, 3000), 3.0 + normal(rng, 3000, scale=2.0)])
    result = run(scores)
    assert len([e for e in result.events if e.type == "shift_accepted"]) == 1
    assert 0.5 * TARGET <= flag_rate(result, 3000 + 600) <= 2.0 * TARGET


def test_the_flag_rate_gauge_counts_the_windows_that_open_episodes() -> None:
    """The gauge behind detector_source_flag_rate: with adaptive every flagged window opens
    (or is inside) an episode, and openers must count, or the gauge reads 0 for ever."""
    ref = make_manifest(window=WINDOW).reference_errors.sample
    bank = ThresholdBank(ThresholdConfig(), ref, 1.0)
    rng = np.random.default_rng(6)
    for i, s in enumerate(normal(rng, 3000)):
        flagged = bool(s > bank.value("s"))
        bank.update("s", float(s), i, flagged=flagged, episode_open=flagged)
    rate = bank.stats("s").flag_rate
    assert 0.2 * TARGET < rate < 5 * TARGET
