"""Pure parts of the latency benchmark: pacer phases and per-phase percentiles."""

from __future__ import annotations

from typing import Any

import pytest

from bench.latency import summarise_phases
from bench.pacer import parse_phases


def test_parse_phases() -> None:
    assert parse_phases("1000:2,5000:1.5") == [(1000, 2.0), (5000, 1.5)]
    with pytest.raises(ValueError):
        parse_phases("1000:0")
    with pytest.raises(ValueError):
        parse_phases("fast:2")


def _alert(state: str, event_ms: float, detected_ms: float) -> dict[str, Any]:
    return {"state": state, "event_time_ms": event_ms, "detected_at_ms": detected_ms}


def test_summarise_phases_assigns_alerts_by_event_time_and_skips_warmup() -> None:
    phases = [
        {"rate": 1000, "start_ms": 0.0, "end_ms": 1000.0, "seconds": 1.0, "sent": 1000,
         "achieved_per_s": 1000.0},
        {"rate": 5000, "start_ms": 1000.0, "end_ms": 2000.0, "seconds": 1.0, "sent": 5000,
         "achieved_per_s": 5000.0},
    ]  # fmt: skip
    alerts = [
        (150.0, _alert("opened", 100.0, 110.0)),  # in the first phase's warm-up: left out
        (520.0, _alert("opened", 500.0, 505.0)),  # 20 ms
        (640.0, _alert("opened", 600.0, 610.0)),  # 40 ms
        (700.0, _alert("resolved", 650.0, 660.0)),  # not an opening
        (1530.0, _alert("opened", 1500.0, 1520.0)),  # second phase, 30 ms
    ]
    first, second = summarise_phases(alerts, phases, warm_fraction=0.2)
    assert first.produce_to_alert.n == 2
    assert first.produce_to_alert.p50_ms == pytest.approx(30.0)
    assert first.produce_to_alert.max_ms == pytest.approx(40.0)
    assert first.produce_to_decision.max_ms == pytest.approx(10.0)
    assert second.rate == 5000
    assert second.produce_to_alert.n == 1
    assert second.produce_to_alert.p99_ms == pytest.approx(30.0)
