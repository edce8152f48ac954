"""Client-side helpers for code that drives a real broker: the tests and the benchmarks.

One copy of what both need: unique names, bounded waits, topic creation that waits for
partition leaders, committed-offset counting, producing and reading records back, and the
merge of nested setting overrides. Every wait is bounded and names what it waited for.

Imported as ``kafka_local.clients`` (not re-exported by ``kafka_local``, so that starting a
broker does not import confluent-kafka).

    >>> merge_overrides({"kafka": {"a": 1}, "x": 1}, {"kafka": {"b": 2}, "x": 3})
    {'kafka': {'a': 1, 'b': 2}, 'x': 3}
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "CommitWatcher",
    "Record",
    "WaitTimeoutError",
    "committed_total",
    "consume_records",
    "create_topic",
    "create_topics",
    "merge_overrides",
    "produce_records",
    "transactional_producer",
    "unique_name",
    "wait_committed",
    "wait_until",
]

Record = tuple[bytes | None, bytes | None, Any]
"""A record to produce: (key, value, headers)."""


class WaitTimeoutError(TimeoutError):
    """A bounded wait ran out before its condition held."""


def unique_name(prefix: str, hex_digits: int = 12) -> str:
    """A topic or group name nothing else uses: ``prefix`` and random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:hex_digits]}"


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02
) -> None:
    """Poll ``predicate`` every ``interval_s`` until it is true.

    Raises:
        WaitTimeoutError: still false after ``timeout_s``; the message names ``what``.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create topics (name -> partitions) and wait until every partition has a leader.

    A topic is usable once its partitions have leaders; a client that reads watermarks of
    a partition before that gets NOT_LEADER_FOR_PARTITION.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=n, replication_factor=1, config=dict(config or {}))
            for name, n in topics.items()
        ],
        operation_timeout=timeout_s,
    )
    for future in futures.values():
        future.result(timeout=timeout_s)

    def led() -> bool:
        meta = admin.list_topics(timeout=5).topics
        return all(
            name in meta
            and meta[name].error is None
            and len(meta[name].partitions) == n
            and all(p.leader >= 0 for p in meta[name].partitions.values())
            for name, n in topics.items()
        )

    wait_until(led, timeout_s, f"topics {sorted(topics)} to have leaders")


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> str:
    """Create one topic (see :func:`create_topics`); its name."""
    create_topics(bootstrap, {name: partitions}, config, timeout_s)
    return name


class CommitWatcher:
    """Reads a group's committed offsets on a topic (one consumer that never joins, reused).

    Args:
        bootstrap: the broker.
        group: the consumer group whose commits to read.
        topic: the input topic.
        partitions: its partition count.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def total(self) -> int:
        """Sum of committed offsets (-1 while the coordinator cannot answer: ask again)."""
        try:
            tps = self._consumer.committed(self._tps, timeout=5)
        except KafkaException:
            return -1
        return sum(max(tp.offset, 0) for tp in tps)

    def wait(self, n: int, timeout_s: float, what: str | None = None) -> None:
        """Wait until at least ``n`` offsets are committed (:class:`WaitTimeoutError` if not)."""
        wait_until(lambda: self.total() >= n, timeout_s, what or f"{n} committed offsets")

    def close(self) -> None:
        self._consumer.close()


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets on ``topic`` (-1 if the coordinator is not ready)."""
    with contextlib.closing(CommitWatcher(bootstrap, group, topic, partitions)) as watcher:
        return watcher.total()


def wait_committed(
    bootstrap: str, group: str, topic: str, partitions: int, n: int, timeout_s: float = 60.0
) -> None:
    """Wait until the group has committed at least ``n`` offsets on ``topic``."""
    with contextlib.closing(CommitWatcher(bootstrap, group, topic, partitions)) as watcher:
        watcher.wait(n, timeout_s, f"{n} committed offsets of {group} on {topic}")


def produce_records(
    bootstrap: str,
    topic: str,
    records: Iterable[Record],
    timeout_s: float = 30.0,
    config: Mapping[str, str] | None = None,
) -> int:
    """Produce (key, value, headers) records idempotently and wait for every acknowledgement.

    Returns:
        The number of records delivered.

    Raises:
        KafkaException: a record was not delivered, or some were still in flight at the end.
    """
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, **(config or {})}
    )
    count = 0
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
        producer.poll(0)
        count += 1
    left = producer.flush(timeout_s)
    if failures:
        raise KafkaException(failures[0])
    if left:
        unacked = KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records unacknowledged")
        raise KafkaException(unacked)
    return count


def consume_records(
    bootstrap: str,
    topic: str,
    count: int,
    timeout_s: float = 30.0,
    isolation: str = "read_committed",
    until: Callable[[Message], bool] | None = None,
) -> list[Message]:
    """Read ``count`` records from the start of every partition of ``topic``.

    Stops early when ``until(message)`` is true (that message included).

    Raises:
        WaitTimeoutError: fewer records arrived within ``timeout_s``.
        KafkaException: the consumer reported an error other than a partition's end.
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
        raise WaitTimeoutError(
            f"read {len(out)} of {count} records from {topic} within {timeout_s:.0f} s"
        )
    return out


def transactional_producer(bootstrap: str, **config: str) -> Producer:
    """A producer with a fresh transactional id, transactions initialised."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": unique_name("txn"), **config}
    )
    producer.init_transactions(30)
    return producer


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; a dict over a dict merges one level down.

    How settings keyword arguments are built: ``kafka={"extra": {...}}`` adds to the base's
    ``kafka`` group instead of replacing it.
    """
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
