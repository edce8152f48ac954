"""Poison pills on a real broker (issue 14, D2 and D3): each goes to the dead-letter topic
with a reason while the stream goes on, with no restart.

* a 1,040,000-byte junk record: it passes the 1 MiB input check, but its dead-letter copy
  used to exceed the producer's 1,000,000-byte limit (MSG_SIZE_TOO_LARGE killed the
  detector on every restart); now it is dead-lettered truncated, saying so;
* a 7 MB record (the windows topic and the test producer allow it): dead-lettered
  ``oversize``, truncated the same way;
* an event time of 1e20 (JSON) and 10^20 (binary header): it used to crash state encoding
  (orjson: Integer exceeds 64-bit range); now ``bad_event_time``.

(The model is replaced by a plain function; everything Kafka is real.)
"""

from __future__ import annotations

import hashlib

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer

from detector.messages import H_EVENT_TIME_MS, encode_binary, encode_json
from detector.service import build_service
from kafka_local.clients import consume_records, create_topic, produce_records, wait_committed
from tests.integration.detector_harness import running, settings_for
from tests.unit.helpers import MeanScorer, make_manifest

pytestmark = pytest.mark.integration

BIG_TOPIC_BYTES = 8 * 1024 * 1024  # the windows topic takes the 7 MB record


def _good(seq: int, source: str = "pump-1") -> tuple[bytes, bytes, None]:
    values = np.full(8, 0.1, dtype=np.float32)
    return source.encode(), encode_json(source, seq, 1_000 * seq, values), None


def _produce_big(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": BIG_TOPIC_BYTES})
    failures: list[str] = []
    producer.produce(
        topic,
        key=key,
        value=value,
        on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
    )
    assert producer.flush(60) == 0
    assert failures == []


def test_poison_pills_are_dead_lettered_and_the_stream_goes_on(kafka_bootstrap: str) -> None:
    s = settings_for(kafka_bootstrap, topics={"partitions": 1})
    create_topic(kafka_bootstrap, s.topics.windows, 1, {"max.message.bytes": str(BIG_TOPIC_BYTES)})
    service = build_service(s, MeanScorer(), make_manifest())
    junk = bytes(range(256)) * (1_040_000 // 256) + b"j" * (1_040_000 % 256)
    huge = b"{" + b"x" * 7_000_000
    far_json = orjson.dumps(
        {"source_id": "pump-1", "seq": 5, "event_time": 1e20, "values": [0.1] * 8}
    )
    far_value, far_headers = encode_binary("pump-1", 6, 0, np.full(8, 0.1))
    far_headers = [
        (k, b"100000000000000000000" if k == H_EVENT_TIME_MS else v) for k, v in far_headers
    ]
    with running(service):
        produce_records(kafka_bootstrap, s.topics.windows, [_good(i) for i in range(3)])
        _produce_big(kafka_bootstrap, s.topics.windows, b"pump-1", junk)
        _produce_big(kafka_bootstrap, s.topics.windows, b"pump-1", huge)
        produce_records(
            kafka_bootstrap,
            s.topics.windows,
            [(b"pump-1", far_json, None), (b"pump-1", far_value, far_headers)],
        )
        produce_records(kafka_bootstrap, s.topics.windows, [_good(i) for i in range(10, 20)])
        wait_committed(kafka_bootstrap, s.group_id, s.topics.windows, 1, 3 + 2 + 2 + 10)
        dead = consume_records(kafka_bootstrap, s.topics.dead_letters, 4, timeout_s=60)
    by_offset = {int(dict(m.headers())["dlq-source-offset"]): m for m in dead}
    assert sorted(by_offset) == [3, 4, 5, 6]
    reasons = {o: dict(m.headers())["dlq-reason"].decode() for o, m in by_offset.items()}
    assert reasons == {
        3: "undecodable",  # 1,040,000 bytes is under the 1 MiB input limit: read, not JSON
        4: "oversize",
        5: "bad_event_time",
        6: "bad_event_time",
    }
    for offset, original in ((3, junk), (4, huge)):
        msg = by_offset[offset]
        headers = dict(msg.headers())
        assert headers["dlq-truncated"] == b"true"
        assert int(headers["dlq-original-bytes"]) == len(original)
        assert headers["dlq-original-sha256"].decode() == hashlib.sha256(original).hexdigest()
        value = msg.value()
        assert value is not None and original.startswith(value)
        assert 900_000 < len(value) < 1_000_000
        assert msg.key() == b"pump-1"
    for offset, original in ((5, far_json), (6, far_value)):
        msg = by_offset[offset]
        assert msg.value() == original  # small: untouched
        assert "dlq-truncated" not in dict(msg.headers())
    # Every good record before and after the pills was scored, in the same run.
    assert service.totals["scored"] == 13
    assert service.totals["dead_letters"] == 4
