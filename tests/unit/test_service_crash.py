"""A crash is logged as one: an error line with the cause, never a clean-looking stop.

(The Kafka edge is a script here, as in test_service_pipeline.)
"""

from __future__ import annotations

import pytest
import structlog

from detector.core import InputRecord
from detector.service import DetectorService, build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest, record
from tests.unit.test_service_pipeline import ScriptedKafka

pytestmark = pytest.mark.usefixtures("fresh_structlog")


class BrokenKafka(ScriptedKafka):
    """Serves its records, then fails the way an unexpected bug would."""

    def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
        if self.position >= len(self.records):
            raise RuntimeError("the edge broke")
        return super().consume(max_records, timeout_s)


def _service(kafka: ScriptedKafka, **extra: object) -> DetectorService:
    s = DetectorSettings(
        _env_file=None,
        bundle="unused",
        threshold={"method": "static"},
        max_wait_s=0.001,
        metrics_port=None,
        **extra,  # type: ignore[arg-type]
    )
    return build_service(s, MeanScorer(), make_manifest(), io=kafka.edge)


def test_a_crash_logs_an_error_with_the_cause_and_no_clean_stop() -> None:
    service = _service(BrokenKafka([record(i, 0.1) for i in range(3)]))
    with structlog.testing.capture_logs() as logs, pytest.raises(RuntimeError):
        service.run()
    events = [e["event"] for e in logs]
    assert "detector_stopped" not in events
    (crash,) = [e for e in logs if e["event"] == "detector_crashed"]
    assert crash["log_level"] == "error"
    assert crash["error"] == "RuntimeError: the edge broke"
    assert "scored" in crash  # the totals taken in so far


def test_a_clean_stop_logs_detector_stopped_and_no_error() -> None:
    service = _service(ScriptedKafka([record(i, 0.1) for i in range(3)]), stop_when_idle_s=0.05)
    with structlog.testing.capture_logs() as logs:
        assert service.run() == 0
    (stopped,) = [e for e in logs if e["event"] == "detector_stopped"]
    assert stopped["log_level"] == "info" and stopped["scored"] == 3
    assert not [e for e in logs if e["log_level"] == "error"]
