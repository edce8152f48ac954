"""The detector's Kafka path on a real broker (model replaced by a plain function)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detector.alerts import Alert, AlertState
from detector.messages import H_CONTENT_TYPE, encode_binary, encode_json
from detector.service import build_service
from kafka_local.clients import consume_records, produce_records, wait_committed
from tests.integration.detector_harness import running, settings_for
from tests.unit.helpers import MeanScorer, make_manifest

pytestmark = pytest.mark.integration


def _window(source: str, seq: int, level: float, binary: bool = False):
    values = np.full(8, level, dtype=np.float32)
    if binary:
        value, headers = encode_binary(source, seq, 1_000 * seq, values)
        return source.encode(), value, headers
    return source.encode(), encode_json(source, seq, 1_000 * seq, values), None


def test_malformed_records_go_to_dead_letters_and_the_rest_is_scored(kafka_bootstrap: str) -> None:
    s = settings_for(kafka_bootstrap, max_message_bytes=4096)
    service = build_service(s, MeanScorer(), make_manifest())
    good = [_window(f"src-{i % 3}", i, 0.1, binary=i % 2 == 1) for i in range(40)]
    nan_value, nan_headers = encode_binary("src-0", 99, 0, np.full(8, np.inf))
    bad = [
        (b"src-0", b"{not json", [("trace", b"keep-me")]),
        (
            b"src-0",
            orjson.dumps({"source_id": "src-0", "event_time": 0, "values": [1.0] * 5}),
            None,
        ),
        (b"src-0", nan_value, nan_headers),
        (b"src-0", b"z" * 5000, None),
        (b"src-0", b"<xml/>", [(H_CONTENT_TYPE, b"text/xml")]),
        (b"src-0", None, None),
    ]
    with running(service):
        produce_records(kafka_bootstrap, s.topics.windows, good[:20] + bad + good[20:])
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(good) + len(bad))
        dead = consume_records(kafka_bootstrap, s.topics.dead_letters, len(bad))
    reasons = sorted(dict(m.headers())["dlq-reason"].decode() for m in dead)
    assert reasons == sorted(
        [
            "undecodable",
            "bad_shape",
            "non_finite",
            "oversize",
            "unknown_content_type",
            "undecodable",
        ]
    )
    by_value = {m.value(): m for m in dead}
    first = by_value[b"{not json"]
    headers = dict(first.headers())
    assert first.key() == b"src-0"
    assert headers["trace"] == b"keep-me"  # original headers kept
    assert headers["dlq-source-topic"].decode() == s.topics.windows
    source = next(
        m
        for m in consume_records(kafka_bootstrap, s.topics.windows, len(good) + len(bad))
        if m.value() == b"{not json"
    )
    assert int(headers["dlq-source-offset"]) == source.offset()
    assert int(headers["dlq-source-partition"]) == source.partition()
    assert service.totals["scored"] == len(good)
    assert service.totals["dead_letters"] == len(bad)


def test_a_burst_from_one_source_is_one_episode(kafka_bootstrap: str) -> None:
    s = settings_for(
        kafka_bootstrap, lifecycle={"resolve_after_windows": 4, "ongoing_interval_s": 5}
    )
    service = build_service(s, MeanScorer(), make_manifest())
    levels = [0.1] * 10 + [2.0 + 0.1 * i for i in range(30)] + [0.1] * 10
    records = [_window("pump-7", i, lvl) for i, lvl in enumerate(levels)]
    records += [_window("pump-8", i, 0.1) for i in range(50)]
    with running(service):
        produce_records(kafka_bootstrap, s.topics.windows, records)
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(records))
        msgs = consume_records(
            kafka_bootstrap,
            s.topics.alerts,
            1,
            until=lambda m: b'"resolved"' in (m.value() or b""),
        )
    alerts = [Alert.model_validate_json(m.value()) for m in msgs]
    states = [a.state for a in alerts]
    assert states[0] is AlertState.OPENED and states[-1] is AlertState.RESOLVED
    assert states.count(AlertState.OPENED) == 1
    assert states.count(AlertState.RESOLVED) == 1
    # 30 anomalous windows 1 s apart, at most one update per 5 s.
    assert 1 <= states.count(AlertState.ONGOING) <= 6
    assert {a.episode_id for a in alerts} == {alerts[0].episode_id}
    assert {a.source_id for a in alerts} == {"pump-7"}
    assert alerts[-1].anomalous_windows == 30
    assert alerts[-1].peak_score == pytest.approx(2.0 + 0.1 * 29, rel=1e-5)
    assert {m.key() for m in msgs} == {b"pump-7"}
    assert service.totals["alerts"] == len(alerts)


def test_at_least_once_mode_publishes_and_commits_without_transactions(
    kafka_bootstrap: str,
) -> None:
    s = settings_for(kafka_bootstrap, delivery="at-least-once")
    service = build_service(s, MeanScorer(), make_manifest())
    assert not service.io.exactly_once
    records = [_window("a", i, 3.0 if 5 <= i < 8 else 0.1) for i in range(20)]
    with running(service):
        produce_records(kafka_bootstrap, s.topics.windows, records)
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(records))
        msgs = consume_records(kafka_bootstrap, s.topics.alerts, 2)
    alerts = [Alert.model_validate_json(m.value()) for m in msgs]
    assert [(a.state, a.input.offset) for a in alerts] == [
        (AlertState.OPENED, 5),
        (AlertState.RESOLVED, 12),
    ]


def test_metrics_health_and_readiness_endpoints(kafka_bootstrap: str) -> None:
    import urllib.error
    import urllib.request

    from kafka_local import free_port
    from kafka_local.clients import wait_until

    port = free_port()
    s = settings_for(kafka_bootstrap, metrics_port=port, metrics_host="127.0.0.1")
    service = build_service(s, MeanScorer(), make_manifest())

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    with running(service):
        wait_until(lambda: get("/readyz")[0] == 200, 30, "readiness")
        produce_records(
            kafka_bootstrap,
            s.topics.windows,
            [_window("a", i, 0.1) for i in range(10)] + [(b"a", b"{bad", None)],
        )
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, 11)
        # A batch is reported to the metrics by the loop once it sees the commit, a moment
        # after the offsets are visible to this test.
        scored = 'detector_windows_total{outcome="scored"} 10.0'
        wait_until(lambda: scored in get("/metrics")[1], 30, "the metrics of the batch")
        status, body = get("/metrics")
        assert get("/healthz")[0] == 200
    assert status == 200
    assert 'detector_dead_letters_total{reason="undecodable"} 1.0' in body
    assert "detector_score_seconds_bucket" in body
    assert "detector_target_far 0.01" in body


def test_alerts_command_prints_readable_lines(kafka_bootstrap: str) -> None:
    import io

    from detector.follow import follow_alerts

    s = settings_for(kafka_bootstrap, lifecycle={"resolve_after_windows": 2})
    service = build_service(s, MeanScorer(), make_manifest())
    records = [_window("pump-3", i, 2.5 if 3 <= i < 6 else 0.1) for i in range(12)]
    with running(service):
        produce_records(kafka_bootstrap, s.topics.windows, records)
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 2, len(records))
    out = io.StringIO()
    printed = follow_alerts(
        s.kafka, s.topics.alerts, follow=False, from_beginning=True, out=out, timeout_s=30
    )
    lines = out.getvalue().splitlines()
    assert printed == len(lines) == 2
    assert "OPENED" in lines[0] and "pump-3" in lines[0] and "(adaptive," in lines[0]
    assert "RESOLVED" in lines[1] and "over 3 windows" in lines[1]
