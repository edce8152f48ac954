"""The detector service: consume a micro-batch, score it once, decide, publish, commit.

Start-up fails fast with a clear error (non-zero exit) when the bundle cannot be loaded or
the broker cannot be reached within ``startup_timeout_s``; once running, publish failures are
retried with back-off after rewinding to the last committed offsets and reloading state, and
a failure of the rewind or of the state restore (the broker still down, or loading) is
retried with back-off too, until it succeeds or a stop is requested.

No thread waits for another while holding the consumer: the publisher thread never touches
it (the group metadata it commits offsets with is taken on the loop's thread, and
at-least-once offsets are committed there too), so the rebalance callbacks, which run on the
loop's thread holding the consumer, may wait for the publisher.
SIGTERM/SIGINT finish the batch in hand, commit it, and exit 0.

State is exactly-once by default (``state_interval_s`` 0): each batch's transaction carries
the state of every source it touched, beside its outputs and offsets, so a clean stop has
nothing left to write and a crash restores exactly the state of the committed offsets.

The batches themselves, from records to commit, belong to a
:class:`~detector.batch_pipeline.BatchPipeline`; this module holds the loop around it, the
rebalance callbacks, start-up and shut-down. Seams: the service builds its Kafka edge with
the factory it is given (``io``, by default :class:`~detector.kafka.io.KafkaIO`), handing it
:meth:`DetectorService.on_assign`, :meth:`DetectorService.on_revoke` and its stop event;
every committed transaction goes to its observers as a
:class:`~detector.batch_report.BatchReport` (metrics and the batch log line by default; the
bench adds its timers). :func:`build_service` is the one way to build a service.

Why one module of ~430 lines: the loop, the rebalance callbacks, start-up and shut-down
share the stop event, the assignment and the pipeline's batches in hand; the callbacks run
inside the loop's consume call, so they are read together.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from types import FrameType

import structlog
from confluent_kafka import KafkaException

from detector.batch_pipeline import BatchPipeline
from detector.batch_report import BatchObserver, BatchReporter, RunTotals, report_gauges
from detector.broker_watch import BrokerWatch, kafka_probe
from detector.bundle import Manifest
from detector.core import BatchDecider, Scorer, build_decider
from detector.errors import KafkaUnavailableError
from detector.health import HealthTracker
from detector.kafka.io import EdgeFactory, KafkaIO
from detector.metrics import DetectorMetrics, HealthServer
from detector.retry import Backoff
from detector.settings import DetectorSettings

__all__ = ["DetectorService", "build_service"]

log = structlog.get_logger()

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
        io: builds the Kafka edge (:class:`~detector.kafka.io.KafkaIO` by default).
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
            event (:class:`~detector.kafka.io.KafkaIO` by default).
        observer: told of every committed transaction after the service's own observers
            (metrics and log lines: :mod:`detector.batch_report`).
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
        self.run_totals = RunTotals()
        # Committed since start: the stop log line reports these.
        self.totals = self.run_totals.counts
        observers: list[BatchObserver] = [
            BatchReporter(self.metrics, settings.log_interval_s),
            self.run_totals,
        ]
        if observer is not None:
            observers.append(observer)
        self.health: HealthServer | None = None
        # What /healthz and /readyz answer (detector.health); the watch probes the broker.
        self.health_state = HealthTracker(settings.health, time.monotonic())
        self.metrics.bind_health(self.health_state, time.monotonic)
        self.watch: BrokerWatch | None = None
        self.pipeline = BatchPipeline(
            scorer,
            core,
            self.io,
            observers,
            self.health_state,
            self.metrics,
            self._stop,
            self._take_up,
        )
        self._closing = False
        self._closed = False
        self._stopped_while_restoring = False  # then nothing assigned may be decided
        # --stop-when-idle counts from the first assignment, not from start-up: a slow
        # start (group join, state restore) is not idleness.
        self._assigned_at: float | None = None
        self._records_read = 0
        self.metrics.target_far.set(settings.threshold.target_far)

    def __enter__(self) -> DetectorService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release()  # run() closed already, or it never ran (start failed, say)

    # -- partitions: the edge's rebalance callbacks, on the consuming thread -----------------

    def on_assign(self, partitions: list[int]) -> None:
        """Partitions assigned: restore their committed state, then report consuming."""
        self._take_up(partitions)

    def on_revoke(self, partitions: list[int]) -> None:
        """Partitions revoked: commit what is in hand of them, hand over their state."""
        self.health_state.forget_input()  # what was read from them is not ours to commit
        # The batches being scored and published hold offsets of these partitions: let them
        # finish before they go (a failure is handled by the loop, which rewinds what is left),
        # then hand over their state as it stands after them.
        pipeline = self.pipeline
        if pipeline.commit_all_in_hand(recover=False) and not self._closing:
            pipeline.publish_unsaved_state(set(partitions), recover=False)
        gone = self.core.drop_partitions(set(partitions))
        log.info("state_dropped", partitions=partitions, sources=len(gone))

    def _take_up(self, partitions: list[int]) -> bool:
        """Restore these partitions' state and report consuming; False if a stop came first."""
        if self._assigned_at is None:
            self._assigned_at = time.monotonic()
        if not self._restore_state(partitions):
            return False  # stopping: the loop decides nothing more
        self.health_state.set_consuming(True, time.monotonic())
        return True

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

        Each batch read goes to the pipeline (:mod:`detector.batch_pipeline`: scored on its
        scorer thread, decided here, published on its publisher thread), which answers False
        when a batch before it failed and the input was rewound: what the loop holds is then
        read again. Once a second, idle episodes are swept (their resolutions published in a
        transaction of their own); a quiet stream's last batch commits when a consume comes
        back empty.
        """
        s = self.settings
        pipeline = self.pipeline
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
                if pipeline.rewind_after_revoke():
                    continue  # records consumed before the rewind are read again
                mono = time.monotonic()
                if mono - last_sweep >= 1.0:
                    last_sweep = mono
                    if not pipeline.commit_all_in_hand():
                        continue
                    swept = self.core.sweep_idle(_now_ms())
                    if swept.alerts and not pipeline.publish_alone(swept):
                        continue
                if mono - last_gauges >= GAUGES_INTERVAL_S:
                    last_gauges = mono
                    self._refresh_gauges()
                if not records:
                    if not pipeline.commit_all_in_hand():  # a quiet stream's last batch commits
                        continue
                    idle_s = self._idle_s(mono, last_input)
                    if s.stop_when_idle_s is not None and idle_s >= s.stop_when_idle_s:
                        log.info("idle_stop", idle_s=round(idle_s, 1))
                        break
                    continue
                last_input = mono
                self.health_state.consumed(mono)
                self._records_read += len(records)
                if not pipeline.take(records):
                    continue  # the batch before it was rolled back: this one is read again
                if len(records) < s.max_batch:
                    # No backlog: decide now and hand the batch to the publisher without
                    # waiting for its commit; the next batch is read, scored and decided
                    # while it commits (and waits for it before its own publish). A quiet
                    # stream's last batch is settled when the next consume comes back empty.
                    # At 5k windows/s, exactly-once, 8 interleaved pairs of runs against
                    # the drain-each-batch loop on a noisy 2-core machine: median p99
                    # produce-to-alert 168 vs 193 ms, p50 57 vs 55 ms (runs varied 2-4x).
                    pipeline.decide_and_publish_scored()
            # The batches in hand: commit them before leaving, then (only with
            # state_interval_s > 0) the threshold state they left unwritten.
            if pipeline.commit_all_in_hand():
                pipeline.publish_unsaved_state(None)
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
            top_dead_letter_reasons=dict(self.run_totals.dead_letter_reasons.most_common(3)),
            assigned=self._assigned_at is not None,
            topic=self.settings.topics.windows,
        )

    def _refresh_gauges(self) -> None:
        """Consumer lag and threshold gauges (:func:`~detector.batch_report.report_gauges`)."""
        try:
            report_gauges(self.metrics, self.health_state, self.io.lag(), self.core.bank)
        except Exception as exc:
            log.debug("lag_update_failed", error=str(exc))

    def _on_broker_error(self, code: str, text: str, all_brokers_down: bool) -> None:
        if self.watch is not None:
            self.watch.on_error(code, text, all_brokers_down)

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
            self.pipeline.close()
            gc.unfreeze()  # undo run()'s freeze: in-process users (tests, bench) go on collecting
            self.health_state.set_consuming(False, time.monotonic())
            self.io.close()
        finally:
            if self.watch is not None:
                self.watch.stop()
            if self.health is not None:
                self.health.stop()
