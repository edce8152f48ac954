"""The send loop shared by ``simulate`` and ``replay``: pace, send, report, stop, flush."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from producer.kafka_io import WindowProducer
from producer.pacing import Pacer
from producer.windows import WindowBatch

__all__ = ["StreamReport", "stream_to_kafka"]


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What a run sent."""

    sent: int
    delivered: int
    seconds: float
    target_rate: float

    @property
    def rate(self) -> float:
        """Achieved windows per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def stream_to_kafka(
    batches: Iterator[WindowBatch],
    producer: WindowProducer,
    pacer: Pacer,
    count: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    progress_every_s: float = 5.0,
    flush_timeout_s: float = 60.0,
    quiet: bool = False,
) -> StreamReport:
    """Send windows until ``count``, ``duration_s``, the end of ``batches`` or ``stop``.

    Event time is the wall clock at send (ms). Always flushes; raises
    :class:`~producer.errors.DeliveryError` if any delivery failed.
    """
    stop = stop or threading.Event()
    start = time.monotonic()
    last_report = start
    i = 0
    try:
        for batch in batches:
            for w in batch:
                if (count is not None and i >= count) or stop.is_set():
                    return _finish(producer, start, pacer, flush_timeout_s)
                now = time.monotonic()
                if duration_s is not None and now - start >= duration_s:
                    return _finish(producer, start, pacer, flush_timeout_s)
                wait = start + pacer.due(i) - now
                if wait > 0 and stop.wait(wait):
                    return _finish(producer, start, pacer, flush_timeout_s)
                producer.send(w, time.time_ns() // 1_000_000)
                i += 1
                if not quiet and time.monotonic() - last_report >= progress_every_s:
                    last_report = time.monotonic()
                    elapsed = last_report - start
                    producer.poll()
                    print(
                        f"producer: {producer.sent} sent, {producer.delivered} delivered, "
                        f"{producer.sent / elapsed:.0f} windows/s over {elapsed:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        pass
    return _finish(producer, start, pacer, flush_timeout_s)


def _finish(
    producer: WindowProducer, start: float, pacer: Pacer, flush_timeout_s: float
) -> StreamReport:
    seconds = time.monotonic() - start
    producer.flush(flush_timeout_s)
    return StreamReport(producer.sent, producer.delivered, seconds, pacer.rate)
