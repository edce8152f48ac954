"""Helpers for tests against a real Kafka broker: the shared ones of :mod:`kafka_local.clients`.

Kept as a module so that tests keep importing ``tests.kafka_helpers``; the code lives once,
in ``kafka_local.clients``, which the benchmarks use too.
"""

from __future__ import annotations

from kafka_local.clients import (
    CommitWatcher,
    WaitTimeoutError,
    committed_total,
    consume_records,
    create_topic,
    create_topics,
    merge_overrides,
    produce_records,
    transactional_producer,
    unique_name,
    wait_committed,
    wait_until,
)

__all__ = [
    "CommitWatcher",
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
