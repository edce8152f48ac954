"""The broker watch: a daemon thread that notices a broker outage while it happens.

The consume loop cannot be the one to notice. During an outage it may be blocked in a
publish (a transaction commit waits up to 60 s for the broker), in a retry back-off or in a
rebalance callback, and librdkafka's own log lines are only served by calls on the client
that wrote them: in the outage this replaces, they came out after recovery, stamped with the
recovery time, and nothing was logged while the broker was down.

So the watch has a thread and an admin client of its own:

- every ``probe_interval_s`` it asks for the windows topic's metadata (one small request;
  topic auto-creation is off for this client, so a probe never creates a topic), failing
  after ``probe_timeout_s``;
- between probes it serves that client's error callbacks: librdkafka's
  ``_ALL_BROKERS_DOWN`` (the last connection dropped) brings the next probe forward to now,
  so an outage is confirmed within ``probe_timeout_s`` rather than taken on one callback's
  word, and every error is counted in ``detector_broker_errors_total{code}`` (the client's
  own log lines are off: one warning per outage says it, not one line per reconnect);
- it logs ``broker_unreachable`` (warning, with the error) when an outage begins and
  ``broker_reachable`` (warning, with ``outage_s``) when a probe succeeds again;
- it watches the loop's verdicts (:class:`~detector.health.HealthTracker`) and logs
  ``loop_stuck`` / ``detector_stalled`` (warnings) when they turn, ``loop_resumed`` /
  ``detector_unstalled`` when they come back.

Examples:
    >>> from detector.health import HealthSettings, HealthTracker
    >>> def probe(timeout_s: float) -> None:
    ...     raise OSError("connection refused")
    >>> health = HealthTracker(HealthSettings(), now=0.0)
    >>> watch = BrokerWatch(health, probe, clock=lambda: 1.0)
    >>> with structlog.testing.capture_logs() as logs:
    ...     watch.step()
    >>> logs[0]["event"], logs[0]["error"], health.broker_up
    ('broker_unreachable', 'OSError: connection refused', False)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from detector.health import HealthTracker
from detector.kafka.config import KafkaSettings, new_client
from detector.metrics import DetectorMetrics

__all__ = ["BrokerWatch", "Probe", "kafka_probe"]

log = structlog.get_logger()

Probe = Callable[[float], None]
"""``probe(timeout_s)``: returns if the broker answered, raises (any exception) if not."""


class BrokerWatch:
    """Probes the broker and watches the loop's verdicts on a daemon thread.

    Args:
        health: where probe results go and verdicts come from.
        probe: one broker probe (see :data:`Probe`).
        poll: serves the probe client's callbacks for up to the given seconds (its error
            callback must call :meth:`on_error`); None for a probe without callbacks.
        metrics: ``broker_errors`` is counted here when given.
        clock: monotonic seconds.
        tick_s: how often verdicts are looked at between probes.
    """

    def __init__(
        self,
        health: HealthTracker,
        probe: Probe,
        poll: Callable[[float], Any] | None = None,
        metrics: DetectorMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 0.5,
    ) -> None:
        self.health = health
        self._probe = probe
        self._poll = poll
        self._metrics = metrics
        self._clock = clock
        self._tick_s = tick_s
        self._next_probe = clock()  # the first step probes
        self._client_error = ""  # the last error librdkafka reported, shown with the outage
        self._live = True
        self._stalled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)

    def on_error(self, code: str, text: str, all_brokers_down: bool = False) -> None:
        """An error from the probe client (librdkafka ``error_cb``): counted, and shown with
        the outage it may begin; every broker down brings the next probe forward to now."""
        self._count(code)
        self._client_error = f"{code}: {text}"
        if all_brokers_down:
            self._next_probe = self._clock()

    def step(self) -> None:
        """Serve callbacks, probe if due, log the verdicts that turned (one tick)."""
        if self._poll is not None:
            self._poll(0)
        now = self._clock()
        if now >= self._next_probe:
            self._probe_once()
            now = self._clock()
            self._next_probe = now + self.health.settings.probe_interval_s
        self._watch_loop(now)

    def start(self) -> None:
        """Begin watching on the daemon thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop watching (waits for a probe in progress, up to ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- internals --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the watch must outlive its own bugs
                log.error("broker_watch_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            self._stop.wait(self._tick_s)

    def _probe_once(self) -> None:
        timeout_s = self.health.settings.probe_timeout_s
        try:
            self._probe(timeout_s)
        except Exception as exc:
            self._count(_code_of(exc))
            self._failed(_describe(exc))
            return
        outage_s = self.health.broker_answered(self._clock())
        if outage_s is not None:
            log.warning("broker_reachable", outage_s=round(outage_s, 1))

    def _failed(self, error: str) -> None:
        if self.health.broker_failed(error, self._clock()):
            fields = {"error": error}
            if self._client_error:
                fields["client_error"] = self._client_error  # e.g. why a connection failed
            log.warning("broker_unreachable", **fields)

    def _watch_loop(self, now: float) -> None:
        live = self.health.live(now)
        if live.ok != self._live:
            self._live = live.ok
            if live.ok:
                log.info("loop_resumed")
            else:
                log.warning("loop_stuck", reason=live.reason)
        stall = self.health.stalled(now)
        if (not stall.ok) != self._stalled:
            self._stalled = not stall.ok
            if stall.ok:
                log.info("detector_unstalled")
            else:
                log.warning("detector_stalled", reason=stall.reason)

    def _count(self, code: str) -> None:
        if self._metrics is not None:
            self._metrics.broker_errors.labels(code=code).inc()


def _code_of(exc: Exception) -> str:
    """The librdkafka error name inside ``exc`` (e.g. ``_TRANSPORT``), else its type's name."""
    err = exc.args[0] if exc.args else None
    name = getattr(err, "name", None)
    if callable(name):
        return str(name())
    return type(exc).__name__


def _describe(exc: Exception) -> str:
    err = exc.args[0] if exc.args else None
    text = getattr(err, "str", None)
    if callable(text):
        return f"{_code_of(exc)}: {text()}"
    return f"{type(exc).__name__}: {exc}"


def kafka_probe(
    kafka: KafkaSettings, topic: str, on_error: Callable[[str, str, bool], None]
) -> tuple[Probe, Callable[[float], Any]]:
    """A probe of the broker through an admin client of its own.

    Args:
        kafka: the detector's connection settings (same brokers, same security).
        topic: the topic whose metadata is asked for (the windows topic).
        on_error: receives the client's errors as (code name, text, all brokers down).

    Returns:
        ``(probe, poll)`` for :class:`BrokerWatch`.
    """
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    def error_cb(err: KafkaError) -> None:
        on_error(err.name(), err.str(), err.code() == KafkaError._ALL_BROKERS_DOWN)

    admin = new_client(
        AdminClient,
        {
            **kafka.client_config(),
            "error_cb": error_cb,
            "log_level": 0,  # one broker_unreachable line per outage, not one per reconnect
            "allow.auto.create.topics": "false",  # a probe must never create the topic
        },
    )

    def probe(timeout_s: float) -> None:
        meta = admin.list_topics(topic=topic, timeout=timeout_s)
        if not meta.brokers:
            raise ConnectionError("metadata without brokers")

    return probe, admin.poll
