"""What the service tells the world about each committed batch.

The service hands every committed transaction to its observers as a :class:`BatchReport`
(what the batch did and how long each stage took). :class:`BatchReporter`, the observer
every service has, turns reports into the Prometheus metrics, the dead-letter warnings and
the one log line per batch; :class:`RunTotals` counts them for the stop line.
:func:`report_gauges` sets the gauges read from the consumer and the threshold bank (lag,
thresholds per source), which the service refreshes every few seconds. Other observers
(the bench's timers) implement :class:`BatchObserver`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from detector.alerts import Alert
from detector.dead_letter_watch import DeadLetterWatch
from detector.events import Event
from detector.health import HealthTracker
from detector.metrics import DetectorMetrics
from detector.threshold import ThresholdBank

__all__ = ["BatchObserver", "BatchReport", "BatchReporter", "RunTotals", "report_gauges"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One committed transaction: what it carried and how long each stage took.

    Attributes:
        records: input records it committed (0: the alerts of an idle-episode sweep, or a
            state write, which have no input).
        windows: records scored.
        dead_letters: (reason, detail) of each record sent to the dead-letter topic.
        alerts: alerts published.
        events: events published.
        flagged: windows above their threshold.
        oldest_event_time_ms: event time of the oldest window scored (None: none).
        open_episodes: episodes open once it was decided.
        score_s: the model call.
        decide_s: the core's decisions.
        publish_s: producing, sending offsets and committing, on the publisher thread.
        batch_s: from the start of its processing to its commit.
        committed_at: ``time.perf_counter()`` when it committed (the loop may take the
            outcome in later, behind the next batch).
    """

    records: int
    windows: int
    dead_letters: Sequence[tuple[str, str]]
    alerts: Sequence[Alert]
    events: Sequence[Event]
    flagged: int
    oldest_event_time_ms: int | None
    open_episodes: int
    score_s: float
    decide_s: float
    publish_s: float
    batch_s: float
    committed_at: float

    @property
    def has_input(self) -> bool:
        """Whether it committed input records (not a sweep's alerts nor a state write)."""
        return self.records > 0


class BatchObserver(Protocol):
    """Told of every committed transaction, on the loop's thread, in commit order."""

    def batch_committed(self, report: BatchReport) -> None:
        """Take in one committed transaction (must not block: the loop waits for it)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BatchReporter:
    """The service's own observer: metrics, dead-letter warnings, the ``batch`` log line.

    Args:
        metrics: where the counters and histograms go.
        log_interval_s: the longest time between two ``batch`` lines (a batch with alerts,
            events or dead letters is logged at once).
    """

    def __init__(self, metrics: DetectorMetrics, log_interval_s: float) -> None:
        self.metrics = metrics
        self._log_interval_s = log_interval_s
        self._dead_letter_watch = DeadLetterWatch()  # dead letters said in the log
        self._summary = {"batches": 0, "windows": 0, "alerts": 0, "dead_letters": 0, "flagged": 0}
        self._minute = {"flagged": 0, "scored": 0}
        self._minute_start = self._last_log = time.monotonic()

    def batch_committed(self, report: BatchReport) -> None:
        """Count the report in the metrics; log the batch line when it is due."""
        m = self.metrics
        m.publish_seconds.observe(report.publish_s)
        for alert in report.alerts:
            m.alerts.labels(state=alert.state.value).inc()
        for event in report.events:
            m.events.labels(type=event.type).inc()
        if not report.has_input:
            return
        self._count_input(report)
        self._log_batch(report)

    def _count_input(self, report: BatchReport) -> None:
        m = self.metrics
        for line in self._dead_letter_watch.observe(
            report.dead_letters, report.windows, time.monotonic()
        ):
            getattr(log, line.level)(line.event, **line.fields)
        m.windows.labels(outcome="scored").inc(report.windows)
        if report.dead_letters:
            m.windows.labels(outcome="dead_letter").inc(len(report.dead_letters))
            for reason, _detail in report.dead_letters:
                m.dead_letters.labels(reason=reason).inc()
        m.flagged.inc(report.flagged)
        m.batch_size.observe(report.records)
        m.score_seconds.observe(report.score_s)
        m.batch_seconds.observe(report.batch_s)
        if report.oldest_event_time_ms is not None:
            m.event_lag.observe(max(0.0, (_now_ms() - report.oldest_event_time_ms) / 1000))

    def _log_batch(self, report: BatchReport) -> None:
        """The one ``batch`` line: totals since the last line, the last batch's stages."""
        summary = self._summary
        summary["batches"] += 1
        summary["windows"] += report.records
        summary["alerts"] += len(report.alerts)
        summary["dead_letters"] += len(report.dead_letters)
        summary["flagged"] += report.flagged
        self._minute["flagged"] += report.flagged
        self._minute["scored"] += report.windows
        mono = time.monotonic()
        if mono - self._minute_start >= 60 and self._minute["scored"]:
            self.metrics.flag_rate.set(self._minute["flagged"] / self._minute["scored"])
            self._minute = {"flagged": 0, "scored": 0}
            self._minute_start = mono
        noteworthy = report.alerts or report.dead_letters or report.events
        if noteworthy or mono - self._last_log >= self._log_interval_s:
            log.info(
                "batch",
                **summary,
                last_batch=report.records,
                score_ms=round(report.score_s * 1000, 2),
                decide_ms=round(report.decide_s * 1000, 2),
                publish_ms=round(report.publish_s * 1000, 2),
                batch_ms=round(report.batch_s * 1000, 2),
                open_episodes=report.open_episodes,
            )
            self._summary = dict.fromkeys(summary, 0)
            self._last_log = mono


def report_gauges(
    metrics: DetectorMetrics,
    health: HealthTracker,
    lag: dict[int, int],
    bank: ThresholdBank,
    max_sources: int = 50,
) -> None:
    """Consumer lag per partition (and in total, for readiness), and the threshold gauges
    of the global threshold and of at most ``max_sources`` sources."""
    for partition, behind in lag.items():
        metrics.consumer_lag.labels(partition=str(partition)).set(behind)
    health.set_lag(sum(lag.values()), time.monotonic())
    sources = bank.sources()
    metrics.sources.set(len(sources))
    metrics.threshold.labels(source="_global").set(bank.global_info.value)
    for source in sources[:max_sources]:
        st = bank.stats(source)
        age = st.calibration_age_ms
        metrics.set_source(
            source,
            st.threshold,
            st.flag_rate,
            age / 1000 if age is not None else None,
            st.drift_statistic,
        )


class RunTotals:
    """An observer counting what was committed since start: the ``detector_stopped`` and
    ``no_windows_scored`` lines report it."""

    def __init__(self) -> None:
        self.counts = {"scored": 0, "dead_letters": 0, "alerts": 0, "events": 0}
        self.dead_letter_reasons: Counter[str] = Counter()

    def batch_committed(self, report: BatchReport) -> None:
        """Add the report's windows, dead letters, alerts and events."""
        self.counts["scored"] += report.windows
        self.counts["dead_letters"] += len(report.dead_letters)
        self.counts["alerts"] += len(report.alerts)
        self.counts["events"] += len(report.events)
        self.dead_letter_reasons.update(reason for reason, _detail in report.dead_letters)
