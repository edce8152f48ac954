"""The detector service run in this process, timed stage by stage, and the consume-only ceiling.

:class:`InProcessDetector` builds a :class:`detector.service.DetectorService` with
:func:`detector.service.build_service`, as ``detector run`` does, but reuses one loaded model
for many runs, wraps the loop's five calls (consume, prepare, score, decide, publish) in
timers (the profile of where a window's time goes), and counts committed batches with a
:class:`~detector.batch_report.BatchObserver`. The wrappers add two ``perf_counter`` calls
per stage and batch.
Under backlog, score runs on the service's scorer thread (overlapped with deciding the
batch before and reading the batch after) and publish on its publisher thread (overlapped
with all of those), so the stages' wall times add up to more than the drain's.

A drain is timed from the first consume that returns records to the commit of the last
expected offset (exactly-once: the committed transaction), as the publisher thread timed it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from bench.broker import BenchError
from detector.batch_report import BatchReport
from detector.core import BatchDecider, BatchScores, Decisions, InputRecord, Prepared
from detector.core import Scorer as CoreScorer
from detector.kafka.io import KafkaIO
from detector.messages import decode_window
from detector.service import build_service
from detector.settings import DetectorSettings

__all__ = ["STAGES", "DrainResult", "InProcessDetector", "StageClock", "consume_only"]

STAGES = ("consume", "prepare", "score", "decide", "publish")
_T = TypeVar("_T")


@dataclass(slots=True)
class StageClock:
    """Seconds spent per stage, and the drain's bookkeeping."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    cpu_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    batches: int = 0
    records: int = 0
    first_record_s: float | None = None
    done_s: float | None = None

    def add(self, stage: str, seconds: float, cpu_s: float) -> None:
        self.seconds[stage] += seconds
        self.cpu_seconds[stage] += cpu_s

    def timed(self, stage: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, its wall and thread-CPU time added to ``stage``."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.add(stage, time.perf_counter() - t0, time.thread_time() - c0)


@dataclass(frozen=True, slots=True)
class DrainResult:
    """One timed drain of a preloaded topic.

    Attributes:
        windows: records processed.
        seconds: first record to last commit.
        per_s: windows per second.
        batches: micro-batches (mean batch size = windows / batches).
        stage_s: wall seconds per stage (only for the detector).
        stage_cpu_s: CPU seconds of the loop's thread per stage: unlike wall time, not
            inflated while other processes hold the CPU (librdkafka's own threads excluded).
    """

    windows: int
    seconds: float
    per_s: float
    batches: int
    stage_s: dict[str, float]
    stage_cpu_s: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """For the results file; stage times also as microseconds per window."""

        def per_window(values: dict[str, float]) -> dict[str, float | None]:
            return {
                k: (v / self.windows * 1e6 if self.windows else None) for k, v in values.items()
            }

        return {
            "windows": self.windows,
            "seconds": self.seconds,
            "windows_per_s": self.per_s,
            "batches": self.batches,
            "mean_batch": self.windows / self.batches if self.batches else None,
            "stage_seconds": self.stage_s,
            "stage_us_per_window": per_window(self.stage_s),
            "stage_cpu_us_per_window": per_window(self.stage_cpu_s),
        }


class _TimedScorer:
    """The model, timed (the service calls ``scorer.score`` once per batch)."""

    def __init__(self, inner: CoreScorer, clock: StageClock) -> None:
        self._inner = inner
        self._clock = clock

    def score(self, batch: npt.NDArray[np.float32]) -> BatchScores:
        return self._clock.timed("score", self._inner.score, batch)


class InProcessDetector:
    """One detector service on a thread of this process, instrumented.

    Args:
        settings: the service's settings (topics, group, delivery, thresholds).
        scorer: a loaded model (``detector.model.load_bundle(...)``), reused across runs.
        manifest: its manifest.
        expect: records after which the drain is complete (None: run until stopped).
    """

    def __init__(
        self,
        settings: DetectorSettings,
        scorer: CoreScorer,
        manifest: Any,
        expect: int | None = None,
    ) -> None:
        self.clock = StageClock()
        self._expect = expect
        self._done = threading.Event()
        self.service = build_service(
            settings, _TimedScorer(scorer, self.clock), manifest, observer=self
        )
        self._errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._instrument()

    @property
    def core(self) -> BatchDecider:
        return self.service.core

    def _instrument(self) -> None:
        svc = self.service
        clock = self.clock
        consume = svc.io.consume
        prepare = svc.core.prepare
        decide = svc.core.decide
        publish = svc.io.publish

        def timed_consume(max_records: int, timeout_s: float) -> list[InputRecord]:
            t0, c0 = time.perf_counter(), time.thread_time()
            out = consume(max_records, timeout_s)
            t1 = time.perf_counter()
            if out and clock.first_record_s is None:
                clock.first_record_s = t1
            elif clock.first_record_s is not None and clock.done_s is None:
                # the first wait (join, first fetch) is not work
                clock.add("consume", t1 - t0, time.thread_time() - c0)
            return out

        def timed_prepare(records: list[InputRecord]) -> Prepared:
            return clock.timed("prepare", prepare, records)

        def timed_decide(prepared: Prepared, result: BatchScores, now_ms: int) -> Decisions:
            return clock.timed("decide", decide, prepared, result, now_ms)

        def timed_publish(*args: Any) -> None:
            # on the publisher thread, overlapped with the next batch's stages
            clock.timed("publish", publish, *args)

        svc.io.consume = timed_consume  # type: ignore[method-assign]
        svc.core.prepare = timed_prepare  # type: ignore[method-assign]
        svc.core.decide = timed_decide  # type: ignore[method-assign]
        svc.io.publish = timed_publish  # type: ignore[method-assign,assignment]

    def batch_committed(self, report: BatchReport) -> None:
        """The service's observer: count committed input; the drain ends at the commit of
        the last expected record (as the publisher thread timed it)."""
        if not report.has_input:
            return
        self.clock.batches += 1
        self.clock.records += report.records
        if self._expect is not None and self.clock.records >= self._expect:
            self.clock.done_s = report.committed_at
            self._done.set()

    def start(self) -> None:
        """Connect, create topics, subscribe, and run the loop on a thread."""
        self.service.start()

        def loop() -> None:
            try:
                self.service.run()
            except BaseException as exc:  # reported by stop()
                self._errors.append(exc)
                self._done.set()

        self._thread = threading.Thread(target=loop, name="detector", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float) -> DrainResult:
        """Wait until ``expect`` records are committed; the drain's figures.

        Raises:
            BenchError: not done within ``timeout_s``, or the loop failed.
        """
        if not self._done.wait(timeout_s):
            raise BenchError(
                f"detector committed {self.clock.records} of {self._expect} records "
                f"in {timeout_s:.0f} s"
            )
        if self._errors:
            raise BenchError(f"detector loop failed: {self._errors[0]!r}") from self._errors[0]
        c = self.clock
        assert c.first_record_s is not None and c.done_s is not None
        seconds = c.done_s - c.first_record_s
        return DrainResult(
            c.records, seconds, c.records / seconds, c.batches, dict(c.seconds), dict(c.cpu_seconds)
        )

    def stop(self, timeout_s: float = 60.0) -> None:
        """Ask the loop to finish its batch, commit and close; join the thread."""
        self.service.request_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise BenchError("the detector loop did not stop within its bound")
        if self._errors:
            raise BenchError(f"detector loop failed: {self._errors[0]!r}") from self._errors[0]


def consume_only(
    settings: DetectorSettings,
    expect: int,
    timeout_s: float,
    decode: Callable[[InputRecord], object] | None = None,
) -> DrainResult:
    """The ceiling: the detector's consumer (same settings, same ``consume`` call), decode, discard.

    Args:
        settings: the detector's settings (the group must be fresh).
        expect: records on the topic.
        timeout_s: bound on the whole drain.
        decode: per-record work; :func:`detector.messages.decode_window` by default.
    """
    io = KafkaIO(settings)
    work = decode or (lambda r: decode_window(r.key, r.value, r.headers))
    io.input.subscribe()
    count = batches = 0
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while count < expect:
            if time.monotonic() > deadline:
                raise BenchError(f"consume-only read {count} of {expect} in {timeout_s:.0f} s")
            records = io.consume(settings.max_batch, settings.max_wait_s)
            if not records:
                continue
            if first is None:
                first = time.perf_counter()
            for record in records:
                work(record)
            count += len(records)
            batches += 1
        assert first is not None
        seconds = time.perf_counter() - first
    finally:
        io.close()
    return DrainResult(count, seconds, count / seconds, batches, {}, {})
