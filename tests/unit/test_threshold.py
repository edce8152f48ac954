"""ThresholdBank's contract (quantile method): fallback, protection, bounded steps, LRU, dirty set,
persistence. The adaptive method's own contract is in test_threshold_adaptive.py."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from pydantic import ValidationError

from detector.errors import ConfigError, DetectorError, ThresholdStateError
from detector.events import (
    DriftDetected,
    Event,
    RetrainRecommended,
    ThresholdRecalibrated,
    encode_event,
    parse_event,
)
from detector.threshold.bank import (
    SNAPSHOT_VERSION,
    ThresholdBank,
    ThresholdConfig,
    ThresholdInfo,
)

REF = np.random.default_rng(100).gamma(8, size=2000)
SMALL = {"method": "quantile", "window": 1000, "min_samples": 200, "recalibrate_every": 50,
         "drift_check_every": 250, "drift_recent": 400, "drift_reference_min": 400}  # fmt: skip


def bank(**config: object) -> ThresholdBank:
    return ThresholdBank(ThresholdConfig.model_validate({**SMALL, **config}), REF, 15.5)


def feed(
    b: ThresholdBank,
    scores: np.ndarray,
    source: str = "s",
    start: int = 0,
    open_every: int = 0,
) -> tuple[list[ThresholdInfo], list[Event]]:
    """Judge and learn window by window; every ``open_every``-th window reports an episode."""
    infos, events = [], []
    for i, score in enumerate(scores.tolist(), start):
        info = b.get(source)
        infos.append(info)
        in_episode = bool(open_every) and i % open_every < 3
        events += b.update(source, score, i, flagged=score > info.value, episode_open=in_episode)
    return infos, events


def gamma(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(8, size=n) * scale


# -- configuration and warm start ----------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"min_samples": 2000},  # more than the window
        {"target_far": 0.001},  # an empirical quantile cannot resolve 1 in 1000 in 1000 scores
        {"retrain_rearm_ratio": 4.0},  # re-arming outside the advice limit
        {"drift_recent": 800},  # recent + reference beyond the window
        {"shift_recent": 1000},  # no older part left to compare the recent one with
        {"target_far": 0.6},
        {"unknown": 1},
    ],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ThresholdConfig.model_validate({**SMALL, **bad})


def test_small_rates_are_fine_with_spot() -> None:
    cfg = ThresholdConfig.model_validate({**SMALL, "method": "spot", "target_far": 0.001})
    assert cfg.target_far == 0.001


def test_a_bad_bundle_reference_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ThresholdBank(ThresholdConfig(), REF, 0.0)
    with pytest.raises(ConfigError):
        ThresholdBank(ThresholdConfig(), np.array([1.0, np.nan]), 1.0)


def test_warm_start_comes_from_the_bundle() -> None:
    q = bank(method="quantile").global_info
    assert q == ThresholdInfo(float(np.quantile(REF, 0.99)), "quantile", 0.01, 2000, None, "global")
    static = bank(method="static").global_info
    assert (static.value, static.method) == (15.5, "static")
    spot = bank(method="spot").global_info
    assert spot.method == "spot" and abs(spot.value / q.value - 1) < 0.1
    # too small a reference to resolve the rate: the bundle's recommendation
    tiny = ThresholdBank(ThresholdConfig(method="quantile"), REF[:100], 15.5).global_info
    assert (tiny.value, tiny.method) == (15.5, "static")


# -- fallback, first calibration, provenance -----------------------------------------------


def test_global_fallback_until_min_samples_then_the_sources_own() -> None:
    b = bank()
    assert b.get("new") == b.global_info and "new" not in b  # get() creates nothing
    infos, events = feed(b, gamma(1, 199))
    assert all(i == b.global_info for i in infos) and events == []
    _, events = feed(b, gamma(2, 1), start=199)
    assert len(events) == 1
    first = events[0]
    assert isinstance(first, ThresholdRecalibrated)
    assert (first.reason, first.old, first.samples_used) == ("first", b.global_info.value, 200)
    info = b.get("s")
    assert (info.scope, info.method, info.value, info.set_at_ms) == ("source", "quantile",
                                                                     first.new, 199)  # fmt: skip
    assert b.value("s") == info.value


def test_every_step_is_bounded_and_every_change_is_an_event() -> None:
    b = bank(max_step_ratio=1.25)
    infos, events = feed(b, gamma(3, 6000, scale=4.0))  # errors four times the reference
    changes = [e for e in events if isinstance(e, ThresholdRecalibrated)]
    assert len(changes) >= 6
    for e in changes:
        assert 1 / 1.25 - 1e-12 <= e.new / e.old <= 1.25 + 1e-12  # type: ignore[operator]
    values = [i.value for i in infos]
    moves = {(a, c) for a, c in itertools.pairwise(values) if a != c}
    assert moves == {(e.old, e.new) for e in changes}  # no silent change
    assert b.get("s").value > 3.0 * b.global_info.value  # it did get there, step by step


def test_the_threshold_is_frozen_while_an_episode_is_open() -> None:
    b = bank()
    feed(b, gamma(4, 1500))
    before = b.stats("s")
    frozen = b.get("s")
    for i, score in enumerate(gamma(5, 400, scale=3.0).tolist()):
        assert b.update("s", score, 10_000 + i, flagged=True, episode_open=True) == [] or i == 0
    after = b.stats("s")
    assert b.get("s") == frozen
    assert after.excluded_episode - before.excluded_episode >= 399
    assert after.window_n - before.window_n <= 1  # at most the opening window, censored


def test_flagged_windows_enter_censored_and_invalid_scores_not_at_all() -> None:
    b = bank()
    feed(b, gamma(6, 300))
    st = b.stats("s")
    b.update("s", 1e9, 300, flagged=True, episode_open=False)
    for bad in (float("nan"), float("inf"), -1.0):
        b.update("s", bad, 301, flagged=False, episode_open=False)
    st2 = b.stats("s")
    assert st2.censored == st.censored + 1 and st2.window_censored == st.window_censored + 1
    assert st2.invalid == st.invalid + 3 and st2.window_n == st.window_n + 1
    assert st2.seen == st.seen + 4


def test_sources_are_independent_of_each_other_and_of_interleaving() -> None:
    a_scores, b_scores = gamma(7, 3000), gamma(8, 3000, scale=2.0)
    alone = bank()
    a_alone = feed(alone, a_scores, "a")
    mixed = bank()
    rng = np.random.default_rng(9)
    order = rng.permutation(np.r_[np.zeros(3000, int), np.ones(3000, int)])
    got: dict[str, tuple[list[ThresholdInfo], list[Event]]] = {"a": ([], []), "b": ([], [])}
    pos = {"a": 0, "b": 0}
    for which in order:
        src = "ab"[which]
        scores = a_scores if src == "a" else b_scores
        info, events = feed(mixed, scores[pos[src] : pos[src] + 1], src, start=pos[src])
        got[src][0].extend(info)
        got[src][1].extend(events)
        pos[src] += 1
    assert got["a"] == a_alone


# -- bounded memory ------------------------------------------------------------------------


def test_least_recently_updated_sources_are_evicted_beyond_the_cap() -> None:
    b = bank(max_sources=3)
    for i, src in enumerate(["a", "b", "c", "a", "d", "e"]):
        b.update(src, 10.0, i, flagged=False, episode_open=False)
    assert b.sources() == ["a", "d", "e"] and len(b) == 3
    assert b.evictions == 2
    assert b.get("b") == b.global_info
    assert b.dirty() == {"a", "d", "e"}


def test_a_window_never_outgrows_its_size() -> None:
    b = bank()
    feed(b, gamma(10, 5000))
    assert b.stats("s").window_n == 1000
    assert len(b.snapshot("s")) < 4 * 1000 + 2000


def test_dirty_set_and_drop() -> None:
    b = bank()
    for src in ("a", "b", "c"):
        b.update(src, 10.0, 0, flagged=False, episode_open=False)
    assert b.dirty() == {"a", "b", "c"}
    b.clear_dirty()
    assert b.dirty() == set()
    b.update("b", 10.0, 1, flagged=False, episode_open=False)
    assert b.dirty() == {"b"}
    b.drop(["b", "zzz"])
    assert "b" not in b and b.dirty() == set() and b.sources() == ["a", "c"]


# -- persistence -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["quantile", "spot", "static"])
def test_snapshot_restore_gives_identical_future_behaviour(method: str) -> None:
    history, future = gamma(11, 2600, scale=1.3), gamma(12, 2500, scale=1.6)
    original = bank(method=method)
    feed(original, history, open_every=97)
    blob = original.snapshot("s")

    restored = bank(method=method)
    restored.restore("s", blob)
    assert restored.get("s") == original.get("s")
    assert restored.stats("s") == original.stats("s")
    assert restored.dirty() == set()  # restored state is what is persisted
    assert restored.snapshot("s") == blob

    expected = feed(original, future, start=2600, open_every=97)
    actual = feed(restored, future, start=2600, open_every=97)
    assert actual == expected
    assert any(isinstance(e, ThresholdRecalibrated) for e in expected[1]) or method == "static"


def test_restore_with_a_smaller_window_keeps_the_newest_scores() -> None:
    b = bank()
    feed(b, gamma(13, 1500))
    cfg = ThresholdConfig.model_validate(
        {**SMALL, "window": 800, "drift_recent": 300, "drift_reference_min": 300}
    )
    small = ThresholdBank(cfg, REF, 15.5)
    small.restore("s", b.snapshot("s"))
    assert small.stats("s").window_n == 800
    assert small.get("s") == b.get("s")


def _corrupt(blob: bytes, at: int, value: bytes) -> bytes:
    return blob[:at] + value + blob[at + len(value) :]


def test_unusable_snapshots_are_refused_and_leave_the_bank_unchanged() -> None:
    b = bank()
    feed(b, gamma(14, 600))
    good = b.snapshot("s")
    other_bundle = ThresholdBank(ThresholdConfig.model_validate(SMALL), REF * 1.01, 15.5)
    head_len = struct.unpack_from("<I", good, 5)[0]
    nan_body = good[: 9 + head_len] + np.full(1, np.nan, "<f4").tobytes() + good[9 + head_len + 4 :]
    cases = {
        "truncated": good[:5],
        "not a snapshot": b"hello world",
        "format": _corrupt(good, 4, bytes([SNAPSHOT_VERSION + 1])),
        "header": _corrupt(good, 9, b"}"),
        "body": good[:-4],
        "nan": nan_body,
    }
    target = bank()
    feed(target, gamma(15, 300), "s")
    before = target.stats("s")
    for name, blob in cases.items():
        with pytest.raises(ThresholdStateError):
            target.restore("s", blob)
        assert target.stats("s") == before, name
    with pytest.raises(ThresholdStateError, match="another bundle"):
        other_bundle.restore("s", good)
    with pytest.raises(ThresholdStateError, match="offered for"):
        target.restore("t", good)
    assert issubclass(ThresholdStateError, DetectorError)


def test_snapshot_of_an_unknown_source_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        bank().snapshot("nobody")


# -- events ----------------------------------------------------------------------------------


def test_events_round_trip_through_json() -> None:
    events: list[Event] = [
        ThresholdRecalibrated(source_id="s", at_ms=1, old=None, new=2.0, method="quantile",
                              target_far=0.01, samples_used=500, reason="first"),
        DriftDetected(source_id="s", at_ms=2, statistic="psi", value=0.3, p_value=None,
                      reference_n=4000, recent_n=1000),
        RetrainRecommended(source_id="s", at_ms=3, reason="threshold_ratio",
                           statistic="threshold_ratio", value=3.2, limit=3.0),
    ]  # fmt: skip
    for event in events:
        assert parse_event(encode_event(event)) == event
    with pytest.raises(ValidationError):
        parse_event(b'{"type": "threshold_exploded", "source_id": "s", "at_ms": 1}')


def test_a_bulk_moving_up_is_followed_not_guarded_against() -> None:
    """Anomalies add a tail, drift moves the bulk: with the newest 500 scores 30% higher than
    the 1500 before them (the rank test is far beyond ``shift_z``), the estimate comes from them
    alone and trusts their flagged count (no guard, no warm-start prior). With the shift test
    off the estimate mixes both levels and lags behind the new one."""

    def feed(bank: ThresholdBank) -> list[ThresholdRecalibrated]:
        events: list[ThresholdRecalibrated] = []
        scores = np.concatenate([gamma(1, 1500), gamma(2, 600, scale=1.3)])
        for i, score in enumerate(scores.tolist()):
            flagged = score > bank.value("s")
            for e in bank.update("s", score, i, flagged=flagged, episode_open=False):
                if isinstance(e, ThresholdRecalibrated):
                    events.append(e)
        return events

    ref = gamma(0, 2000)
    cfg = {"method": "quantile", "drift_statistic": "off", "min_samples": 500}
    on = feed(ThresholdBank(ThresholdConfig(**cfg), ref, float(np.quantile(ref, 0.99))))
    off = feed(
        ThresholdBank(ThresholdConfig(**cfg, shift_recent=0), ref, float(np.quantile(ref, 0.99)))
    )
    recent = [e for e in on if e.estimator and e.estimator.startswith("recent-")]
    assert recent and all(e.samples_used == 500 and e.prior_samples == 0 for e in recent)
    q99 = float(np.quantile(ref, 0.99))
    assert on[-1].new > 1.15 * q99  # it followed the new level (1.3x) up
    assert off[-1].new < 1.15 * q99  # the whole window's estimate still lags far behind
    assert all(not (e.estimator or "").startswith("recent-") for e in off)
