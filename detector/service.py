"""The detector service loop: consume a micro-batch, score it once, decide, publish, commit.

Start-up fails fast with a clear error (non-zero exit) when the bundle cannot be loaded or
the broker cannot be reached within ``startup_timeout_s``; once running, publish failures are
retried with back-off after rewinding to the last committed offsets and reloading state.
SIGTERM/SIGINT finish the batch in hand, commit it, and exit 0.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

import numpy as np
import numpy.typing as npt
import structlog

from detector.bundle import Manifest
from detector.core import DeadLetter, Decisions, DetectorCore, Prepared, ScoreArrays, Scorer
from detector.events import encode_event
from detector.kafka_io import KafkaIO, PublishError
from detector.metrics import DetectorMetrics, HealthServer
from detector.settings import DetectorSettings
from detector.threshold import ThresholdBank

__all__ = ["DetectorService", "EmptyScores", "build_core"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class EmptyScores:
    """Scores of a batch with no valid window."""

    scores: npt.NDArray[np.float32]
    step_errors: npt.NDArray[np.float32]
    channel_errors: npt.NDArray[np.float32]

    @classmethod
    def of(cls, window_size: int, n_channels: int) -> EmptyScores:
        return cls(
            np.zeros(0, np.float32),
            np.zeros((0, window_size), np.float32),
            np.zeros((0, n_channels), np.float32),
        )


def build_core(settings: DetectorSettings, manifest: Manifest) -> DetectorCore:
    """The pure core for a bundle, with thresholds warm-started from its reference errors."""
    bank = ThresholdBank(
        settings.threshold,
        np.asarray(manifest.reference_errors.sample, dtype=np.float64),
        manifest.threshold.value,
    )
    return DetectorCore(
        manifest,
        bank,
        settings.lifecycle,
        max_message_bytes=settings.max_message_bytes,
        state_interval_ms=int(settings.state_interval_s * 1000),
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DetectorService:
    """One detector instance: owns the Kafka clients, the core and the metrics."""

    def __init__(self, settings: DetectorSettings, scorer: Scorer, core: DetectorCore) -> None:
        self.settings = settings
        self.scorer = scorer
        self.core = core
        self.metrics = DetectorMetrics()
        self.io = KafkaIO(settings, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.health: HealthServer | None = None
        self._stop = threading.Event()
        # Committed since start: the stop log line reports these.
        self.totals = {"scored": 0, "dead_letters": 0, "alerts": 0, "events": 0}
        m = core.manifest
        self._empty = EmptyScores.of(m.window_size, m.n_channels)
        self.metrics.target_far.set(settings.threshold.target_far)

    @classmethod
    def from_bundle(cls, settings: DetectorSettings) -> DetectorService:
        """Load the bundle (TensorFlow), warm it up and build the service."""
        from detector.model import load_bundle

        loaded = load_bundle(settings.bundle)
        loaded.warmup()
        return cls(settings, loaded, build_core(settings, loaded.manifest))

    # -- partitions -----------------------------------------------------------------------

    def _on_assign(self, partitions: list[int]) -> None:
        started = time.monotonic()
        state = self.io.read_state(partitions)
        restored = sum(self.core.restore(key, data, part) for key, (part, data) in state.items())
        log.info(
            "state_restored",
            partitions=partitions,
            records=restored,
            seconds=round(time.monotonic() - started, 3),
        )
        if self.health is not None:
            self.health.is_ready = True
        self.metrics.ready.set(1)

    def _on_revoke(self, partitions: list[int]) -> None:
        gone = self.core.drop_partitions(set(partitions))
        log.info("state_dropped", partitions=partitions, sources=len(gone))

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
            self.health = HealthServer(self.metrics, s.metrics_host, s.metrics_port)
            self.health.start()
        log.info(
            "detector_started",
            model=self.core.manifest.model_id,
            topic=s.topics.windows,
            group=s.group_id,
            instance=s.instance_id,
            delivery=s.delivery,
            threshold_method=s.threshold.method,
            target_far=s.threshold.target_far,
            metrics_port=self.health.port if self.health else None,
        )

    def run(self) -> int:
        """Process batches until stopped or idle; returns the process exit code."""
        s = self.settings
        last_input = time.monotonic()
        last_sweep = last_lag = last_log = time.monotonic()
        summary = {"batches": 0, "windows": 0, "alerts": 0, "dead_letters": 0, "flagged": 0}
        minute = {"flagged": 0, "scored": 0, "start": time.monotonic()}
        # TensorFlow and Keras leave ~400k long-lived objects that every full collection
        # would walk again; the loop allocates enough per batch to trigger collections often.
        # Freezing moves what exists now out of the collector's sight (measured: 5.6 -> 0.2
        # µs of GC per window).
        gc.collect()
        gc.freeze()
        try:
            while not self._stop.is_set():
                if self.health is not None:
                    self.health.beat()
                records = self.io.consume(s.max_batch, s.max_wait_s)
                mono = time.monotonic()
                if mono - last_sweep >= 1.0:
                    last_sweep = mono
                    swept = self.core.sweep_idle(_now_ms())
                    if swept.alerts and self._publish_with_retry(swept, []):
                        self._count_outputs(swept)
                if mono - last_lag >= 10.0:
                    last_lag = mono
                    self._update_lag()
                if not records:
                    if s.stop_when_idle_s is not None and mono - last_input >= s.stop_when_idle_s:
                        log.info("idle_stop", idle_s=round(mono - last_input, 1))
                        break
                    continue
                last_input = mono
                started = time.perf_counter()
                prepared = self.core.prepare(records)
                t0 = time.perf_counter()
                result: ScoreArrays = (
                    self.scorer.score(prepared.batch) if prepared.windows else self._empty
                )
                score_s = time.perf_counter() - t0
                now_ms = _now_ms()
                decisions = self.core.decide(prepared, result, now_ms)
                ok = self._publish_with_retry(decisions, prepared.dead_letters)
                if not ok:
                    continue
                elapsed = time.perf_counter() - started
                self._record(prepared, decisions, score_s, elapsed)
                minute["flagged"] += decisions.flagged
                minute["scored"] += len(prepared.windows)
                if mono - minute["start"] >= 60 and minute["scored"]:
                    self.metrics.flag_rate.set(minute["flagged"] / minute["scored"])
                    minute.update(flagged=0, scored=0, start=mono)
                summary["batches"] += 1
                summary["windows"] += len(records)
                summary["alerts"] += len(decisions.alerts)
                summary["dead_letters"] += len(prepared.dead_letters)
                summary["flagged"] += decisions.flagged
                noteworthy = decisions.alerts or prepared.dead_letters or decisions.events
                if noteworthy or mono - last_log >= s.log_interval_s:
                    log.info(
                        "batch",
                        **summary,
                        last_batch=len(records),
                        score_ms=round(score_s * 1000, 2),
                        batch_ms=round(elapsed * 1000, 2),
                        open_episodes=self.core.tracker.open_count(),
                    )
                    summary = dict.fromkeys(summary, 0)
                    last_log = mono
        finally:
            self.close()
        return 0

    def _publish_with_retry(
        self,
        decisions: Decisions,
        dead_letters: list[DeadLetter],
    ) -> bool:
        """Publish and commit; on a retriable failure rewind, reload state, and return False."""
        now_ms = _now_ms()
        alert_msgs = [
            (a.source_id.encode(), a.model_dump_json().encode()) for a in decisions.alerts
        ]
        event_msgs = [(e.source_id.encode(), encode_event(e)) for e in decisions.events]
        states = self.core.state_records(decisions)
        attempt = 0
        while True:
            try:
                self.io.publish(alert_msgs, event_msgs, dead_letters, states, now_ms)
                return True
            except PublishError as exc:
                if not exc.retriable:
                    raise
                attempt += 1
                self.metrics.publish_retries.inc()
                delay = min(30.0, 0.5 * 2 ** min(attempt, 6))
                log.warning("publish_failed", error=str(exc), retry_in_s=delay, attempt=attempt)
                if self._stop.wait(delay):
                    raise
                # Outputs were aborted: replay the batch from the committed offsets with
                # the state as it was committed.
                self.io.rewind_to_committed()
                parts = self.io.assigned_partitions()
                self.core.drop_partitions(set(parts))
                self._on_assign(parts)
                return False

    def _record(
        self, prepared: Prepared, decisions: Decisions, score_s: float, elapsed: float
    ) -> None:
        m = self.metrics
        n_ok = len(prepared.windows)
        self.totals["scored"] += n_ok
        self.totals["dead_letters"] += len(prepared.dead_letters)
        self._count_outputs(decisions)
        m.windows.labels(outcome="scored").inc(n_ok)
        if prepared.dead_letters:
            m.windows.labels(outcome="dead_letter").inc(len(prepared.dead_letters))
            for dl in prepared.dead_letters:
                m.dead_letters.labels(reason=dl.reason).inc()
        m.flagged.inc(decisions.flagged)
        m.batch_size.observe(len(prepared.records) + len(prepared.dead_letters))
        m.score_seconds.observe(score_s)
        m.batch_seconds.observe(elapsed)
        if prepared.windows:
            oldest = min(w.event_time_ms for w in prepared.windows)
            m.event_lag.observe(max(0.0, (_now_ms() - oldest) / 1000))

    def _count_outputs(self, decisions: Decisions) -> None:
        for alert in decisions.alerts:
            self.metrics.alerts.labels(state=alert.state.value).inc()
        for event in decisions.events:
            self.metrics.events.labels(type=event.type).inc()
        self.totals["alerts"] += len(decisions.alerts)
        self.totals["events"] += len(decisions.events)

    def _update_lag(self) -> None:
        try:
            consumer = self.io.consumer
            assignment = consumer.assignment()
            for tp in consumer.position(assignment):
                _low, high = consumer.get_watermark_offsets(tp, timeout=1, cached=False)
                if tp.offset >= 0:
                    self.metrics.consumer_lag.labels(partition=str(tp.partition)).set(
                        max(0, high - tp.offset)
                    )
            bank = self.core.bank
            sources = bank.sources()
            self.metrics.sources.set(len(sources))
            self.metrics.threshold.labels(source="_global").set(bank.global_info.value)
            for source in sources[:50]:
                st = bank.stats(source)
                age = st.calibration_age_ms
                self.metrics.set_source(
                    source,
                    st.threshold,
                    st.flag_rate,
                    age / 1000 if age is not None else None,
                    st.drift_statistic,
                )
        except Exception as exc:
            log.debug("lag_update_failed", error=str(exc))

    def close(self) -> None:
        """Leave the group, flush, stop serving."""
        self.metrics.ready.set(0)
        if self.health is not None:
            self.health.is_ready = False
        self.io.close()
        if self.health is not None:
            self.health.stop()
        log.info("detector_stopped", **self.totals)
