"""The detector service loop: consume a micro-batch, score it once, decide, publish, commit.

Start-up fails fast with a clear error (non-zero exit) when the bundle cannot be loaded or
the broker cannot be reached within ``startup_timeout_s``; once running, publish failures are
retried with back-off after rewinding to the last committed offsets and reloading state, and
a failure of the rewind or of the state restore (the broker still down, or loading) is
retried with back-off too, until it succeeds or a stop is requested.

No thread waits for another while holding the consumer: the publisher thread never touches
it (the group metadata it commits offsets with is taken here, on the loop's thread, and
at-least-once offsets are committed here too), so the rebalance callbacks, which run on the
loop's thread holding the consumer, may wait for the publisher.
SIGTERM/SIGINT finish the batch in hand, commit it, and exit 0.

State is exactly-once by default (``state_interval_s`` 0): each batch's transaction carries
the state of every source it touched, beside its outputs and offsets, so a clean stop has
nothing left to write and a crash restores exactly the state of the committed offsets.

Seams: the service builds its Kafka edge with the factory it is given (``io``, by default
:class:`~detector.kafka_io.KafkaIO`), handing it :meth:`DetectorService.on_assign`,
:meth:`DetectorService.on_revoke` and its stop event; every committed transaction goes to
its observers as a :class:`~detector.batch_report.BatchReport` (metrics and the batch log
line: :class:`~detector.batch_report.BatchReporter`; the bench adds its timers).
:func:`build_service` is the one way to build a service, for the CLI, tests and the bench.

This module is longer than the house's ~400 lines because the loop, its rebalance callbacks
and its recovery share one piece of state (the batches being scored and published) that no
part may change without the others: splitting them would spread that ownership again.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

import structlog
from confluent_kafka import KafkaException, TopicPartition

from detector.batch_report import BatchObserver, BatchReport, BatchReporter, report_gauges
from detector.broker_watch import BrokerWatch, kafka_probe
from detector.bundle import Manifest
from detector.core import (
    BatchDecider,
    BatchScores,
    DeadLetter,
    Decisions,
    InputRecord,
    Prepared,
    Scorer,
    build_decider,
)
from detector.errors import KafkaUnavailableError, PublishError
from detector.events import encode_event
from detector.health import HealthTracker
from detector.kafka_consumer import offsets_after
from detector.kafka_io import EdgeFactory, KafkaIO
from detector.metrics import DetectorMetrics, HealthServer
from detector.retry import Backoff
from detector.settings import DetectorSettings

__all__ = ["DetectorService", "build_service"]

log = structlog.get_logger()

# The longest wait between attempts to recover from a failed publish: short, so that the
# detector is back within seconds of a broker's return, however long it was away.
RETRY_MAX_S = 5.0
# How often the loop refreshes the gauges read from the consumer and the threshold bank.
GAUGES_INTERVAL_S = 10.0


def build_service(
    settings: DetectorSettings,
    scorer: Scorer | None = None,
    manifest: Manifest | None = None,
    *,
    io: EdgeFactory | None = None,
    observer: BatchObserver | None = None,
    stop: threading.Event | None = None,
) -> DetectorService:
    """The detector service for these settings: its core from the one core factory
    (:func:`detector.core.build_decider`) with the settings' parts.

    Args:
        settings: the process's settings.
        scorer: a loaded model (or a test's plain scorer); None loads ``settings.bundle``
            (TensorFlow) and warms it up.
        manifest: the scorer's manifest (required with ``scorer``).
        io: builds the Kafka edge (:class:`~detector.kafka_io.KafkaIO` by default).
        observer: told of every committed transaction after the service's own reporting.
        stop: the stop event (a test's may make back-off waits return at once).

    Raises:
        BundleError: the bundle cannot be loaded.
    """
    if scorer is None:
        from detector.model import load_bundle

        loaded = load_bundle(settings.bundle)
        started = time.monotonic()
        sizes = loaded.warmup(settings.max_batch)
        log.info(
            "model_warmed_up",
            max_batch=settings.max_batch,
            batch_sizes=sizes,  # compiled now; larger ones when they first occur
            seconds=round(time.monotonic() - started, 2),
        )
        scorer, manifest = loaded, loaded.manifest
    elif manifest is None:
        raise TypeError("build_service needs the manifest of the scorer it is given")
    core = build_decider(
        manifest,
        settings.threshold,
        settings.lifecycle,
        max_message_bytes=settings.max_message_bytes,
        state_interval_ms=int(settings.state_interval_s * 1000),
    )
    return DetectorService(settings, scorer, core, io=io, observer=observer, stop=stop)


@dataclass(frozen=True, slots=True)
class _Publishing:
    """A decided batch whose outputs are being published on the publisher thread."""

    future: Future[tuple[float, float]]  # (seconds the publish took, perf_counter when done)
    prepared: Prepared | None  # None: alerts of the idle-episode sweep, no input records
    decisions: Decisions
    n_records: int
    started: float = 0.0  # perf_counter when its processing began
    score_s: float = 0.0
    decide_s: float = 0.0
    offsets: list[TopicPartition] = field(default_factory=list)  # its input offsets


@dataclass(frozen=True, slots=True)
class _Scoring:
    """A prepared batch whose model call runs on the scorer thread."""

    future: Future[tuple[BatchScores, float]]  # (scores, seconds the call took)
    prepared: Prepared
    records: list[InputRecord]
    started: float  # perf_counter when its processing began


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DetectorService:
    """One detector instance: owns its Kafka edge, the core, the metrics and the loop.

    Use it as a context manager (``with build_service(...) as service``): leaving the block
    closes the edge's clients and the threads even if :meth:`start` failed.

    Args:
        settings: the process's settings.
        scorer: the model (called once per batch, on the scorer thread).
        core: the pure decider (:func:`detector.core.build_decider`).
        io: builds the Kafka edge, given :meth:`on_assign`, :meth:`on_revoke` and the stop
            event (:class:`~detector.kafka_io.KafkaIO` by default).
        observer: told of every committed transaction after the service's own
            :class:`~detector.batch_report.BatchReporter`.
        stop: the event :meth:`request_stop` sets; back-off waits wait on it.
    """

    def __init__(
        self,
        settings: DetectorSettings,
        scorer: Scorer,
        core: BatchDecider,
        *,
        io: EdgeFactory | None = None,
        observer: BatchObserver | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.core = core
        self.metrics = DetectorMetrics()
        self._stop = stop if stop is not None else threading.Event()
        self.io = (io or KafkaIO)(
            settings, on_assign=self.on_assign, on_revoke=self.on_revoke, stop=self._stop
        )
        self.observers: list[BatchObserver] = [BatchReporter(self.metrics, settings.log_interval_s)]
        if observer is not None:
            self.observers.append(observer)
        self.health: HealthServer | None = None
        # What /healthz and /readyz answer (detector.health); the watch probes the broker.
        self.health_state = HealthTracker(settings.health, time.monotonic())
        self.metrics.bind_health(self.health_state, time.monotonic)
        self.watch: BrokerWatch | None = None
        # Committed since start: the stop log line reports these.
        self.totals = {"scored": 0, "dead_letters": 0, "alerts": 0, "events": 0}
        m = core.manifest
        self._no_scores = BatchScores.empty(m.window_size, m.n_channels)
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher")
        self._publishing: _Publishing | None = None
        # TensorFlow releases the GIL while the model runs, so a batch is scored on this
        # thread while the loop decides the one before and reads the one after.
        self._scorer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._scoring: _Scoring | None = None
        self._revoke_failure: PublishError | None = None  # rewound by the loop after it
        self._closing = False
        self._closed = False
        self._failed_attempts = 0
        self._stopped_while_restoring = False  # then nothing assigned may be decided
        # --stop-when-idle counts from the first assignment, not from start-up: a slow
        # start (group join, state restore) is not idleness.
        self._assigned_at: float | None = None
        self._records_read = 0
        self._dead_letter_reasons: Counter[str] = Counter()
        self.metrics.target_far.set(settings.threshold.target_far)

    def __enter__(self) -> DetectorService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()  # run() closed already, or it never ran (start failed, say)

    # -- partitions: the edge's rebalance callbacks, on the consuming thread -----------------

    def on_assign(self, partitions: list[int]) -> None:
        """Partitions assigned: restore their committed state, then report consuming."""
        if self._assigned_at is None:
            self._assigned_at = time.monotonic()
        if not self._restore_state(partitions):
            return  # stopping: the loop decides nothing more
        self.health_state.set_consuming(True, time.monotonic())

    def on_revoke(self, partitions: list[int]) -> None:
        """Partitions revoked: commit what is in hand of them, hand over their state."""
        self.health_state.forget_input()  # what was read from them is not ours to commit
        # The batches being scored and published hold offsets of these partitions: let them
        # finish before they go (a failure is handled by the loop, which rewinds what is left),
        # then hand over their state as it stands after them.
        if self._commit_all_in_hand(recover=False) and not self._closing:
            self._publish_unsaved_state(set(partitions), recover=False)
        gone = self.core.drop_partitions(set(partitions))
        log.info("state_dropped", partitions=partitions, sources=len(gone))

    def _restore_state(self, partitions: list[int]) -> bool:
        """Load these partitions' committed state into the core, retrying with back-off
        while the state topic cannot be read to its end (the broker down or loading);
        False if a stop came first (then nothing of them may be decided)."""
        started = time.monotonic()
        backoff = Backoff()
        while True:
            try:
                state = self.io.read_state(partitions)
                break
            except (KafkaException, KafkaUnavailableError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "state_restore_failed", partitions=partitions, error=str(exc), retry_in_s=delay
                )
                if self._stop.wait(delay):
                    self._stopped_while_restoring = True
                    return False
        restored = sum(self.core.restore(key, data, part) for key, (part, data) in state.items())
        log.info(
            "state_restored",
            partitions=partitions,
            records=restored,
            seconds=round(time.monotonic() - started, 3),
        )
        return True

    # -- life cycle -----------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Finish the batch in hand, commit, and return from :meth:`run`."""
        if not self._stop.is_set():
            log.info("stopping", signal=signal.Signals(signum).name if signum else None)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a graceful stop."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def start(self) -> None:
        """Reach the broker, create topics, fence predecessors, subscribe, serve metrics."""
        s = self.settings
        self.io.wait_for_broker(s.startup_timeout_s)
        if s.topics.create_missing:
            self.io.ensure_topics()
        self.io.start(s.startup_timeout_s)
        if s.metrics_port is not None:
            self.health = HealthServer(
                self.metrics, s.metrics_host, s.metrics_port, self.health_state
            )
            self.health.start()
        probe, poll = kafka_probe(s.kafka, s.topics.windows, self._on_broker_error)
        self.watch = BrokerWatch(self.health_state, probe, poll, self.metrics)
        self.watch.start()
        log.info(
            "detector_started",
            model=self.core.manifest.model_id,
            topic=s.topics.windows,
            group=s.group_id,
            instance=s.instance_id,
            delivery=s.delivery,
            state_interval_s=s.state_interval_s,
            threshold_method=s.threshold.method,
            target_far=s.threshold.target_far,
            metrics_port=self.health.port if self.health else None,
        )
        if s.state_interval_s > 0:
            log.warning(
                "state_not_exactly_once",
                state_interval_s=s.state_interval_s,
                detail="threshold state is written at most this often: after a crash it is "
                "restored older than the committed offsets, and alerts may differ from an "
                "uninterrupted run's (state_interval_s 0 keeps it exactly-once)",
            )

    def run(self) -> int:
        """Process batches until stopped or idle; returns the process exit code.

        Under backlog (full batches) the loop is a three-stage pipeline, one batch per stage:
        batch N+1 is scored on the scorer thread (TensorFlow releases the GIL) while batch N
        is decided here and the next one read and decoded, and batch N-1's transaction
        (produce, send offsets, commit: mostly waiting for the broker) runs on the publisher
        thread. Decisions stay in stream order, and N is published only after N-1 committed,
        with its own offsets (:func:`~detector.kafka_consumer.offsets_after`), so outputs and
        offsets stay paired batch by batch; if N-1 fails, what was decided or scored behind
        it is dropped with the state it touched, and replayed from the committed offsets.
        Smaller batches (no backlog) are scored and decided at once, and the next one is
        read and decided while their transaction commits.
        """
        s = self.settings
        last_input = last_sweep = last_gauges = time.monotonic()
        # TensorFlow and Keras leave ~400k long-lived objects that every full collection
        # would walk again; the loop allocates enough per batch to trigger collections often.
        # Freezing moves what exists now out of the collector's sight (measured: 5.6 -> 0.2
        # µs of GC per window).
        gc.collect()
        gc.freeze()
        crash: Exception | None = None
        try:
            while not self._stop.is_set():
                self.health_state.beat(time.monotonic())
                records = self.io.consume(s.max_batch, s.max_wait_s)
                if self._stopped_while_restoring:
                    break  # stopped while restoring an assignment's state: decide nothing
                if self._revoke_failure is not None:
                    exc, self._revoke_failure = self._revoke_failure, None
                    self._rewind_and_restore(exc)
                    continue  # records consumed before the rewind are read again
                mono = time.monotonic()
                if mono - last_sweep >= 1.0:
                    last_sweep = mono
                    if not self._commit_all_in_hand():
                        continue
                    swept = self.core.sweep_idle(_now_ms())
                    if swept.alerts:
                        self._publishing = _Publishing(
                            self._start_publishing(swept, [], []), None, swept, 0
                        )
                        if not self._wait_for_commit():
                            continue
                if mono - last_gauges >= GAUGES_INTERVAL_S:
                    last_gauges = mono
                    self._refresh_gauges()
                if not records:
                    if not self._commit_all_in_hand():  # a quiet stream's last batch commits now
                        continue
                    idle_s = self._idle_s(mono, last_input)
                    if s.stop_when_idle_s is not None and idle_s >= s.stop_when_idle_s:
                        log.info("idle_stop", idle_s=round(idle_s, 1))
                        break
                    continue
                last_input = mono
                self.health_state.consumed(mono)
                self._records_read += len(records)
                started = time.perf_counter()
                prepared = self.core.prepare(records)
                scoring = _Scoring(
                    self._scorer_thread.submit(self._score_timed, prepared),
                    prepared,
                    records,
                    started,
                )
                if not self._decide_and_publish_scored():  # the batch before this one
                    continue  # it was rolled back: this one is read again
                self._scoring = scoring
                if len(records) < s.max_batch:
                    # No backlog: decide now and hand the batch to the publisher without
                    # waiting for its commit; the next batch is read, scored and decided
                    # while it commits (and waits for it before its own publish). A quiet
                    # stream's last batch is settled when the next consume comes back empty.
                    # At 5k windows/s, exactly-once, 8 interleaved pairs of runs against
                    # the drain-each-batch loop on a noisy 2-core machine: median p99
                    # produce-to-alert 168 vs 193 ms, p50 57 vs 55 ms (runs varied 2-4x).
                    self._decide_and_publish_scored()
            # The batches in hand: commit them before leaving, then (only with
            # state_interval_s > 0) the threshold state they left unwritten.
            if self._commit_all_in_hand():
                self._publish_unsaved_state(None)
        except Exception as exc:
            crash = exc
            raise
        finally:
            self.close(crash)
            self._warn_if_nothing_scored()
        return 0

    def _idle_s(self, mono: float, last_input: float) -> float:
        """Seconds without input since the later of the last input and the first assignment
        (0 before any partition was assigned)."""
        if self._assigned_at is None:
            return 0.0
        return mono - max(last_input, self._assigned_at)

    def _warn_if_nothing_scored(self) -> None:
        """A run that scored nothing says so loudly: an exit 0 with ``scored: 0`` is
        otherwise a silent success (input deleted by retention, wrong topic, bad records)."""
        if self.totals["scored"]:
            return
        log.warning(
            "no_windows_scored",
            records_read=self._records_read,
            dead_letters=self.totals["dead_letters"],
            top_dead_letter_reasons=dict(self._dead_letter_reasons.most_common(3)),
            assigned=self._assigned_at is not None,
            topic=self.settings.topics.windows,
        )

    def _score_timed(self, prepared: Prepared) -> tuple[BatchScores, float]:
        """On the scorer thread: the batch's one model call, and how long it took."""
        if not prepared.windows:
            return self._no_scores, 0.0
        t0 = time.perf_counter()
        result = self.scorer.score(prepared.batch)
        return result, time.perf_counter() - t0

    def _decide_and_publish_scored(self, *, recover: bool = True) -> bool:
        """Decide the batch being scored (waiting for its scores) and hand it to the
        publisher once the batch before it committed; False if that one failed and the
        input was rewound (this batch is then dropped: it is read again)."""
        scoring, self._scoring = self._scoring, None
        if scoring is None:
            return True
        result, score_s = scoring.future.result()
        t0 = time.perf_counter()
        decisions = self.core.decide(scoring.prepared, result, _now_ms())
        decide_s = time.perf_counter() - t0
        if not self._wait_for_commit(recover=recover):
            return False
        prepared = scoring.prepared
        offsets = offsets_after(scoring.records)
        future = self._start_publishing(decisions, prepared.dead_letters, offsets)
        self._publishing = _Publishing(
            future,
            prepared,
            decisions,
            len(scoring.records),
            scoring.started,
            score_s,
            decide_s,
            offsets,
        )
        return True

    def _commit_all_in_hand(self, *, recover: bool = True) -> bool:
        """Decide, publish and commit everything in hand; False as :meth:`_wait_for_commit`."""
        return self._decide_and_publish_scored(recover=recover) and self._wait_for_commit(
            recover=recover
        )

    def _publish_unsaved_state(self, partitions: set[int] | None, *, recover: bool = True) -> bool:
        """Publish the threshold state no batch carried yet (``state_interval_s`` > 0) of
        these partitions (None: all), in a transaction of its own; every decided batch must
        be committed first. False as :meth:`_wait_for_commit`."""
        unsaved = self.core.unsaved_state(partitions)
        if not unsaved.threshold_states_due:
            return True
        self._publishing = _Publishing(self._start_publishing(unsaved, [], []), None, unsaved, 0)
        ok = self._wait_for_commit(recover=recover)
        if ok:
            log.info("state_written", sources=len(unsaved.threshold_states_due))
        return ok

    def _start_publishing(
        self,
        decisions: Decisions,
        dead_letters: list[DeadLetter],
        offsets: list[TopicPartition],
    ) -> Future[tuple[float, float]]:
        """Serialise a batch's outputs here (the core is not thread-safe) and publish them on
        the publisher thread; the future's result is (seconds publishing took, perf_counter
        when it was committed).

        The consumer's group metadata is taken here, on the loop's thread (in a rebalance
        callback too): the publisher thread must never touch the consumer, which a callback
        holds while it waits for that thread.
        """
        now_ms = _now_ms()
        alert_msgs = [
            (a.source_id.encode(), a.model_dump_json().encode()) for a in decisions.alerts
        ]
        event_msgs = [(e.source_id.encode(), encode_event(e)) for e in decisions.events]
        states = self.core.state_records(decisions)
        group_metadata = self.io.group_metadata()
        return self._publisher.submit(
            self._publish_timed,
            alert_msgs,
            event_msgs,
            dead_letters,
            states,
            now_ms,
            offsets,
            group_metadata,
        )

    def _publish_timed(self, *args: Any) -> tuple[float, float]:
        """On the publisher thread: :meth:`KafkaIO.publish`, timed."""
        t0 = time.perf_counter()
        self.io.publish(*args)
        done = time.perf_counter()
        return done - t0, done

    def _on_broker_error(self, code: str, text: str, all_brokers_down: bool) -> None:
        if self.watch is not None:
            self.watch.on_error(code, text, all_brokers_down)

    def _wait_for_commit(self, *, recover: bool = True) -> bool:
        """Wait for the batch being published; False if it failed and the input was rewound
        (``recover=False``, inside a rebalance callback: the loop rewinds after it).

        Raises:
            PublishError: a failure that retrying cannot fix (fenced, fatal), or any failure
                while stopping.
        """
        publishing, self._publishing = self._publishing, None
        if publishing is None:
            return True
        try:
            publish_s, committed_at = publishing.future.result()
            self.io.commit_offsets(publishing.offsets)  # at-least-once: here, never there
        except PublishError as exc:
            if recover:
                self._rewind_and_restore(exc)
            else:
                self._revoke_failure = exc
            return False
        self._failed_attempts = 0
        if publishing.prepared is not None:  # input offsets (not a sweep's, a state write's)
            self.health_state.committed(time.monotonic())
        self._report_committed(publishing, publish_s, committed_at)
        return True

    def _rewind_and_restore(self, exc: PublishError) -> None:
        """After an aborted batch: back off, rewind to the committed offsets, reload state.

        A failed rewind (e.g. ``NOT_COORDINATOR`` while a restarted broker loads) is retried
        with back-off, and the restore retries itself, until they succeed.

        Raises:
            PublishError: ``exc``, if it is not retriable or a stop came first.
        """
        if not exc.retriable:
            raise exc
        self._scoring = None  # read again after the rewind
        self.metrics.publish_retries.inc()
        error: Exception = exc
        while True:
            self._failed_attempts += 1
            delay = min(RETRY_MAX_S, 0.5 * 2 ** min(self._failed_attempts, 6))
            log.warning(
                "publish_failed" if error is exc else "rewind_failed",
                error=str(error),
                retry_in_s=delay,
                attempt=self._failed_attempts,
            )
            if self._stop.wait(delay):
                raise exc
            # Outputs were aborted: replay from the committed offsets with the state as it
            # was committed (which also undoes what later, unpublished batches changed).
            try:
                self.io.rewind_to_committed()
            except (KafkaException, KafkaUnavailableError) as rewind_exc:
                error = rewind_exc
                continue
            parts = self.io.assigned_partitions()
            self.core.drop_partitions(set(parts))
            self.on_assign(parts)
            if self._stopped_while_restoring:
                raise exc
            return

    def _report_committed(
        self, publishing: _Publishing, publish_s: float, committed_at: float
    ) -> None:
        """Count a committed transaction in the totals and tell the observers
        (``committed_at``: its perf_counter time; the loop may take in the outcome later,
        behind the next batch)."""
        decisions, prepared = publishing.decisions, publishing.prepared
        windows = prepared.windows if prepared is not None else []
        dead_letters = prepared.dead_letters if prepared is not None else []
        self.totals["scored"] += len(windows)
        self.totals["dead_letters"] += len(dead_letters)
        self.totals["alerts"] += len(decisions.alerts)
        self.totals["events"] += len(decisions.events)
        self._dead_letter_reasons.update(dl.reason for dl in dead_letters)
        report = BatchReport(
            records=publishing.n_records,
            windows=len(windows),
            dead_letters=[(dl.reason, dl.detail) for dl in dead_letters],
            alerts=decisions.alerts,
            events=decisions.events,
            flagged=decisions.flagged,
            oldest_event_time_ms=min((w.event_time_ms for w in windows), default=None),
            open_episodes=self.core.tracker.open_count(),
            score_s=publishing.score_s,
            decide_s=publishing.decide_s,
            publish_s=publish_s,
            batch_s=committed_at - publishing.started if prepared is not None else 0.0,
            committed_at=committed_at,
        )
        for observer in self.observers:
            observer.batch_committed(report)

    def _refresh_gauges(self) -> None:
        """Consumer lag and threshold gauges (:func:`~detector.batch_report.report_gauges`)."""
        try:
            report_gauges(self.metrics, self.health_state, self.io.lag(), self.core.bank)
        except Exception as exc:
            log.debug("lag_update_failed", error=str(exc))

    def close(self, crash: Exception | None = None) -> None:
        """Let the batch being published finish, leave the group, flush, stop serving.

        Args:
            crash: the exception :meth:`run` is leaving with, if any: it is logged as an
                error with its cause first (a crash must not look like a clean stop, and
                the clean-up may itself fail), and no ``detector_stopped`` line follows.
        """
        if crash is not None:
            log.error(
                "detector_crashed", error=f"{type(crash).__name__}: {crash}"[:1000], **self.totals
            )
        self._release()
        if crash is None:
            log.info("detector_stopped", **self.totals)

    def _release(self) -> None:
        """Stop the threads, close the edge's clients, stop serving; once, whatever failed."""
        if self._closed:
            return
        self._closed = True
        self._closing = True  # the revoke that closing triggers publishes nothing more
        try:
            self._scorer_thread.shutdown(wait=True)
            self._publisher.shutdown(wait=True)  # its outcome is taken in on_revoke in close
            gc.unfreeze()  # undo run()'s freeze: in-process users (tests, bench) go on collecting
            self.health_state.set_consuming(False, time.monotonic())
            self.io.close()
        finally:
            if self.watch is not None:
                self.watch.stop()
            if self.health is not None:
                self.health.stop()
