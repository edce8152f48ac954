"""Episodes: one opened, rate-limited ongoing updates, one resolved."""

from __future__ import annotations

from detector.alerts import AlertState
from detector.lifecycle import EpisodeTracker
from detector.settings import LifecycleSettings


def _run(tracker: EpisodeTracker, flags: list[bool], step_ms: int = 1000) -> list[AlertState]:
    out = []
    for i, flagged in enumerate(flags):
        t = tracker.observe("s", flagged, 1.0 + i, i * step_ms, f"ep-{i}")
        if t is not None:
            out.append(t.state)
    return out


def test_a_burst_is_one_episode_with_bounded_updates() -> None:
    tracker = EpisodeTracker(
        LifecycleSettings(ongoing_interval_s=10, resolve_after_windows=3, resolve_after_s=1e6)
    )
    states = _run(tracker, [True] * 60 + [False] * 3)
    assert states[0] is AlertState.OPENED
    assert states[-1] is AlertState.RESOLVED
    assert states.count(AlertState.OPENED) == 1
    assert states.count(AlertState.RESOLVED) == 1
    # 60 anomalous windows 1 s apart, one update per 10 s of event time at most.
    assert 1 <= states.count(AlertState.ONGOING) <= 6
    assert not tracker.is_open("s")


def test_short_normal_gaps_do_not_split_an_episode() -> None:
    tracker = EpisodeTracker(LifecycleSettings(resolve_after_windows=3, resolve_after_s=1e6))
    states = _run(tracker, [True, False, False, True, False, True] + [False] * 3)
    assert states.count(AlertState.OPENED) == 1
    assert states.count(AlertState.RESOLVED) == 1


def test_episode_resolves_after_event_time_without_anomaly() -> None:
    tracker = EpisodeTracker(LifecycleSettings(resolve_after_windows=100, resolve_after_s=5))
    states = _run(tracker, [True, False, False, False, False, False, False])
    assert states == [AlertState.OPENED, AlertState.RESOLVED]


def test_resolved_carries_peak_and_count() -> None:
    tracker = EpisodeTracker(LifecycleSettings(resolve_after_windows=1))
    tracker.observe("s", True, 2.0, 0, "ep")
    tracker.observe("s", True, 5.0, 1, "ep-x")
    t = tracker.observe("s", False, 0.1, 2, "ep-y")
    assert t is not None and t.state is AlertState.RESOLVED
    assert (t.episode.episode_id, t.episode.peak_score, t.episode.anomalous_windows) == (
        "ep",
        5.0,
        2,
    )


def test_silent_source_is_resolved_by_sweep_only_after_the_timeout() -> None:
    tracker = EpisodeTracker(LifecycleSettings(resolve_after_s=10))
    # Old event time (a replay), processed now: the sweep goes by arrival, not event time.
    tracker.observe("s", True, 2.0, 1_000, "ep", arrival_ms=1_000_000)
    assert tracker.sweep_idle(1_005_000) == []
    ((source, t),) = tracker.sweep_idle(1_011_000)
    assert source == "s" and t.state is AlertState.RESOLVED and "silent" in (t.reason or "")


def test_snapshot_restore_keeps_the_episode_open() -> None:
    a = EpisodeTracker(LifecycleSettings())
    a.observe("s", True, 2.0, 0, "ep")
    b = EpisodeTracker(LifecycleSettings())
    b.restore("s", a.snapshot("s"))
    assert b.is_open("s")
    # The restored tracker does not open a second episode for the same incident.
    t = b.observe("s", True, 3.0, 1, "ep-other")
    assert t is None or t.state is not AlertState.OPENED
    b.restore("s", None)
    assert not b.is_open("s")
