"""The send loop shared by ``simulate`` and ``replay``: pace, send, report progress, stop, flush.

The loop sends windows until the count, the duration, the end of the stream or a stop request
(Ctrl-C or SIGTERM set ``stop``; a ``KeyboardInterrupt`` does the same when no handler is
installed), then flushes: every delivery report is waited for and checked, also after a stop.
While it waits for the next window's due time it serves delivery reports, so a failed
delivery stops the run promptly with :class:`~producer.errors.DeliveryError`.

With a rate, the run lasts until the last window's slot ends (``Pacer.due(n)``, or the
duration), so the reported rate is ``sent / seconds`` over the sending phase; the flush at the
end is reported separately.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from producer.errors import ProducerInputError
from producer.pacing import Pacer
from producer.windows import LabeledWindow, WindowBatch

__all__ = ["EventTime", "StreamReport", "WindowSink", "stream_to_kafka"]

EventTime = Literal["send", "file"]
_MAX_WAIT_S = 0.05  # longest single wait, so a stop request is seen quickly


class WindowSink(Protocol):
    """What the loop needs of :class:`~producer.kafka_io.WindowProducer`."""

    @property
    def topic(self) -> str:
        """Where the windows go."""
        ...

    @property
    def delivered(self) -> int:
        """Windows acknowledged so far."""
        ...

    def send_window(self, w: LabeledWindow, event_time_ms: int) -> None:
        """Queue one window; raises DeliveryError once a delivery has failed."""

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports for up to ``timeout_s``; raises DeliveryError on a failure."""

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every delivery report; raises DeliveryError on a failure."""


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What a run sent.

    Attributes:
        sent: windows handed to the client.
        delivered: windows the broker acknowledged.
        anomalous: windows sent with label 1.
        seconds: length of the sending phase.
        flush_seconds: time spent waiting for the last delivery reports.
        target_rate: windows per second asked for (0 = as fast as possible).
        interrupted: the run was stopped by a signal before its limit.
    """

    sent: int
    delivered: int
    anomalous: int
    seconds: float
    flush_seconds: float
    target_rate: float
    interrupted: bool

    @property
    def rate(self) -> float:
        """Achieved windows per second over the sending phase."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def _wall_ms(_w: LabeledWindow) -> int:
    return time.time_ns() // 1_000_000


def _file_ms(w: LabeledWindow) -> int:
    if w.file_time_ms is None:
        raise ProducerInputError("--event-time file needs a file with timestamps (a sensor CSV)")
    return w.file_time_ms


def stream_to_kafka(
    batches: Iterable[WindowBatch],
    producer: WindowSink,
    pacer: Pacer,
    count: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    progress_every_s: float = 5.0,
    flush_timeout_s: float = 60.0,
    quiet: bool = False,
    event_time: EventTime = "send",
    clock: Callable[[], float] = time.monotonic,
) -> StreamReport:
    """Send windows until ``count``, ``duration_s``, the end of ``batches`` or ``stop``.

    Args:
        batches: the stream.
        producer: where windows go (its encoding is used).
        pacer: the schedule.
        count: most windows to send.
        duration_s: longest run, in seconds.
        stop: set it to stop (from a signal handler or another thread).
        progress_every_s: interval of the ``producer.progress`` log line.
        flush_timeout_s: how long to wait for the last delivery reports.
        quiet: no progress lines.
        event_time: ``send`` (wall clock at send) or ``file`` (the replayed file's timestamps).
        clock: monotonic seconds (tests pass a fake).

    Raises:
        DeliveryError: a delivery failed, or reports were missing after ``flush_timeout_s``.
        ProducerInputError: ``event_time="file"`` for windows without timestamps.
    """
    stop = stop or threading.Event()
    stamp = _wall_ms if event_time == "send" else _file_ms
    start = clock()
    next_progress = start + progress_every_s
    sent = anomalous = 0
    interrupted = False

    def wait_until(deadline: float) -> bool:
        """Serve delivery reports until ``deadline``; False if a stop came first."""
        while (remaining := deadline - clock()) > 0:
            if stop.is_set():
                return False
            producer.poll(min(remaining, _MAX_WAIT_S))
        return not stop.is_set()

    try:
        windows = (w for batch in batches for w in batch)
        for w in windows:
            if stop.is_set():
                interrupted = True
                break
            if count is not None and sent >= count:
                break
            due = pacer.due(sent)
            if duration_s is not None and (due >= duration_s or clock() - start >= duration_s):
                break
            if due > 0 and not wait_until(start + due):
                interrupted = True
                break
            producer.send_window(w, stamp(w))
            sent += 1
            anomalous += w.label
            if not quiet and clock() >= next_progress:
                now = clock()
                next_progress = now + progress_every_s
                structlog.get_logger().info(
                    "producer.progress",
                    sent=sent,
                    delivered=producer.delivered,
                    rate=round(sent / (now - start), 1),
                    elapsed_s=round(now - start, 1),
                )
        if pacer.rate > 0 and not interrupted:
            # The last window's slot ends the run, so that rate = sent / seconds.
            end = pacer.due(sent) if duration_s is None else min(pacer.due(sent), duration_s)
            interrupted = not wait_until(start + end)
    except KeyboardInterrupt:
        interrupted = True
    seconds = clock() - start
    producer.flush(flush_timeout_s)
    flush_seconds = clock() - start - seconds
    report = StreamReport(
        sent=sent,
        delivered=producer.delivered,
        anomalous=anomalous,
        seconds=seconds,
        flush_seconds=flush_seconds,
        target_rate=pacer.rate,
        interrupted=interrupted,
    )
    structlog.get_logger().info(
        "producer.done",
        topic=producer.topic,
        sent=report.sent,
        delivered=report.delivered,
        anomalous=report.anomalous,
        seconds=round(report.seconds, 3),
        rate=round(report.rate, 1),
        target_rate=report.target_rate,
        flush_s=round(report.flush_seconds, 3),
        interrupted=report.interrupted,
    )
    return report
