"""Offset and metadata queries that a just-created topic can refuse for a moment (no broker
needed)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from detector.errors import KafkaUnavailableError
from detector.kafka.io import KafkaIO
from detector.kafka.state import watermarks
from detector.settings import DetectorSettings
from tests.unit.kafka_fakes import (
    FakeAdmin,
    FakeBroker,
    FakeClients,
    FakeConsumer,
    FakeProducer,
    InstantStop,
)


class FlakyOffsets:
    """Refuses the first ``failures`` queries the way a topic without a leader yet does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        return 3, 8


def test_a_refused_offset_query_is_retried_until_it_answers() -> None:
    consumer = FlakyOffsets(failures=2)
    got = watermarks(consumer, TopicPartition("state", 0), time.monotonic() + 10)  # type: ignore[arg-type]
    assert got == (3, 8)
    assert consumer.calls == 3


def test_a_query_still_refused_at_the_deadline_is_a_clear_error() -> None:
    consumer = FlakyOffsets(failures=10**6)
    with pytest.raises(KafkaUnavailableError, match=r"offsets of state\[0\]"):
        watermarks(consumer, TopicPartition("state", 0), time.monotonic() + 0.5)  # type: ignore[arg-type]
    assert consumer.calls >= 2


class LateAdmin(FakeAdmin):
    """A broker whose metadata shows no topic for the first ``misses`` listings (topics
    created a moment ago), then every topic with 2 partitions."""

    def __init__(self, misses: int) -> None:
        super().__init__(partitions=2)
        self.misses = misses

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self.misses > 0:
            self.misses -= 1
            return SimpleNamespace(brokers={1: "fake"}, topics={})
        return super().list_topics(topic, timeout)


class PartitionProducer(FakeProducer):
    """Remembers the partition each record was produced to."""

    def __init__(self, broker: FakeBroker) -> None:
        super().__init__(broker)
        self.partitions: list[tuple[str, int]] = []

    def produce(self, topic: str, *args: Any, partition: int = -1, **kwargs: Any) -> None:
        self.partitions.append((topic, partition))
        super().produce(topic, *args, partition=partition, **kwargs)


def _edge(admin: FakeAdmin) -> tuple[KafkaIO, PartitionProducer]:
    broker = FakeBroker()
    producer = PartitionProducer(broker)
    clients = FakeClients(
        broker, consumers=[FakeConsumer(broker, [])], producers=[producer], admin=admin
    )
    settings = DetectorSettings(_env_file=None, bundle="unused")  # type: ignore[call-arg]
    return KafkaIO(settings, stop=InstantStop(), create_client=clients), producer


def test_a_state_topic_not_yet_in_the_metadata_is_waited_for_not_taken_as_empty() -> None:
    # Taken as 0 partitions, the whole run wrote input partition 1's state to state
    # partition 0, and the next run to state partition 1: two "latest" states per source.
    io, producer = _edge(LateAdmin(misses=2))
    io.start(timeout_s=10)
    io.publish(
        [], [], [], [("threshold/s1", 1, b"state")], 0, [TopicPartition("w", 1, 5)], object()
    )
    assert producer.partitions == [(io.settings.topics.state, 1)]


def test_a_state_topic_never_in_the_metadata_fails_the_start_clearly() -> None:
    io, _producer = _edge(LateAdmin(misses=10**9))
    with pytest.raises(KafkaUnavailableError, match=r"state topic \S+ has no partitions within"):
        io.start(timeout_s=0.5)
