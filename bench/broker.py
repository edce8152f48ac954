"""The broker the benchmarks run against, and the few admin calls they need.

The client helpers shared with the tests (bounded waits, topic creation, committed offsets)
live in :mod:`kafka_local.clients`; this module re-exports the ones the sections use.

``KAFKA_BOOTSTRAP_SERVERS`` is used when set (an existing broker or cluster); otherwise a
throwaway one-node broker starts on the local JVM (:class:`kafka_local.LocalKafka`) and stops
when the benchmark ends. Every topic and group name carries the run's tag, so runs never
share state and nothing needs deleting between runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer

from detector.kafka.state import read_committed_to_end
from kafka_local import clients
from kafka_local.clients import CommitWatcher, WaitTimeoutError, unique_name, wait_until

__all__ = [
    "BenchError",
    "BrokerInfo",
    "CommitWatcher",
    "Fetched",
    "WaitTimeoutError",
    "create_topics",
    "open_broker",
    "read_topic",
    "run_tag",
    "wait_until",
]


class BenchError(Exception):
    """A benchmark step could not complete (timeout, missing dependency, failed process)."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """Where the broker is and what it is.

    Attributes:
        bootstrap_servers: ``host:port`` list.
        origin: ``"env"`` (``KAFKA_BOOTSTRAP_SERVERS``) or ``"local-jvm"``.
        kafka_version: Apache Kafka version when known (the local broker's), else None.
        pid: the broker JVM's process id when it runs on this machine, for CPU accounting.
        start_s: seconds the broker took to start (0 for an existing one).
    """

    bootstrap_servers: str
    origin: str
    kafka_version: str | None
    pid: int | None
    start_s: float


@contextlib.contextmanager
def open_broker() -> Iterator[BrokerInfo]:
    """The broker to use: ``KAFKA_BOOTSTRAP_SERVERS`` or a local JVM broker stopped on exit."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield BrokerInfo(env, "env", None, None, 0.0)
        return
    from kafka_local import BrokerSetupError, LocalKafka

    started = time.monotonic()
    kafka = LocalKafka()
    try:
        kafka.start()
    except BrokerSetupError as exc:
        raise BenchError(
            f"no broker: KAFKA_BOOTSTRAP_SERVERS is unset and the local JVM broker failed: {exc}"
        ) from exc
    try:
        yield BrokerInfo(
            kafka.bootstrap_servers,
            "local-jvm",
            kafka.version,
            kafka.pid,
            time.monotonic() - started,
        )
    finally:
        kafka.stop()


def run_tag() -> str:
    """A short tag unique to this run, the prefix of its topic and group names."""
    return unique_name("bench", hex_digits=8)


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout_s: float = 30.0,
    config: dict[str, str] | None = None,
) -> None:
    """Create topics (name -> partitions) and wait until every partition has a leader.

    Records are kept whatever their timestamps (``retention.ms=-1``) unless ``config`` says
    otherwise: preloaded windows carry event times, which may be older than a retention.
    """
    clients.create_topics(bootstrap, topics, {"retention.ms": "-1", **(config or {})}, timeout_s)


Fetched = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]
"""A record read back: (partition, offset, key, value, headers)."""


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Fetched]:
    """Every committed record of ``topic`` up to its high watermarks now, in offset order.

    A just-committed transaction's records count even if its markers are not yet written
    (``commit_transaction`` returns before they are): see
    :func:`detector.kafka.state.read_committed_to_end`.

    Raises:
        BenchError: the topic could not be read to its end within ``timeout_s``.
    """
    conf = {"bootstrap.servers": bootstrap}
    admin = Consumer({**conf, "group.id": f"{topic}-bench-reader"})
    try:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    finally:
        admin.close()
    if meta is None or meta.error is not None:
        return []
    records, incomplete = read_committed_to_end(
        conf, topic, list(meta.partitions), timeout_s, group_id=f"{topic}-bench-reader"
    )
    if incomplete:
        raise BenchError(f"could not read {topic} partitions {incomplete} to their end")
    return [
        (m.partition() or 0, m.offset() or 0, m.key(), m.value(), list(m.headers() or []))
        for m in records
    ]
