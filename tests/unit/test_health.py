"""Honest health: /healthz, /readyz, the broker watch and its log lines, with injected clocks.

No Kafka here: the broker probe is a plain function that raises or returns, librdkafka's error
callback is called by hand, and time is a number the test moves. Against a real broker that
goes away: tests/integration/test_health_outage.py.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from prometheus_client import generate_latest

from detector.broker_watch import BrokerWatch
from detector.health import HealthSettings, HealthTracker
from detector.metrics import DetectorMetrics, HealthServer
from detector.service import DetectorService, build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest, record
from tests.unit.test_service_pipeline import ScriptedKafka

pytestmark = pytest.mark.usefixtures("fresh_structlog")

SETTINGS = HealthSettings(stall_s=60, loop_stale_s=120, probe_interval_s=5, probe_timeout_s=5)


@dataclass
class Clock:
    """Monotonic seconds that move only when the test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProbe:
    """A broker that answers while ``up``; counts the probes."""

    up: bool = True
    calls: int = 0
    timeouts: list[float] = field(default_factory=list)

    def __call__(self, timeout_s: float) -> None:
        self.calls += 1
        self.timeouts.append(timeout_s)
        if not self.up:
            raise ConnectionError("Failed to get metadata: Local: Broker transport failure")


def _pass(clock: Clock, health: HealthTracker, seconds: float) -> None:
    """Time passes with the loop iterating."""
    clock.now += seconds
    health.beat(clock())


def _ready_tracker(clock: Clock) -> HealthTracker:
    health = HealthTracker(SETTINGS, clock())
    health.set_consuming(True, clock())
    return health


# -- the verdicts -----------------------------------------------------------------------------


def test_not_ready_until_partitions_are_assigned_and_again_when_stopping() -> None:
    clock = Clock()
    health = HealthTracker(SETTINGS, clock())
    verdict = health.ready(clock())
    assert not verdict.ok and "not consuming" in verdict.reason
    health.set_consuming(True, clock())
    assert health.ready(clock()).ok
    health.set_consuming(False, clock())
    assert not health.ready(clock()).ok


def test_live_fails_when_the_loop_stops_iterating_and_recovers_with_the_next_iteration() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    clock.now += 119
    assert health.live(clock()).ok
    clock.now += 1
    live = health.live(clock())
    assert not live.ok and "no iteration for 120 s" in live.reason
    assert not health.ready(clock()).ok  # a stuck loop is not ready either
    health.beat(clock())
    assert health.live(clock()).ok and health.ready(clock()).ok


def test_a_loop_waiting_through_a_broker_outage_is_not_stuck_until_loop_stale_s_after_it() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    clock.now += 10
    health.broker_failed("_ALL_BROKERS_DOWN: 1/1 brokers are down", clock())
    clock.now += 300  # the loop waits in a commit or a back-off the whole time
    assert health.live(clock()).ok
    assert not health.ready(clock()).ok
    health.broker_answered(clock())
    clock.now += 119
    assert health.live(clock()).ok
    clock.now += 1
    assert not health.live(clock()).ok  # still not iterating 120 s after the broker is back
    health.beat(clock())
    assert health.live(clock()).ok


def test_broker_outage_fails_readiness_with_the_error_and_reports_its_length() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    assert health.broker_failed("_TRANSPORT: connection refused", clock()) is True
    clock.now += 7
    assert health.broker_failed("_TIMED_OUT: probe", clock()) is False  # the same outage
    verdict = health.ready(clock())
    assert not verdict.ok
    assert verdict.reason == "broker unreachable for 7 s: _TIMED_OUT: probe"
    assert health.live(clock()).ok  # the loop is alive: no restart for a broker outage
    clock.now += 33
    assert health.broker_answered(clock()) == pytest.approx(40)
    assert health.broker_answered(clock()) is None  # no outage to end
    assert health.ready(clock()).ok


def test_a_quiet_stream_is_not_a_stall_however_long() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    health.consumed(clock())
    health.committed(clock() + 0.05)
    health.set_lag(0, clock() + 1)
    _pass(clock, health, 3600)
    assert health.seconds_since_commit(clock()) == pytest.approx(3600 - 0.05)
    assert health.ready(clock()).ok


def test_records_read_and_not_committed_for_stall_s_fail_readiness() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    health.committed(clock())
    clock.now += 1
    health.consumed(clock())  # a batch read; its publish never commits
    _pass(clock, health, 58)
    assert health.ready(clock()).ok
    _pass(clock, health, 1)
    verdict = health.ready(clock())
    assert not verdict.ok
    assert verdict.reason.startswith("stalled: input waiting and nothing committed for 60 s")
    health.committed(clock())
    assert health.ready(clock()).ok


def test_lag_measured_after_the_last_commit_is_input_waiting() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    health.committed(clock())
    health.set_lag(500, clock() + 1)
    _pass(clock, health, 61)
    verdict = health.ready(clock())
    assert not verdict.ok and "lag 500" in verdict.reason
    # A lag measured before a later commit says nothing about now.
    health.set_lag(500, clock())
    health.committed(clock() + 0.1)
    _pass(clock, health, 120)
    assert health.ready(clock()).ok


def test_the_stall_clock_starts_at_the_first_assignment_and_a_reassignment_does_not_reset_it() -> (
    None
):
    clock = Clock()
    health = HealthTracker(SETTINGS, clock())
    clock.now += 500  # start-up took long: not counted
    health.set_consuming(True, clock())
    health.consumed(clock())
    _pass(clock, health, 40)
    health.set_consuming(True, clock())  # the re-assignment after a rewind
    _pass(clock, health, 20)
    assert not health.ready(clock()).ok


def test_input_of_revoked_partitions_is_forgotten() -> None:
    clock = Clock()
    health = _ready_tracker(clock)
    health.consumed(clock())
    health.forget_input()
    _pass(clock, health, 600)
    assert health.ready(clock()).ok


# -- the broker watch ---------------------------------------------------------------------------


def _watch(clock: Clock, probe: FakeProbe) -> tuple[BrokerWatch, HealthTracker, DetectorMetrics]:
    health = _ready_tracker(clock)
    metrics = DetectorMetrics()
    metrics.bind_health(health, clock)
    return BrokerWatch(health, probe, metrics=metrics, clock=clock), health, metrics


def _sample(metrics: DetectorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def test_an_outage_is_logged_when_it_begins_once_and_its_end_with_its_length() -> None:
    clock, probe = Clock(), FakeProbe()
    watch, health, metrics = _watch(clock, probe)
    with structlog.testing.capture_logs() as logs:
        watch.step()  # the first step probes
        assert probe.calls == 1 and _sample(metrics, "detector_broker_up") == 1
        probe.up = False
        clock.now += 4.9
        watch.step()  # not due yet
        assert probe.calls == 1 and health.broker_up
        clock.now += 0.1
        watch.step()
        assert probe.calls == 2 and probe.timeouts == [5, 5]
        # Written now, while the broker is down, not when it is back.
        assert [e["event"] for e in logs] == ["broker_unreachable"]
        assert logs[0]["log_level"] == "warning"
        assert logs[0]["error"].startswith("ConnectionError: Failed to get metadata")
        assert _sample(metrics, "detector_broker_up") == 0
        assert _sample(metrics, "detector_ready") == 0
        for _ in range(6):  # 30 s more of failed probes: counted, not logged again
            clock.now += 5
            watch.step()
        assert [e["event"] for e in logs] == ["broker_unreachable"]
        failed = _sample(metrics, "detector_broker_errors_total", code="ConnectionError")
        assert failed == 7
        probe.up = True
        clock.now += 5
        watch.step()
    assert [e["event"] for e in logs] == ["broker_unreachable", "broker_reachable"]
    assert logs[1]["outage_s"] == pytest.approx(35.0)  # from the first failed probe
    assert _sample(metrics, "detector_broker_up") == 1
    assert _sample(metrics, "detector_ready") == 1


def test_librdkafka_reporting_all_brokers_down_brings_the_probe_forward_to_confirm_it() -> None:
    clock, probe = Clock(), FakeProbe()
    health = _ready_tracker(clock)
    metrics = DetectorMetrics()
    callbacks: list[tuple[str, str, bool]] = []  # what librdkafka reports at the next poll

    def poll(_timeout: float) -> None:
        while callbacks:
            watch.on_error(*callbacks.pop(0))

    watch = BrokerWatch(health, probe, poll=poll, metrics=metrics, clock=clock)
    watch.step()
    assert probe.calls == 1
    refused = "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
    with structlog.testing.capture_logs() as logs:
        # A spurious report (the broker still answers): counted, the probe says no outage.
        clock.now += 1
        callbacks.append(("_ALL_BROKERS_DOWN", "1/1 brokers are down", True))
        watch.step()
        assert probe.calls == 2 and health.broker_up and logs == []
        # The broker goes: one connection error (counted only), then all brokers down,
        # confirmed by a probe at once, 2 s after the last one (the interval is 5 s).
        probe.up = False
        clock.now += 1
        callbacks.append(("_TRANSPORT", refused, False))
        watch.step()
        assert probe.calls == 2 and health.broker_up
        clock.now += 1
        callbacks.append(("_ALL_BROKERS_DOWN", "1/1 brokers are down", True))
        watch.step()
        assert probe.calls == 3 and not health.broker_up
        assert not health.ready(clock()).ok
    (line,) = logs
    assert line["event"] == "broker_unreachable"
    assert line["error"].startswith("ConnectionError: Failed to get metadata")
    assert line["client_error"] == "_ALL_BROKERS_DOWN: 1/1 brokers are down"
    assert _sample(metrics, "detector_broker_errors_total", code="_TRANSPORT") == 1
    assert _sample(metrics, "detector_broker_errors_total", code="_ALL_BROKERS_DOWN") == 2
    assert _sample(metrics, "detector_broker_errors_total", code="ConnectionError") == 1


def test_a_stuck_loop_and_a_stall_are_logged_when_they_begin_and_end() -> None:
    clock, probe = Clock(), FakeProbe()
    watch, health, _metrics = _watch(clock, probe)
    health.consumed(clock())
    with structlog.testing.capture_logs() as logs:
        clock.now += 60
        watch.step()
        clock.now += 60
        watch.step()
        watch.step()  # still stuck and stalled: no new line
        health.beat(clock())
        health.committed(clock())
        watch.step()
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("detector_stalled", "warning"),
        ("loop_stuck", "warning"),
        ("loop_resumed", "info"),
        ("detector_unstalled", "info"),
    ]
    assert "nothing committed for 60 s" in logs[0]["reason"]


def test_the_watch_thread_outlives_its_own_errors_and_stops() -> None:
    health = _ready_tracker(Clock())
    polls = {"n": 0}

    def bad_poll(_timeout: float) -> None:
        polls["n"] += 1
        raise RuntimeError("boom")

    watch = BrokerWatch(health, FakeProbe(), poll=bad_poll, tick_s=0.01)
    with structlog.testing.capture_logs() as logs:
        watch.start()
        deadline = time.monotonic() + 10
        while polls["n"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        watch.stop()
    assert polls["n"] >= 3
    assert logs and all(e["event"] == "broker_watch_failed" for e in logs)
    assert logs[0]["error"] == "RuntimeError: boom"


# -- the endpoint ------------------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_endpoints_answer_the_verdicts_with_their_reasons() -> None:
    clock = Clock()
    health = HealthTracker(SETTINGS, clock())
    metrics = DetectorMetrics()
    metrics.bind_health(health, clock)
    server = HealthServer(metrics, "127.0.0.1", 0, health, clock)
    server.start()
    try:
        assert _get(server.port, "/healthz") == (200, "ok\n")
        code, body = _get(server.port, "/readyz")
        assert code == 503 and body.startswith("not consuming")
        health.set_consuming(True, clock())
        assert _get(server.port, "/readyz") == (200, "ready\n")
        health.broker_failed("_TRANSPORT: refused", clock())
        clock.now += 3
        assert _get(server.port, "/readyz") == (
            503,
            "broker unreachable for 3 s: _TRANSPORT: refused\n",
        )
        assert _get(server.port, "/healthz")[0] == 200  # waiting for the broker: not stuck
        text = _get(server.port, "/metrics")[1]
        assert "detector_broker_up 0.0" in text
        assert "detector_ready 0.0" in text
        health.broker_answered(clock())
        clock.now += 200
        code, body = _get(server.port, "/healthz")
        assert code == 503 and body.startswith("loop stuck: no iteration for 200 s")
        text = _get(server.port, "/metrics")[1]
        assert "detector_broker_up 1.0" in text
        assert "detector_ready 0.0" in text
        assert "detector_seconds_since_commit 203.0" in text
        assert "detector_seconds_since_loop_iteration 203.0" in text
    finally:
        server.stop()


def test_a_health_server_without_a_tracker_keeps_the_simple_interface() -> None:
    server = HealthServer(DetectorMetrics(), "127.0.0.1", 0)
    server.start()
    try:
        assert _get(server.port, "/readyz")[0] == 503
        server.is_ready = True
        server.beat()
        assert _get(server.port, "/readyz") == (200, "ready\n")
        assert b"detector_ready 1.0" in generate_latest(server.metrics.registry)
    finally:
        server.stop()


# -- the service reports to the tracker -----------------------------------------------------------


class HangingKafka(ScriptedKafka):
    """Commits the first batch, then a publish that never returns (until released)."""

    release: threading.Event

    def publish(self, *args: object, **kwargs: object) -> None:
        if self.calls >= 1:
            self.release.wait(30)
        super().publish(*args, **kwargs)  # type: ignore[arg-type]


def _service(kafka: ScriptedKafka, **extra: Any) -> DetectorService:
    s = DetectorSettings(
        _env_file=None,
        bundle="unused",
        threshold={"method": "static"},
        max_wait_s=0.001,
        metrics_port=None,
        **extra,
    )
    return build_service(s, MeanScorer(), make_manifest(), io=kafka.edge)


def test_the_service_reports_reads_and_commits_and_is_not_ready_once_stopped() -> None:
    service = _service(ScriptedKafka([record(i, 0.1) for i in range(7)]), stop_when_idle_s=0.05)
    health = service.health_state
    assert not health.consuming  # until the first consume assigns a partition
    assert service.run() == 0
    now = time.monotonic()
    assert not health.waiting()  # everything read was committed
    assert health.seconds_since_commit(now) < 5
    assert health.stalled(now + 3600).ok  # and a quiet hour after it is no stall
    assert not health.consuming and not health.ready(now).ok


def test_a_publish_that_hangs_shows_as_a_stall_and_then_a_stuck_loop() -> None:
    kafka = HangingKafka([record(i, 0.1) for i in range(9)])
    kafka.release = threading.Event()
    service = _service(kafka, health={"stall_s": 30, "loop_stale_s": 90})
    loop = threading.Thread(target=service.run, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while kafka.calls < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the loop is now waiting for the hanging publish
        health = service.health_state
        now = time.monotonic()
        assert health.waiting()
        assert health.ready(now).ok
        stalled = health.ready(now + 31)
        assert not stalled.ok and stalled.reason.startswith("stalled")
        assert not health.live(now + 91).ok
    finally:
        kafka.release.set()
        service.request_stop()
        loop.join(30)
    assert not loop.is_alive()
