"""Broker restarts under load: the `detector` process survives them and loses nothing.

Seen before (issue 14, D1): a failed publish rewound to the committed offsets while the
restarted broker was still loading, and ``NOT_COORDINATOR`` killed the detector; with the
broker down ~21 s under a steady stream, the session expired and the detector deadlocked
between its revoke callback and its publisher thread.

Here the detector runs as a process against a broker of the test's own (the
``restartable_kafka`` fixture), which is restarted twice in place (same port, same data)
while a producer keeps a steady stream going: once down long enough for the detector's
session (10 s) to expire, once briefly. After each return the detector must commit again
within 30 s; at the end every input offset is committed, it stops cleanly on SIGTERM, and
the alerts are each published once and are exactly an uninterrupted pass's (static
thresholds: they depend on the input alone).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from detector.alerts import Alert
from kafka_local import LocalKafka
from kafka_local.clients import committed_total, consume_records, unique_name, wait_until
from tests.integration.detector_harness import offline_alert_ids
from tests.integration.test_detector_process import (  # noqa: F401 (fixtures)
    _env,
    _log_events,
    _records,
    _start,
    procs,
    tiny_bundle,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 7200  # windows
RATE = 120  # windows per second: a steady stream for ~60 s, through both outages
RECOVERY_BOUND_S = 30.0
# Down for longer than the consumer's session (10 s): the session expires, and the revoke
# comes while a batch is being committed (the deadlock of D1); then a short outage.
OUTAGES_S = (14.0, 3.0)


class SteadyStream(threading.Thread):
    """Produces ``records`` at about ``rate`` per second and rides out broker outages: an
    idempotent producer with a long message timeout writes each record once, in order."""

    def __init__(self, bootstrap: str, topic: str, records: list[Any], rate: float) -> None:
        super().__init__(name="steady-stream", daemon=True)
        self.bootstrap, self.topic, self.records, self.rate = bootstrap, topic, records, rate
        self.errors: list[str] = []
        self.undelivered = -1
        self.done = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "message.timeout.ms": 300_000,
                "reconnect.backoff.max.ms": 1000,
                "log_level": 0,
            }
        )
        chunk = max(1, int(self.rate / 10))
        try:
            for i, (key, value, headers) in enumerate(self.records):
                producer.produce(
                    self.topic,
                    key=key,
                    value=value,
                    headers=headers,
                    on_delivery=lambda err, _m: self.errors.append(str(err)) if err else None,
                )
                if i % chunk == chunk - 1:
                    producer.poll(0)
                    if self._stop.wait(chunk / self.rate):  # the pace of the stream
                        return
            self.undelivered = producer.flush(180)
        finally:
            self.done.set()

    def cancel(self) -> None:
        self._stop.set()


def _readable(count: Callable[[], int], timeout_s: float) -> int:
    """The first reading of ``count`` that is not -1 (the coordinator still loading)."""
    readings: list[int] = []
    wait_until(
        lambda: readings.append(count()) or readings[-1] >= 0,
        timeout_s,
        "the committed offsets to be readable again",
    )
    return readings[-1]


def test_broker_restarts_under_load_lose_and_duplicate_nothing(
    restartable_kafka: LocalKafka,
    tiny_bundle: Path,  # noqa: F811
    tmp_path: Path,
    procs: list[Any],  # noqa: F811
) -> None:
    kafka = restartable_kafka
    bootstrap = kafka.bootstrap_servers
    tag = unique_name("restart")
    group, topic = f"{tag}-group", f"{tag}-windows"
    records = _records(np.random.default_rng(5), N, anomaly_every=37)
    env = _env(bootstrap, tag, DETECTOR_THRESHOLD__METHOD="static", DETECTOR_MAX_BATCH="64")
    log = tmp_path / "det.log"
    detector = _start(tiny_bundle, env, log)
    procs.append(detector)
    wait_until(
        lambda: any(e.get("event") == "partitions_assigned" for e in _log_events(log)),
        120,
        "the detector to start and be assigned its partitions",
    )

    def committed() -> int:
        return committed_total(bootstrap, group, topic, 2)

    stream = SteadyStream(bootstrap, topic, records, RATE)
    stream.start()
    recoveries: list[float] = []
    try:
        for down_s in OUTAGES_S:
            before = max(committed(), 0)
            wait_until(lambda b=before: committed() >= b + 500, 60, "the detector to commit")
            assert not stream.done.is_set(), "the stream ended before the outage"
            kafka.restart(down_s=down_s)
            back = time.monotonic()
            # The committed count once the restarted broker answers (nothing is committed
            # while it is down); a commit beyond it is the detector's first after its return.
            at_return = _readable(committed, RECOVERY_BOUND_S)
            wait_until(
                lambda a=at_return: committed() > a,
                RECOVERY_BOUND_S - (time.monotonic() - back),
                f"a commit within {RECOVERY_BOUND_S:g} s of the broker's return",
            )
            recoveries.append(time.monotonic() - back)
            assert detector.poll() is None, log.read_text()[-3000:]
        assert stream.done.wait(240), "the stream did not finish"
        assert stream.errors == [] and stream.undelivered == 0
        wait_until(lambda: committed() == N, 120, f"all {N} input offsets committed")
    finally:
        stream.cancel()
    detector.send_signal(signal.SIGTERM)
    assert detector.wait(timeout=60) == 0, log.read_text()[-3000:]

    events = _log_events(log)
    assert not [e for e in events if e.get("event") == "detector_crashed"]
    (stopped,) = [e for e in events if e.get("event") == "detector_stopped"]
    assert int(stopped["scored"]) == N  # type: ignore[call-overload]
    expected = offline_alert_ids(tiny_bundle, bootstrap, topic, N)
    assert len(expected) > 20, "the stream should open a fair number of episodes"
    got = [
        Alert.model_validate_json(m.value() or b"").alert_id
        for m in consume_records(bootstrap, f"{tag}-alerts", len(expected), timeout_s=60)
    ]
    assert len(got) == len(set(got)), "an alert was published twice"
    assert set(got) == expected
    retries = sorted({str(e["event"]) for e in events if str(e.get("level")) == "warning"})
    print(f"recovered {[round(r, 1) for r in recoveries]} s after each return; warnings {retries}")
