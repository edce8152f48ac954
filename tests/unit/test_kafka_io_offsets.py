"""Offset queries that a just-created topic can refuse for a moment (no broker needed)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from detector.errors import KafkaUnavailableError
from detector.kafka.state import watermarks


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
