"""Fill a topic before a measurement, so that no producer competes for the CPU with it.

Windows go through the project's own producer (:class:`producer.kafka_io.WindowProducer`:
its encoding, ground-truth headers and delivery checks), with a bulk-loading linger; every
record is acknowledged before :func:`preload` returns. :func:`read_back` reads a preloaded
topic back as the detector would receive it, with each record's partition and offset (the
key that alerts carry in ``input``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from bench.broker import read_topic
from bench.data import Encoding, event_time_ms
from detector.core import InputRecord
from detector.kafka.config import KafkaSettings
from detector.messages import H_SEQ, header_value
from producer.kafka_io import WindowProducer
from producer.windows import LabeledWindow, WindowBatch

__all__ = ["Preloaded", "preload", "read_back", "windows_of"]

BULK = {"linger.ms": "20", "log_level": "3"}


@dataclass(frozen=True, slots=True)
class Preloaded:
    """What was written: the topic, records acknowledged, wall seconds of the load."""

    topic: str
    count: int
    seconds: float


def windows_of(batches: Iterable[WindowBatch]) -> Iterable[tuple[LabeledWindow, int]]:
    """(window, synthetic event time) pairs of a simulated stream, in order."""
    return ((w, event_time_ms(w.seq)) for batch in batches for w in batch)


def preload(
    bootstrap: str,
    topic: str,
    windows: Iterable[tuple[LabeledWindow, int]],
    encoding: Encoding,
    timeout_s: float = 120.0,
) -> Preloaded:
    """Send ``windows`` (each with its event time) and wait for every acknowledgement.

    Raises:
        producer.errors.DeliveryError: a record was not delivered.
    """
    started = time.perf_counter()
    settings = KafkaSettings(bootstrap_servers=bootstrap, extra=BULK)
    with WindowProducer(settings, topic, encoding) as out:
        for window, event_ms in windows:
            out.send_window(window, event_ms)
        out.flush(timeout_s)
        count = out.delivered
    return Preloaded(topic, count, time.perf_counter() - started)


def read_back(bootstrap: str, topic: str) -> dict[tuple[bytes, int], InputRecord]:
    """The topic's records as the detector receives them, keyed by (record key, seq header)."""
    out: dict[tuple[bytes, int], InputRecord] = {}
    for partition, offset, key, value, headers in read_topic(bootstrap, topic):
        seq = header_value(headers, H_SEQ)
        out[(key or b"", int(seq) if seq is not None else -1)] = InputRecord(
            topic, partition, offset, key, value, headers, 0
        )
    return out
