"""The harness itself, proven on a real broker: admin, round trip, transactions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kafka_local.clients import consume_records, transactional_producer, unique_name, wait_until

pytestmark = pytest.mark.integration


def test_admin_creates_topic_with_requested_partitions(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    name = new_topic(partitions=3, config={"cleanup.policy": "compact"})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = admin.list_topics(topic=name, timeout=10).topics[name]
    assert sorted(meta.partitions) == [0, 1, 2]
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"


def test_round_trip_keeps_keys_headers_and_order(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    failures: list[str] = []
    for i in range(20):
        producer.produce(
            topic,
            key=f"src-{i % 3}".encode(),
            value=f"v{i}".encode(),
            headers=[("label", str(i % 2).encode()), ("seq", str(i).encode())],
            on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
        )
    assert producer.flush(30) == 0
    assert failures == []
    got = consume_records(kafka_bootstrap, topic, 20)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(20)]
    assert [m.key() for m in got] == [f"src-{i % 3}".encode() for i in range(20)]
    assert [dict(m.headers() or [])["seq"] for m in got] == [str(i).encode() for i in range(20)]


def _seed_input(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        producer.produce(topic, key=b"k", value=str(i).encode())
    assert producer.flush(30) == 0


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def test_transaction_commits_output_and_input_offsets_together(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    source, sink = new_topic(prefix="in"), new_topic(prefix="out")
    _seed_input(kafka_bootstrap, source, 10)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name("txn")}
    )
    try:
        consumer.subscribe([source])
        producer.init_transactions(30)
        seen: list[bytes] = []
        wait_until(
            lambda: (
                seen.extend(
                    m.value() or b"" for m in consumer.consume(100, 0.5) if m.error() is None
                )
                or len(seen) >= 10
            ),
            30,
            "10 input records",
        )
        producer.begin_transaction()
        for value in seen:
            producer.produce(sink, value=b"out-" + value)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
    finally:
        consumer.close()
    out = consume_records(kafka_bootstrap, sink, 10, isolation="read_committed")
    assert sorted(m.value() for m in out) == sorted(b"out-" + v for v in seen)
    assert _committed(kafka_bootstrap, group_id, source) == 10


def test_aborted_transaction_is_invisible_to_read_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    producer = transactional_producer(kafka_bootstrap)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)

    committed = consume_records(
        kafka_bootstrap, topic, 1, until=lambda m: m.value() == b"committed"
    )
    assert [m.value() for m in committed] == [b"committed"]
    # The same bytes are in the log: a read_uncommitted reader sees them, so the test can fail.
    raw = consume_records(
        kafka_bootstrap,
        topic,
        6,
        isolation="read_uncommitted",
        until=lambda m: m.value() == b"committed",
    )
    assert [m.value() for m in raw][:5] == [f"aborted-{i}".encode() for i in range(5)]
