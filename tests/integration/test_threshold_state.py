"""Per-source threshold state survives restarts and follows partitions (real broker)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.alerts import Alert, AlertState
from detector.messages import encode_json
from detector.service import build_service
from kafka_local.clients import consume_records, produce_records, wait_committed, wait_until
from tests.integration.detector_harness import running, settings_for
from tests.unit.helpers import MeanScorer, make_manifest

pytestmark = pytest.mark.integration

THRESHOLD = {
    "method": "quantile",
    "window": 1000,
    "min_samples": 200,
    "recalibrate_every": 50,
    "drift_statistic": "off",
}


def _stream(source: str, levels: list[float], start_seq: int = 0):
    return [
        (
            source.encode(),
            encode_json(source, start_seq + i, 1_000 * (start_seq + i), np.full(8, lvl)),
            None,
        )
        for i, lvl in enumerate(levels)
    ]


def test_threshold_and_episode_come_back_after_a_restart(kafka_bootstrap: str) -> None:
    s = settings_for(
        kafka_bootstrap,
        threshold=THRESHOLD,
        lifecycle={"ongoing_interval_s": 1, "resolve_after_windows": 50},
    )
    normals = np.random.default_rng(0).uniform(0.0, 0.5, size=600).tolist()
    before = _stream("pump-1", normals + [3.0] * 3)
    after = _stream("pump-1", [3.0] * 3, start_seq=len(before))

    first = build_service(s, MeanScorer(), make_manifest())
    with running(first):
        produce_records(kafka_bootstrap, s.topics.windows, before)
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(before))
    alerts = [
        Alert.model_validate_json(m.value())
        for m in consume_records(kafka_bootstrap, s.topics.alerts, 3)
    ]
    last_before = alerts[-1]
    assert last_before.threshold.scope == "source"
    assert last_before.threshold.value < 0.9  # it learnt the source, away from the bundle's 1.0

    second = build_service(s, MeanScorer(), make_manifest())
    with running(second):
        produce_records(kafka_bootstrap, s.topics.windows, after)
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(before) + len(after))
    alerts = [
        Alert.model_validate_json(m.value())
        for m in consume_records(kafka_bootstrap, s.topics.alerts, 6)
    ]
    first_after = alerts[3]
    assert first_after.threshold.value == last_before.threshold.value
    assert first_after.threshold.set_at_ms == last_before.threshold.set_at_ms
    # The episode went on across the restart: no second 'opened'.
    assert [a.state for a in alerts].count(AlertState.OPENED) == 1
    assert {a.episode_id for a in alerts} == {last_before.episode_id}


def test_state_follows_partitions_when_a_second_detector_joins(kafka_bootstrap: str) -> None:
    s = settings_for(kafka_bootstrap, threshold=THRESHOLD)
    rng = np.random.default_rng(1)
    records = []
    for partition, source in ((0, "left"), (1, "right")):
        levels = rng.uniform(0.0, 0.4 + 0.1 * partition, size=400).tolist()
        records += [(partition, r) for r in _stream(source, levels)]

    a = build_service(s, MeanScorer(), make_manifest())
    with running(a):
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for partition, (key, value, _h) in records:
            producer.produce(s.topics.windows, key=key, value=value, partition=partition)
        assert producer.flush(30) == 0
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(records))
        learnt = {src: a.core.bank.get(src) for src in ("left", "right")}
        assert all(info.scope == "source" for info in learnt.values())

        b_settings = s.model_copy(update={"instance_id": s.instance_id + "-b"})
        b = build_service(b_settings, MeanScorer(), make_manifest())
        with running(b):
            wait_until(
                lambda: (
                    len(b.io.assigned_partitions()) == 1 and len(a.io.assigned_partitions()) == 1
                ),
                60,
                "the group to rebalance",
            )
            b_part = b.io.assigned_partitions()[0]
            b_source = "left" if b_part == 0 else "right"
            wait_until(lambda: b_source in b.core.bank, 30, "B to restore its source")
            assert b.core.bank.get(b_source) == learnt[b_source]
            # A no longer holds state for the partition it gave away.
            assert b_source not in a.core.bank
