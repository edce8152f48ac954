"""Reading a topic "to its end" must include a transaction that is committed but not settled.

``commit_transaction`` returns before the broker writes the commit markers, and a
read_committed offset query returns the last stable offset, which stays behind an undecided
transaction: a reader that stops there misses the batch just committed (state restored on
assignment would then lag the input offsets committed with it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from detector.kafka.state import read_committed_to_end
from kafka_local.clients import transactional_producer, unique_name

pytestmark = pytest.mark.integration


def test_an_open_transaction_is_waited_for_and_its_records_returned_once_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    producer = transactional_producer(kafka_bootstrap)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=f"k{i}".encode(), value=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0  # records are in the log, the transaction is undecided
    reading: list[tuple[list[bytes], list[int]]] = []

    def read() -> None:
        records, incomplete = read_committed_to_end(
            {"bootstrap.servers": kafka_bootstrap}, topic, [0, 1], 60.0, unique_name("reader")
        )
        reading.append(([m.value() or b"" for m in records], incomplete))

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(1.0)
    assert reader.is_alive(), "returned before the open transaction was decided"
    producer.commit_transaction(30)
    reader.join(60.0)
    assert not reader.is_alive()
    (values, incomplete) = reading[0]
    assert incomplete == []
    assert sorted(values, key=int) == [str(i).encode() for i in range(10)]


def test_aborted_records_are_skipped_and_the_end_is_still_reached(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    producer = transactional_producer(kafka_bootstrap)
    for keep in (True, False, True):
        producer.begin_transaction()
        producer.produce(topic, value=b"kept" if keep else b"aborted")
        if keep:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    records, incomplete = read_committed_to_end(
        {"bootstrap.servers": kafka_bootstrap}, topic, [0], 30.0, unique_name("reader")
    )
    assert incomplete == []
    assert [m.value() for m in records] == [b"kept", b"kept"]
