"""Reading a topic's committed records to its end: the state topic's restore.

:func:`read_committed_to_end` reads what a read_committed consumer sees of some partitions
up to their ends as they are now (with clients of its own, never the detector's consumer);
:func:`latest_state` folds the state topic's records into the latest state per source of
some input partitions (the state topic is compacted, key = source, and every record carries
the input partition it belongs to in the ``input-partition`` header).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from detector.errors import KafkaUnavailableError
from detector.kafka.errors import error_of
from detector.log import LIBRDKAFKA_LOG

__all__ = ["H_INPUT_PARTITION", "latest_state", "read_committed_to_end", "watermarks"]

log = structlog.get_logger()

# The header of a state record naming the input partition whose source it belongs to.
H_INPUT_PARTITION = "input-partition"


def watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """(low, high) offsets, retried until ``deadline``: a topic created a moment ago may not
    have a leader yet ("unknown topic or partition", "leader not available").

    Raises:
        KafkaUnavailableError: still failing at the deadline.
    """
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                tp, timeout=max(0.5, min(10.0, deadline - time.monotonic()))
            )
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise KafkaUnavailableError(
                    f"cannot read the offsets of {tp.topic}[{tp.partition}]: {error_of(exc)}"
                ) from exc
            log.info("offsets_not_ready", topic=tp.topic, partition=tp.partition, error=str(exc))
            time.sleep(0.2)


def read_committed_to_end(
    client_config: dict[str, Any],
    topic: str,
    partitions: Iterable[int],
    timeout_s: float,
    group_id: str,
) -> tuple[list[Message], list[int]]:
    """Every committed record of these partitions up to their ends now, in offset order.

    The ends are the high watermarks (taken read_uncommitted: a read_committed offset query
    returns the last stable offset, which stays behind a transaction whose commit has
    returned but whose markers are not yet written). Each partition is then read
    read_committed until the position passes its end, so a transaction committed just before
    the call is included, and one still open is waited for, up to ``timeout_s``.

    Returns:
        The records, and the partitions that did not reach their end in time.

    Raises:
        KafkaUnavailableError: the partitions' offsets could not be read within ``timeout_s``.
    """
    ends: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    client_config = {"logger": LIBRDKAFKA_LOG, **client_config}
    probe = Consumer({**client_config, "group.id": group_id, "isolation.level": "read_uncommitted"})
    try:
        starts: dict[int, int] = {}
        for p in partitions:
            low, high = watermarks(probe, TopicPartition(topic, p), deadline)
            if high > low:
                ends[p], starts[p] = high, low
    finally:
        probe.close()
    if not ends:
        return [], []
    reader = Consumer(
        {
            **client_config,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    out: list[Message] = []
    try:
        reader.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        while ends and time.monotonic() < deadline:
            out.extend(m for m in reader.consume(num_messages=1000, timeout=0.2) if not m.error())
            for tp in reader.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        reader.close()
    return out, sorted(ends)


def latest_state(
    records: Iterable[Message], partitions: Iterable[int]
) -> dict[str, tuple[int, bytes]]:
    """The latest state record per key of these input partitions, in the order read (a
    record with no value deletes its key's state)."""
    wanted = set(partitions)
    latest: dict[str, tuple[int, bytes]] = {}
    for msg in records:
        headers = dict(msg.headers() or [])
        try:
            input_partition = int(headers.get(H_INPUT_PARTITION, b"-1"))
        except ValueError:
            continue
        key = msg.key()
        if input_partition not in wanted or key is None:
            continue
        value = msg.value()
        if value is None:
            latest.pop(key.decode(), None)
        else:
            latest[key.decode()] = (input_partition, value)
    return latest
