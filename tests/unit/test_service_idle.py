"""The service loop's exit paths: ``--stop-when-idle`` counts from the first partition
assignment, and a run that scored nothing says so loudly.

(The Kafka edge is a script here, as in test_service_pipeline; a real broker is in
tests/integration.)
"""

from __future__ import annotations

import time

import pytest
import structlog

from detector.core import InputRecord
from detector.service import DetectorService, build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest, record
from tests.unit.test_service_pipeline import ScriptedKafka

pytestmark = pytest.mark.usefixtures("fresh_structlog")

IDLE_S = 0.1


def _service(kafka: ScriptedKafka, **settings: object) -> DetectorService:
    s = DetectorSettings(
        _env_file=None,
        bundle="unused",
        threshold={"method": "static"},
        stop_when_idle_s=IDLE_S,
        max_wait_s=0.001,
        **settings,  # type: ignore[arg-type]
    )
    return build_service(s, MeanScorer(), make_manifest(), io=kafka.edge)


class SlowAssignment(ScriptedKafka):
    """No partition for ``after_s`` from the first consume (a slow group join), then one,
    then the records."""

    def __init__(self, records: list[InputRecord], after_s: float):
        super().__init__(records)
        self.started: float | None = None
        self.after_s = after_s
        self.assigned_at: float | None = None

    def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
        if self.started is None:
            self.started = time.monotonic()
        time.sleep(timeout_s)
        if self.assigned_at is None:
            if time.monotonic() - self.started < self.after_s:
                return []
            self.assigned_at = time.monotonic()  # the next call runs the rebalance callback
        return super().consume(max_records, timeout_s)


def test_stop_when_idle_counts_from_the_first_assignment_not_from_start() -> None:
    kafka = SlowAssignment([record(i, 0.1) for i in range(4)], after_s=5 * IDLE_S)
    service = _service(kafka)
    started = time.monotonic()
    assert service.run() == 0
    stopped = time.monotonic()
    assert kafka.assigned_at is not None, "stopped before the first assignment"
    assert stopped - kafka.assigned_at >= IDLE_S
    assert stopped - started >= 6 * IDLE_S
    assert service.totals["scored"] == 4 and kafka.committed == 4


def test_a_run_that_scored_nothing_warns_with_counts_and_reasons() -> None:
    bad = [InputRecord("windows", 0, i, b"s1", b"{not json", None, 0) for i in range(3)] + [
        InputRecord("windows", 0, 3, b"s1", b"\x00", [("content-type", b"x/y")], 0)
    ]
    kafka = ScriptedKafka(bad)
    service = _service(kafka)
    with structlog.testing.capture_logs() as logs:
        assert service.run() == 0
    warnings = [e for e in logs if e["event"] == "no_windows_scored"]
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning["log_level"] == "warning"
    assert warning["records_read"] == 4 and warning["dead_letters"] == 4
    reasons = warning["top_dead_letter_reasons"]
    assert sum(reasons.values()) == 4 and len(reasons) >= 1
    assert kafka.committed == 4, "dead letters are committed like any batch"


def test_a_run_that_scored_windows_does_not_warn() -> None:
    service = _service(ScriptedKafka([record(i, 0.1) for i in range(3)]))
    with structlog.testing.capture_logs() as logs:
        assert service.run() == 0
    assert not [e for e in logs if e["event"] == "no_windows_scored"]
