"""``detector alerts --to-alertmanager URL``: alert episodes from Kafka into Alertmanager.

The loop::

    consume alerts (read_committed, own consumer group, committed offsets)
      -> EpisodeBook.apply: one Alertmanager alert per episode (labels fixed for its life)
      -> POST /api/v2/alerts, retried with back-off until an instance takes it
      -> commit, per partition, the first alert of the oldest episode still open there
    every repost_interval_s: re-post the open episodes (their endsAt moves on) and
      forget those silent for stale_after_s

Exactly-once friendly rather than exactly-once: a post and a commit are not one transaction,
so a crash between them re-posts on restart. That is harmless: Alertmanager identifies an
alert by its labels and merges what it already has. Nothing is committed before it was
posted, so nothing is lost either; and because the commit stays at the first alert of every
open episode, a restarted bridge knows its open episodes again and keeps them firing.

Alertmanager unreachable: the post is retried with exponential back-off (``alertmanager_
unreachable`` at warning level each attempt, with the error and the next wait;
``alertmanager_reachable`` once it answers again); consuming pauses meanwhile, so the backlog
stays in Kafka. A payload Alertmanager refuses (HTTP 400/422) is logged
(``alertmanager_rejected``) and skipped: the same payload would be refused again.

Optional ``/metrics`` and ``/healthz`` on ``metrics_port`` (``alertmanager_bridge_*`` series).

Why one module of ~480 lines: the bridge's loop (consume, post, commit) and its Kafka
callbacks share the offsets-in-flight bookkeeping that makes a post at-least-once and a
commit never ahead of it. The mapping and settings are in :mod:`detector.alertmanager.mapping`, the
HTTP client in :mod:`detector.alertmanager.client`, the metrics in
:mod:`detector.alertmanager.metrics`.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detector.alertmanager.client import AlertmanagerClient, alerts_endpoint
from detector.alertmanager.mapping import AlertMapping, EpisodeBook
from detector.alertmanager.metrics import BridgeEndpoint, BridgeMetrics
from detector.alerts import Alert
from detector.errors import AlertmanagerRejectedError, AlertmanagerUnavailableError, ConfigError
from detector.kafka.config import KafkaSettings, new_client
from detector.log import LIBRDKAFKA_LOG

__all__ = ["AlertmanagerBridge", "BridgeSettings"]

log = structlog.get_logger()


class BridgeSettings(BaseModel):
    """Settings of the bridge (Kafka's come from the detector's: ``DETECTOR_KAFKA__*``).

    Attributes:
        urls: Alertmanager base URLs (every one gets every alert).
        topic: the alerts topic.
        group_id: the bridge's consumer group (its committed offsets are where it resumes).
        repost_interval_s: open episodes are posted again this often.
        mapping: labels, annotations and times of the posted alerts.
        retry_initial_s, retry_max_s: back-off between attempts while no Alertmanager answers.
        request_timeout_s: per HTTP request.
        max_batch: most alerts read per consume call.
        metrics_port: serve /metrics and /healthz here (None: not at all; 0: any free port).
        metrics_host: address to bind for that.
    """

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(min_length=1)
    topic: str = "alerts"
    group_id: str = "alertmanager-bridge"
    repost_interval_s: float = Field(60.0, gt=0)
    mapping: AlertMapping = Field(default_factory=AlertMapping)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    max_batch: int = Field(500, ge=1)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            try:
                alerts_endpoint(url)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _expiry_outlives_reposts(self) -> BridgeSettings:
        if self.mapping.expire_after_s <= self.repost_interval_s:
            raise ValueError(
                "expire_after_s must exceed repost_interval_s, or firing alerts expire "
                "between two posts"
            )
        return self


class _QuietLibrdkafkaLog:
    """librdkafka's lines as structlog events, each facility at most every 30 s: with the
    broker down it repeats a connection failure several times a second (the error callback's
    ``kafka_unreachable`` says it once, and says what to do)."""

    def __init__(self, every_s: float = 30.0) -> None:
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, msg: str, *args: object) -> None:
        facility = str(args[0]) if msg == "%s [%s] %s" and args else msg
        now = time.monotonic()
        if now - self._last.get(facility, -1e9) < self._every_s:
            self._suppressed[facility] = self._suppressed.get(facility, 0) + 1
            return
        self._last[facility] = now
        if self._suppressed.get(facility):
            structlog.get_logger("librdkafka").info(
                "librdkafka_lines_suppressed",
                facility=facility,
                lines=self._suppressed.pop(facility),
            )
        LIBRDKAFKA_LOG.log(level, msg, *args)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertmanagerBridge:
    """Consumes the alerts topic and keeps Alertmanager in step with the episodes in it.

    Args:
        settings: the bridge's settings.
        kafka: Kafka connection settings.
        client: posts to Alertmanager (default: one for ``settings.urls``).
        stop: set to stop the loop (default: an event of its own, see :meth:`request_stop`).
    """

    def __init__(
        self,
        settings: BridgeSettings,
        kafka: KafkaSettings,
        client: AlertmanagerClient | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self._kafka = kafka
        self.client = client or AlertmanagerClient(settings.urls, settings.request_timeout_s)
        self.stop = stop if stop is not None else threading.Event()
        self.book = EpisodeBook(settings.mapping)
        self.metrics = BridgeMetrics()
        self._consumer: Consumer | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._committed: dict[int, tuple[int, int]] = {}  # partition -> (offset, posted until)
        self._replay_until: dict[int, int] = {}  # partition -> posted until before a restart
        self._pending: dict[str, tuple[int, dict[str, Any]]] = {}  # episode -> (partition, alert)
        self._beat = time.monotonic()
        self._warned: dict[str, float] = {}
        self._endpoint: BridgeEndpoint | None = None
        self.totals = {"read": 0, "posted": 0, "undecodable": 0, "rejected": 0}

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop after the current step (a pending post is not retried any more)."""
        self.stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: self.request_stop())

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics is served on (after :meth:`run` started), if any."""
        return self._endpoint.port if self._endpoint else None

    def run(self) -> int:
        """Run until :meth:`request_stop`; returns the exit code (0)."""
        s = self.settings
        if s.metrics_port is not None:
            self._endpoint = BridgeEndpoint(
                self.metrics, s.metrics_host, s.metrics_port, self._alive
            )
        consumer = self._consumer = new_client(
            Consumer,
            {
                "logger": _QuietLibrdkafkaLog(),
                "error_cb": self._on_kafka_error,
                "session.timeout.ms": 10000,
                "reconnect.backoff.ms": 500,
                **self._kafka.client_config(),
                "group.id": s.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            },
        )
        consumer.subscribe(
            [s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        log.info(
            "bridge_started",
            alertmanager=self.client.endpoints,
            topic=s.topic,
            group_id=s.group_id,
            bootstrap_servers=self._kafka.bootstrap_servers,
            metrics_port=self.metrics_port,
        )
        next_repost = time.monotonic() + s.repost_interval_s
        try:
            while not self.stop.is_set():
                self._beat = time.monotonic()
                messages = consumer.consume(num_messages=s.max_batch, timeout=0.5)
                self._take(messages)
                for partition, payload in self.book.due(_now_ms()):
                    self._pending[payload["labels"]["episode_id"]] = (partition, payload)
                caught_up = len(messages) < s.max_batch
                if self._pending and (caught_up or len(self._pending) >= 1000):
                    if not self._flush():
                        break
                    self._commit()
                if time.monotonic() >= next_repost:
                    if not self._repost():
                        break
                    self._commit()
                    next_repost = time.monotonic() + s.repost_interval_s
        finally:
            self._close()
        return 0

    def _alive(self) -> bool:
        return time.monotonic() - self._beat < max(120.0, 4 * self.settings.retry_max_s)

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()
        if self._endpoint is not None:
            self._endpoint.stop()
        log.info("bridge_stopped", open_episodes=len(self.book.episodes), **self.totals)

    # -- Kafka ----------------------------------------------------------------------------

    def _take(self, messages: list[Message]) -> None:
        now_ms = _now_ms()
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._kafka_message_error(err)
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            self._next[partition] = offset + 1
            value = msg.value()
            if value is None:
                continue  # a tombstone is no alert
            try:
                alert = Alert.model_validate_json(value)
            except ValidationError as exc:
                self.totals["undecodable"] += 1
                self.metrics.undecodable.inc()
                log.warning(
                    "alert_undecodable",
                    topic=msg.topic(),
                    partition=partition,
                    offset=offset,
                    error=str(exc.errors()[0]["msg"]) if exc.errors() else str(exc)[:200],
                )
                continue
            self.totals["read"] += 1
            self.metrics.read.labels(state=alert.state.value).inc()
            replayed = offset < self._replay_until.get(partition, -1)
            payload = self.book.apply(alert, partition, offset, now_ms, replayed)
            if payload is not None:
                self._pending[alert.episode_id] = (partition, payload)
        self._episode_gauges()

    def _episode_gauges(self) -> None:
        self.metrics.show_episodes(self.book.episodes.values())

    def _commit(self) -> None:
        """Commit, per partition, where a restart must re-read from, and (as metadata) how
        far everything was posted; only partitions where either changed."""
        if self._consumer is None or self._pending:
            return
        wanted = {p: (self.book.resume_offset(p, nxt), nxt) for p, nxt in self._next.items()}
        changed = [
            TopicPartition(self.settings.topic, p, off, metadata=f"{_METADATA_KEY}={nxt}")
            for p, (off, nxt) in wanted.items()
            if self._committed.get(p) != (off, nxt)
        ]
        if not changed:
            return
        try:
            self._consumer.commit(offsets=changed, asynchronous=False)
        except KafkaException as exc:
            # A rebalance in between (the group moved on while Alertmanager was down): the
            # new owner re-reads from the last commit and re-posts, which is harmless.
            self._warn("commit_failed", error=str(exc.args[0] if exc.args else exc))
            return
        self._committed.update({tp.partition: wanted[tp.partition] for tp in changed})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        replay: dict[int, int] = {}
        try:
            for tp in consumer.committed(partitions, timeout=10):
                nxt = _posted_until(tp.metadata)
                if tp.offset >= 0 and nxt is not None and nxt > tp.offset:
                    replay[tp.partition] = nxt
        except KafkaException as exc:
            # Without it, resolved alerts of episodes opened before the committed offset are
            # posted again under labels of their own: extra resolved alerts, nothing lost.
            log.warning(
                "committed_offsets_unavailable", error=str(exc.args[0] if exc.args else exc)
            )
        self._replay_until.update(replay)
        log.info(
            "partitions_assigned",
            partitions=sorted(tp.partition for tp in partitions),
            replaying={p: n for p, n in sorted(replay.items())},
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        # Not yet posted: the partition's next owner reads them again from the last commit.
        self._pending = {k: v for k, v in self._pending.items() if v[0] not in gone}
        forgotten = self.book.forget_partitions(gone)
        self._episode_gauges()
        for p in gone:
            self._next.pop(p, None)
            self._committed.pop(p, None)
            self._replay_until.pop(p, None)
        log.info("partitions_revoked", partitions=sorted(gone), open_episodes_handed_over=forgotten)

    def _kafka_message_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self._warn(
                "alerts_topic_missing",
                topic=self.settings.topic,
                hint="it appears when the detector creates it; waiting",
            )
            return
        self._warn("kafka_error", code=err.name(), error=err.str())

    def _on_kafka_error(self, err: KafkaError) -> None:
        """librdkafka's error callback: connection trouble, retried by librdkafka itself."""
        self._warn(
            "kafka_unreachable" if err.code() in _CONNECTION_CODES else "kafka_error",
            code=err.name(),
            error=err.str(),
            bootstrap_servers=self._kafka.bootstrap_servers,
        )

    def _warn(self, event: str, **kw: Any) -> None:
        """A warning at most every 30 s per event name (librdkafka retries every second)."""
        now = time.monotonic()
        if now - self._warned.get(event, -1e9) >= 30:
            self._warned[event] = now
            log.warning(event, **kw)

    # -- Alertmanager ---------------------------------------------------------------------

    def _flush(self) -> bool:
        payloads = [p for _part, p in self._pending.values()]
        if not self._post(payloads, "alerts"):
            return False
        self._pending.clear()
        return True

    def _repost(self) -> bool:
        for ep in self.book.drop_stale(_now_ms()):
            log.info(
                "episode_stale",
                episode_id=ep.latest.episode_id,
                source=ep.latest.source_id,
                last_alert_ms=ep.latest.detected_at_ms,
                hint="no alert for stale_after_s: no longer re-posted, Alertmanager lets it expire",
            )
        self._episode_gauges()
        firing = self.book.firing(_now_ms())
        return self._post(firing, "repost") if firing else True

    def _post(self, payloads: list[dict[str, Any]], what: str) -> bool:
        """Post until an Alertmanager takes them (True) or a stop is requested (False)."""
        s = self.settings
        attempt = 0
        first_failure = 0.0
        while True:
            self._beat = time.monotonic()
            try:
                partial = self.client.post(payloads)
            except AlertmanagerRejectedError as exc:
                self.metrics.posts.labels(outcome="rejected").inc()
                self.totals["rejected"] += len(payloads)
                log.error(
                    "alertmanager_rejected", error=str(exc)[:1000], alerts=len(payloads), what=what
                )
                return True  # the same payload would be refused again: skip it
            except AlertmanagerUnavailableError as exc:
                self.metrics.posts.labels(outcome="unavailable").inc()
                if attempt == 0:
                    first_failure = time.monotonic()
                delay = min(s.retry_max_s, s.retry_initial_s * 2 ** min(attempt, 30))
                delay *= random.uniform(0.8, 1.0)  # several bridges do not retry in step
                attempt += 1
                log.warning(
                    "alertmanager_unreachable",
                    error=str(exc)[:1000],
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    waiting_alerts=len(payloads),
                )
                if self.stop.wait(delay):
                    log.warning("bridge_stopping_with_unposted_alerts", alerts=len(payloads))
                    return False
                continue
            self.metrics.posts.labels(outcome="ok").inc()
            self.metrics.last_success.set(time.time())
            self.totals["posted"] += len(payloads)
            if attempt:
                log.info(
                    "alertmanager_reachable",
                    attempts=attempt + 1,
                    unreachable_s=round(time.monotonic() - first_failure, 1),
                )
            for failure in partial:
                self._warn("alertmanager_instance_failed", error=failure[:1000])
            log.info("alertmanager_posted", alerts=len(payloads), what=what, **_states(payloads))
            return True


_METADATA_KEY = "posted-until"


def _posted_until(metadata: str | None) -> int | None:
    """The offset up to which a previous run had posted, from its commit's metadata.

    >>> _posted_until("posted-until=42"), _posted_until(""), _posted_until("x")
    (42, None, None)
    """
    key, sep, value = (metadata or "").partition("=")
    if sep and key == _METADATA_KEY and value.isdigit():
        return int(value)
    return None


def _states(payloads: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the posted alerts are in each episode state (for the log line)."""
    out: dict[str, int] = {}
    for p in payloads:
        state = p.get("annotations", {}).get("state", "unknown")
        out[state] = out.get(state, 0) + 1
    return out


_CONNECTION_CODES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)
