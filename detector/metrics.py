"""Prometheus metrics and the /metrics, /healthz, /readyz endpoint of the detector.

``/healthz`` and ``/readyz`` answer 200 or 503 with the reason in the body; what they mean
is :mod:`detector.health`'s verdicts (live: the loop iterates; ready: consuming, broker
reachable, not stalled).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from detector.health import HealthSettings, HealthTracker

__all__ = ["DEAD_LETTER_REASONS", "DetectorMetrics", "HealthServer"]

# Every reason a record is dead-lettered for (detector.errors.DecodeError, plus the core's
# internal_error), and the label values of the other counters: each series is exported at 0
# from the start. A counter series that first appears at its first increment hides that
# increment from rate() and increase() (no earlier sample to compare with), so a single
# burst of dead letters would never fire DetectorDeadLettersRising, nor show on a dashboard.
DEAD_LETTER_REASONS = (
    "undecodable",
    "missing_field",
    "bad_shape",
    "non_finite",
    "non_numeric",
    "bad_event_time",
    "bad_source_id",
    "unknown_content_type",
    "oversize",
    "internal_error",
)
_OUTCOMES = ("scored", "dead_letter")
_ALERT_STATES = ("opened", "ongoing", "resolved")
_EVENT_TYPES = ("threshold_recalibrated", "drift_detected", "retrain_recommended", "shift_accepted")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class DetectorMetrics:
    """All detector metrics, in a registry of their own (tests build as many as they like).

    Args:
        max_threshold_sources: at most this many per-source threshold series (bounded
            label cardinality); further sources are counted in the global series only.
    """

    def __init__(self, max_threshold_sources: int = 50) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.windows = Counter(
            "detector_windows", "Input records by outcome.", ["outcome"], registry=r
        )
        self.dead_letters = Counter(
            "detector_dead_letters",
            "Records sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter("detector_alerts", "Alerts published.", ["state"], registry=r)
        self.events = Counter("detector_events", "Events published.", ["type"], registry=r)
        self.flagged = Counter("detector_flagged_windows", "Windows above threshold.", registry=r)
        self.batch_size = Histogram(
            "detector_batch_size",
            "Records per batch.",
            buckets=(1, 8, 32, 128, 512, 1024, 2048, 4096, 8192),
            registry=r,
        )
        self.score_seconds = Histogram(
            "detector_score_seconds",
            "Model call per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_seconds = Histogram(
            "detector_publish_seconds",
            "Publishing a batch: produce its outputs, send its offsets, commit the transaction.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "detector_batch_seconds",
            "Whole batch: decode, score, decide, publish, commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_lag = Histogram(
            "detector_event_lag_seconds",
            "Event time to commit of the oldest window in each batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "detector_consumer_lag",
            "Records behind the high watermark.",
            ["partition"],
            registry=r,
        )
        self.threshold = Gauge("detector_threshold", "Threshold in force.", ["source"], registry=r)
        self.target_far = Gauge("detector_target_far", "Target false-alarm rate.", registry=r)
        self.flag_rate = Gauge(
            "detector_flag_rate", "Flagged share of windows over the last minute.", registry=r
        )
        self.source_flag_rate = Gauge(
            "detector_source_flag_rate",
            "Realised share of normal-time windows flagged, per source (compare with target).",
            ["source"],
            registry=r,
        )
        self.calibration_age = Gauge(
            "detector_calibration_age_seconds",
            "Event time since the source's threshold was last set.",
            ["source"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "detector_drift_statistic",
            "Last drift test statistic (KS D or PSI) per source.",
            ["source"],
            registry=r,
        )
        self.sources = Gauge("detector_sources", "Sources with threshold state.", registry=r)
        self.publish_retries = Counter(
            "detector_publish_retries", "Batches aborted and retried.", registry=r
        )
        self.ready = Gauge(
            "detector_ready",
            "1 when /readyz answers 200: consuming, broker reachable, not stalled.",
            registry=r,
        )
        self.broker_up = Gauge(
            "detector_broker_up",
            "1 while the broker answers the health probe, 0 from a failed probe (or "
            "librdkafka reporting all brokers down) until the next successful one.",
            registry=r,
        )
        self.broker_errors = Counter(
            "detector_broker_errors",
            "Connection-level errors: librdkafka error callbacks of the health probe's client "
            "and failed probes, by error code (_TRANSPORT, _ALL_BROKERS_DOWN, _TIMED_OUT...).",
            ["code"],
            registry=r,
        )
        self.seconds_since_commit = Gauge(
            "detector_seconds_since_commit",
            "Seconds since input offsets were last committed (before the first commit: since "
            "partitions were assigned). Grows on a quiet stream too; alert on it with lag.",
            registry=r,
        )
        self.seconds_since_loop = Gauge(
            "detector_seconds_since_loop_iteration",
            "Seconds since the consume loop last iterated (/healthz fails past loop_stale_s).",
            registry=r,
        )
        for counter, label, values in (
            (self.windows, "outcome", _OUTCOMES),
            (self.dead_letters, "reason", DEAD_LETTER_REASONS),
            (self.alerts, "state", _ALERT_STATES),
            (self.events, "type", _EVENT_TYPES),
        ):
            for value in values:
                counter.labels(**{label: value})  # exported at 0 (see DEAD_LETTER_REASONS)
        self._max_sources = max_threshold_sources
        self._sources: set[str] = set()

    def bind_health(self, health: HealthTracker, clock: Callable[[], float]) -> None:
        """Read the health gauges from ``health`` at scrape time (``clock``: monotonic)."""
        self.ready.set_function(lambda: float(health.ready(clock()).ok))
        self.broker_up.set_function(lambda: float(health.broker_up))
        self.seconds_since_commit.set_function(lambda: health.seconds_since_commit(clock()))
        self.seconds_since_loop.set_function(lambda: health.seconds_since_loop(clock()))

    def set_source(
        self,
        source: str,
        threshold: float,
        flag_rate: float,
        calibration_age_s: float | None,
        drift_statistic: float | None,
    ) -> None:
        """Per-source gauges, for at most ``max_threshold_sources`` sources (bounded labels)."""
        if source not in self._sources and len(self._sources) >= self._max_sources:
            return
        self._sources.add(source)
        self.threshold.labels(source=source).set(threshold)
        self.source_flag_rate.labels(source=source).set(flag_rate)
        if calibration_age_s is not None:
            self.calibration_age.labels(source=source).set(calibration_age_s)
        if drift_statistic is not None:
            self.drift_statistic.labels(source=source).set(drift_statistic)


class HealthServer:
    """Serves /metrics, /healthz (loop alive) and /readyz (consuming, healthy) on a daemon
    thread.

    Args:
        metrics: what /metrics serves.
        host: address to bind.
        port: port to bind (0: any free one, see :attr:`port`).
        health: the verdicts to serve; when None, a tracker of its own with default settings
            (callers then report through :attr:`is_ready` and :meth:`beat`), bound to
            ``metrics``.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        metrics: DetectorMetrics,
        host: str,
        port: int,
        health: HealthTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self._clock = clock
        if health is None:
            health = HealthTracker(HealthSettings(), clock())
            metrics.bind_health(health, clock)
        self.health = health
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body = generate_latest(server.metrics.registry)
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    self._verdict(server.health.live(server._clock()))
                elif self.path.startswith("/readyz"):
                    self._verdict(server.health.ready(server._clock()))
                else:
                    self._send(404, b"not found\n")

            def _verdict(self, verdict: tuple[bool, str]) -> None:
                ok, reason = verdict
                self._send(200 if ok else 503, f"{reason}\n".encode())

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds are not worth a log line

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> None:
        """Begin serving."""
        self._thread.start()

    @property
    def is_ready(self) -> bool:
        """Partitions are assigned (what /readyz needs first; see :mod:`detector.health`)."""
        return self.health.consuming

    @is_ready.setter
    def is_ready(self, value: bool) -> None:
        self.health.set_consuming(value, self._clock())

    def beat(self) -> None:
        """The loop is alive."""
        self.health.beat(self._clock())

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
