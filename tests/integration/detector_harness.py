"""Run a DetectorService in a thread against the real broker, for integration tests."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detector.service import DetectorService
from detector.settings import DetectorSettings
from kafka_local.clients import merge_overrides, unique_name


def settings_for(bootstrap: str, **overrides: Any) -> DetectorSettings:
    """Settings with topics, group and instance of their own."""
    tag = unique_name("det")
    base: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {
            "windows": f"{tag}-windows",
            "alerts": f"{tag}-alerts",
            "events": f"{tag}-events",
            "dead_letters": f"{tag}-dlq",
            "state": f"{tag}-state",
            "partitions": 2,
        },
        "group_id": f"{tag}-group",
        "instance_id": f"{tag}-1",
        "metrics_port": None,
        "max_wait_s": 0.05,
        "startup_timeout_s": 30,
    }
    return DetectorSettings(_env_file=None, **merge_overrides(base, overrides))  # type: ignore[call-arg]


@contextlib.contextmanager
def running(service: DetectorService) -> Iterator[DetectorService]:
    """Start the service, run its loop in a thread, stop and join it on exit."""
    service.start()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            service.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.request_stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the detector loop did not stop"
    if errors:
        raise errors[0]


def process_env(bootstrap: str, tag: str, **extra: str) -> dict[str, str]:
    """The environment of a ``detector run`` child: this test's topics, group and instance,
    JSON logs, a free metrics port and quiet TensorFlow; ``extra`` adds or overrides."""
    from kafka_local import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env.update(
        DETECTOR_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        DETECTOR_TOPICS__WINDOWS=f"{tag}-windows",
        DETECTOR_TOPICS__ALERTS=f"{tag}-alerts",
        DETECTOR_TOPICS__EVENTS=f"{tag}-events",
        DETECTOR_TOPICS__DEAD_LETTERS=f"{tag}-dlq",
        DETECTOR_TOPICS__STATE=f"{tag}-state",
        DETECTOR_TOPICS__PARTITIONS="2",
        DETECTOR_GROUP_ID=f"{tag}-group",
        DETECTOR_INSTANCE_ID=f"{tag}-1",
        DETECTOR_LOG_FORMAT="json",
        DETECTOR_METRICS_PORT=str(free_port()),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.update(extra)
    return env


def offline_alert_ids(
    bundle: Path, bootstrap: str, topic: str, n: int, partitions: int = 2
) -> set[str]:
    """The alert ids of one uninterrupted pass over ``topic``'s first ``n`` records, decided
    offline by the service's own core factory with a static threshold, partition by
    partition (what a detector gives the same records whatever stopped it)."""
    from detector.bundle import read_manifest
    from detector.core import InputRecord
    from detector.core import build_decider as make_core
    from detector.model import load_bundle
    from detector.settings import DetectorSettings
    from kafka_local.clients import consume_records

    settings = DetectorSettings(_env_file=None, threshold={"method": "static"})  # type: ignore[call-arg]
    core = make_core(read_manifest(bundle), settings.threshold, settings.lifecycle)
    model = load_bundle(bundle)
    inputs = consume_records(bootstrap, topic, n, timeout_s=60)
    ids: set[str] = set()
    for part in range(partitions):
        records = [
            InputRecord(topic, m.partition(), m.offset(), m.key(), m.value(), m.headers(), 0)
            for m in inputs
            if m.partition() == part
        ]
        prepared = core.prepare(records)
        decisions = core.decide(prepared, model.score(prepared.batch), 0)
        ids |= {a.alert_id for a in decisions.alerts}
    return ids
