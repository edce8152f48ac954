"""Helpers for tests against a real Kafka broker: bounded waits and read-back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "consume_records",
    "create_topic",
    "unique_name",
    "wait_until",
]


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> str:
    """Create a topic and wait until its metadata shows every partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout_s,
    )
    futures[name].result(timeout=timeout_s)

    def visible() -> bool:
        meta = admin.list_topics(topic=name, timeout=5).topics.get(name)
        return meta is not None and meta.error is None and len(meta.partitions) == partitions

    wait_until(visible, timeout_s, f"topic {name} to be visible")
    return name


def consume_records(
    bootstrap: str,
    topic: str,
    count: int,
    timeout_s: float = 30.0,
    isolation: str = "read_committed",
    until: Callable[[Message], bool] | None = None,
) -> list[Message]:
    """Read ``count`` records from the start of every partition of ``topic``.

    Stops early when ``until(message)`` is true (that message included). Raises
    AssertionError if fewer records arrive within ``timeout_s``.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    out: list[Message] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                out.append(msg)
                if until is not None and until(msg):
                    return out
    finally:
        consumer.close()
    if len(out) < count:
        raise AssertionError(
            f"read {len(out)} of {count} records from {topic} within {timeout_s:.0f} s"
        )
    return out


def transactional_producer(bootstrap: str) -> Producer:
    """A producer with a fresh transactional id, transactions initialised."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique_name("txn")})
    producer.init_transactions(30)
    return producer
