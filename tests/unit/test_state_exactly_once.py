"""Exactly-once state: a core restored from the state records of its committed batches
decides every later window as the uninterrupted core does, bit for bit.

The service publishes ``core.state_records(decisions)`` in each batch's transaction; after a
crash the compacted state topic holds the latest record per key of the committed batches.
These tests replay that without Kafka: run a stream in batches, cut it at batch boundaries,
restore a fresh core from the compacted records before the cut, run the rest, and compare
alerts, events and the final state with the uninterrupted run's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detector.core import BatchDecider, InputRecord, build_decider
from detector.events import encode_event
from detector.settings import LifecycleSettings
from detector.threshold import ThresholdConfig
from tests.unit.helpers import MeanScorer, make_manifest, record

SOURCES = ("a", "b", "c", "d")
# Small windows and intervals: thresholds recalibrate every few windows, drift tests run,
# and long episodes are accepted as shifts, so every kind of state moves between cuts.
THRESHOLDS: dict[str, dict[str, Any]] = {
    "quantile": {
        "method": "quantile", "target_far": 0.05, "window": 200, "min_samples": 20,
        "recalibrate_every": 5, "prior_weight": 50, "drift_recent": 50,
        "drift_reference_min": 50, "drift_check_every": 25, "shift_recent": 60,
    },
    "spot": {
        "method": "spot", "target_far": 0.05, "window": 200, "min_samples": 20,
        "recalibrate_every": 5, "min_peaks": 5, "drift_recent": 50, "drift_reference_min": 50,
        "drift_check_every": 25, "shift_recent": 60,
    },
    "adaptive": {
        "method": "adaptive", "level_window": 50, "level_min_samples": 10, "level_every": 3,
        "margin_rate": 0.2,
    },
}  # fmt: skip
LIFECYCLE = LifecycleSettings(
    resolve_after_windows=2, ongoing_interval_s=0.005, shift_after_windows=15
)

Output = tuple[list[dict[str, Any]], list[bytes]]


def _stream(n: int = 1600) -> list[InputRecord]:
    """Gamma-like normal levels, anomalies (a burst, and at the end), the level halved two
    thirds in."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        level = float(rng.gamma(8, 0.05))
        if i > 2 * n // 3:
            level *= 0.5  # drift: the bulk moves down
        if rng.random() < 0.02 or (700 <= i < 780 and i % 4 == 0) or i >= n - 8:
            level *= float(rng.uniform(3, 5))  # the last ones leave episodes open
        out.append(record(i, level, source=SOURCES[i % len(SOURCES)]))
    return out


def _batches(records: list[InputRecord]) -> list[list[InputRecord]]:
    rng = np.random.default_rng(1)
    out, i = [], 0
    while i < len(records):
        size = int(rng.integers(1, 40))
        out.append(records[i : i + size])
        i += size
    return out


def _core(method: str, state_interval_ms: int = 0) -> BatchDecider:
    return build_decider(
        make_manifest(),
        ThresholdConfig(**THRESHOLDS[method]),
        LIFECYCLE,
        state_interval_ms=state_interval_ms,
    )


def _step(core: BatchDecider, batch: list[InputRecord], now_ms: int) -> tuple[Output, list[Any]]:
    """One batch as the service runs it: decide, then serialise its outputs and state."""
    prepared = core.prepare(batch)
    d = core.decide(prepared, MeanScorer().score(prepared.batch), now_ms)
    alerts = [a.model_dump(exclude={"detected_at_ms"}) for a in d.alerts]
    return (alerts, [encode_event(e) for e in d.events]), core.state_records(d)


def _compact(state: list[tuple[str, int, bytes | None]]) -> dict[str, tuple[int, bytes]]:
    """What a compacted topic keeps, as the service's ``read_state`` returns it."""
    latest: dict[str, tuple[int, bytes]] = {}
    for key, partition, value in state:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = (partition, value)
    return latest


def _final(core: BatchDecider) -> dict[str, Any]:
    """Everything a later decision or alert id depends on, serialised."""
    return {
        "thresholds": {s: core.bank.snapshot(s) for s in core.bank.sources()},
        "episodes": {s: core.tracker.snapshot(s) for s in SOURCES},
        "last_ref": dict(core._last_ref),
        "swept": [a.alert_id for a in core.sweep_idle(10**14).alerts],
    }


def _uninterrupted(method: str, batches: list[list[InputRecord]], interval_ms: int = 0):
    core = _core(method, interval_ms)
    outputs, states = [], []
    for k, batch in enumerate(batches):
        out, state = _step(core, batch, 10**12 + 1000 * k)
        outputs.append(out)
        states.append(state)
    return core, outputs, states


@pytest.mark.parametrize("method", sorted(THRESHOLDS))
def test_a_restart_at_any_batch_boundary_reproduces_the_uninterrupted_run(method: str) -> None:
    batches = _batches(_stream())
    whole, outputs, states = _uninterrupted(method, batches)
    events = [e for _a, ev in outputs for e in ev]
    alerts = [a for al, _e in outputs for a in al]
    assert sum(b'"threshold_recalibrated"' in e for e in events) > 100
    assert sum(a["state"] == "opened" for a in alerts) > 20
    assert sum(a["state"] == "ongoing" for a in alerts) > 5
    if method != "adaptive":
        assert any(b'"drift_detected"' in e for e in events)
    assert any(b'"shift_accepted"' in e for e in events)
    expected_final = _final(whole)
    assert any(expected_final["episodes"].values()), "the stream should end inside an episode"

    # Every third boundary, and the end: the episodes left open are then swept idle, citing
    # their last window's position (restored with them).
    for cut in [*range(1, len(batches), 3), len(batches)]:
        compacted = _compact([r for batch in states[:cut] for r in batch])
        restarted = _core(method)
        for key, (partition, value) in compacted.items():
            assert restarted.restore(key, value, partition)
        # Restoring is exact: the restored state serialises to the very bytes it came from.
        every = {r[0]: r[2] for r in restarted.state_records(_all_changes(restarted))}
        assert every == {k: v for k, (_p, v) in compacted.items()}
        for k in range(cut, len(batches)):
            out, state = _step(restarted, batches[k], 10**12 + 1000 * k)
            assert out == outputs[k], f"batch {k} differs after a restart at batch {cut}"
            assert state == states[k]
        assert _final(restarted) == expected_final


def _all_changes(core: BatchDecider):
    from detector.core import Decisions

    return Decisions(
        episode_states_due={s: 0 for s in SOURCES if core.tracker.is_open(s)},
        threshold_states_due=dict.fromkeys(core.bank.sources(), 0),
    )


def test_every_touched_source_is_in_its_batch_records_by_default() -> None:
    core = _core("quantile")
    for k, batch in enumerate(_batches(_stream(400))):
        _out, state = _step(core, batch, 10**12 + 1000 * k)
        touched = {r.key.decode() for r in batch if r.key}
        assert {key for key, _p, _v in state if key.startswith("threshold/")} == {
            "threshold/" + s for s in touched
        }
        assert core.unsaved_state().threshold_states_due == {}


def test_with_an_interval_the_unsaved_state_written_at_a_clean_stop_completes_it() -> None:
    batches = _batches(_stream())
    interval_ms = 10**9  # longer than the run: only recalibrations write threshold state
    _whole, outputs, _states = _uninterrupted("quantile", batches, interval_ms)
    cut = len(batches) // 2
    first = _core("quantile", interval_ms)
    written: list[tuple[str, int, bytes | None]] = []
    for k in range(cut):
        written += _step(first, batches[k], 10**12 + 1000 * k)[1]
    unsaved = first.unsaved_state()
    assert unsaved.threshold_states_due, "some sources should hold unwritten state"
    written += first.state_records(unsaved)  # what a clean stop publishes
    assert first.unsaved_state().threshold_states_due == {}

    restarted = _core("quantile", interval_ms)
    for key, (partition, value) in _compact(written).items():
        assert restarted.restore(key, value, partition)
    for k in range(cut, len(batches)):
        out, _state = _step(restarted, batches[k], 10**12 + 1000 * k)
        assert out == outputs[k]


def test_unsaved_state_of_other_partitions_is_kept_for_later() -> None:
    core = _core("quantile", state_interval_ms=10**9)
    batch = [record(i, 0.3, source=s, partition=p) for i, (s, p) in enumerate([("x", 0), ("y", 1)])]
    _step(core, batch, 10**12)
    _step(core, batch, 10**12 + 1)  # within the interval: nothing written
    assert set(core.unsaved_state({1}).threshold_states_due) == {"y"}
    assert set(core.unsaved_state().threshold_states_due) == {"x"}
