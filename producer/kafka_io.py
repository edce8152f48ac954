"""Writing windows to Kafka, with every delivery report checked.

A failed delivery is an error, never silence: as soon as a delivery report says a record was
lost, the next :meth:`WindowProducer.send` or :meth:`WindowProducer.poll` raises
:class:`~producer.errors.DeliveryError`, and :meth:`WindowProducer.flush` raises if any record
failed or was still undelivered when its timeout ran out.

Records: key = ``source_id`` (UTF-8), value and headers from :mod:`detector.messages`
(``encode_json`` adds a ``content-type: application/json`` header here; ``encode_binary``
brings its own), plus ground truth when given: ``label`` (``"1"`` anomalous, ``"0"``
normal), ``anomaly-type``, ``regime``. The window's event time travels in the message
(``event-time-ms`` header, JSON ``event_time``); the Kafka record timestamp is the produce
time (wall clock). A replayed file's event times can be years old, and a record timestamped
then is past the topic's retention: the broker would delete fresh input within minutes.

The client is created on first use (or by :meth:`WindowProducer.connect`, which also checks
that the broker answers and creates the topic if it is missing, as the detector creates its
own: ``partitions`` partitions, 4 by default like the detector's topics, replication factor
``replication_factor``, 1 by default) and is flushed and released in ``__exit__``.
Bulk defaults: ``linger.ms=5``, ``batch.size=1000000``, ``compression.type=none``,
idempotence on (no duplicates on retries); any of them can be overridden with ``-X``.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

import numpy.typing as npt
import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from detector.errors import KafkaUnavailableError
from detector.kafka.config import KafkaSettings, new_client
from detector.messages import (
    CONTENT_TYPE_JSON,
    H_ANOMALY_TYPE,
    H_CONTENT_TYPE,
    H_LABEL,
    H_REGIME,
    encode_binary,
    encode_json,
)
from producer.errors import DeliveryError, ProducerInputError
from producer.settings import Encoding
from producer.windows import LabeledWindow

__all__ = [
    "PRODUCER_DEFAULTS",
    "RecordHeaders",
    "WindowProducer",
    "encode_record",
    "encode_window",
]

RecordHeaders = list[tuple[str, str | bytes]]

PRODUCER_DEFAULTS: dict[str, str] = {
    "linger.ms": "5",
    "batch.size": "1000000",
    "compression.type": "none",
    "acks": "all",
    "enable.idempotence": "true",
    "queue.buffering.max.messages": "500000",
    "message.timeout.ms": "60000",
}
_JSON_HEADER = (H_CONTENT_TYPE, CONTENT_TYPE_JSON.encode())
_POLL_EVERY = 100  # sends between two non-blocking polls of delivery reports
_MAX_ERRORS_KEPT = 5


class _DropRepeats(logging.Filter):
    """Drop a log record identical to the previous one (reconnect attempts repeat a lot)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        repeat = text == self._last
        self._last = text
        return not repeat


_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
if not any(isinstance(f, _DropRepeats) for f in _LIBRDKAFKA_LOG.filters):
    _LIBRDKAFKA_LOG.addFilter(_DropRepeats())


def encode_record(
    source_id: str,
    seq: int,
    event_time_ms: int,
    values: npt.ArrayLike,
    encoding: Encoding,
    label: int | None = None,
    anomaly_type: str | None = None,
    regime: str | None = None,
) -> tuple[bytes, RecordHeaders]:
    """The record value and headers of one window; truth headers only for the given fields."""
    headers: RecordHeaders
    if encoding == "binary":
        value, wire_headers = encode_binary(source_id, seq, event_time_ms, values)
        headers = list(wire_headers)
    elif encoding == "json":
        value = encode_json(source_id, seq, event_time_ms, values)
        headers = [_JSON_HEADER]
    else:
        raise ProducerInputError(f"unknown encoding {encoding!r}; choose json or binary")
    if label is not None:
        headers.append((H_LABEL, b"1" if label else b"0"))
    if anomaly_type is not None:
        headers.append((H_ANOMALY_TYPE, anomaly_type.encode()))
    if regime is not None:
        headers.append((H_REGIME, regime.encode()))
    return value, headers


def encode_window(
    w: LabeledWindow, event_time_ms: int, encoding: Encoding
) -> tuple[bytes, RecordHeaders]:
    """The record value and headers of one labelled window, ground truth included."""
    return encode_record(
        w.source_id, w.seq, event_time_ms, w.values, encoding, w.label, w.anomaly_type, w.regime
    )


class WindowProducer:
    """A Kafka producer of windows (keyed by source) that checks every delivery report.

    Args:
        kafka: connection settings (``extra`` overrides :data:`PRODUCER_DEFAULTS`).
        topic: where windows go.
        encoding: default encoding, ``json`` or ``binary`` (compact float32).
        connect_timeout_s: how long :meth:`connect` waits for the broker's metadata.
        create_topic: :meth:`connect` creates the topic when it is missing.
        partitions: partitions of a topic :meth:`connect` creates.
        replication_factor: replication factor of a topic :meth:`connect` creates.

    Examples:
        Against a running broker::

            with WindowProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9092"), "w") as p:
                p.send("pump-1", 0, 1_700_000_000_000, values, label=0, regime="baseline")
                p.flush(30)
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        encoding: Encoding = "json",
        *,
        connect_timeout_s: float = 10.0,
        create_topic: bool = True,
        partitions: int = 4,
        replication_factor: int = 1,
    ) -> None:
        self._kafka = kafka
        self.topic = topic
        self.encoding: Encoding = encoding
        self.connect_timeout_s = connect_timeout_s
        self.create_topic = create_topic
        self.partitions = partitions
        self.replication_factor = replication_factor
        self._producer: Producer | None = None
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self.errors: list[str] = []
        self._fatal: str | None = None
        self._last_error: str | None = None

    @property
    def in_flight(self) -> int:
        """Records queued or sent whose delivery report has not arrived yet."""
        return 0 if self._producer is None else len(self._producer)

    def _client(self) -> Producer:
        if self._producer is None:
            conf: dict[str, Any] = {
                **PRODUCER_DEFAULTS,
                **self._kafka.client_config(),
                "error_cb": self._on_error,
            }
            # librdkafka's own log lines go through stdlib logging (set up by
            # configure_logging) instead of raw "%3|..." lines on stderr. An option it
            # rejects is a ConfigError ("invalid Kafka configuration: ..."), exit 2.
            self._producer = new_client(Producer, conf, logger=_LIBRDKAFKA_LOG)
        return self._producer

    def connect(self) -> None:
        """Create the client, check that the broker answers, and create the topic if it is
        missing (unless ``create_topic`` is off).

        Raises:
            KafkaUnavailableError: no metadata within ``connect_timeout_s``.
            ProducerInputError: the topic does not exist and may not (or could not) be created.
        """
        client = self._client()
        if self._topic_exists(client):
            return
        servers = self._kafka.bootstrap_servers
        if not self.create_topic:
            raise ProducerInputError(
                f"topic {self.topic!r} does not exist on {servers} (create it first, or drop "
                "--no-create-topic)"
            )
        self._create_topic()
        deadline = time.monotonic() + self.connect_timeout_s
        while not self._topic_exists(client):  # metadata catches up within a few ms
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"topic {self.topic!r} was created on {servers} but its metadata did not "
                    f"appear within {self.connect_timeout_s:g} s"
                )
            time.sleep(0.05)

    def _topic_exists(self, client: Producer) -> bool:
        try:
            # Full metadata: asking for one missing topic by name can auto-create it.
            topics = client.list_topics(timeout=self.connect_timeout_s).topics
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"cannot reach Kafka at {self._kafka.bootstrap_servers} within "
                f"{self.connect_timeout_s:g} s: {exc}"
            ) from exc
        meta = topics.get(self.topic)
        return meta is not None and meta.error is None and len(meta.partitions) > 0

    def _create_topic(self) -> None:
        """Create the topic as the detector creates its own (AdminClient, bounded wait)."""
        admin = new_client(AdminClient, {**self._kafka.client_config(), "logger": _LIBRDKAFKA_LOG})
        new = NewTopic(
            self.topic,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
        )
        timeout = self.connect_timeout_s
        future = admin.create_topics([new], operation_timeout=timeout)[self.topic]
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return  # another client created it meanwhile
            raise ProducerInputError(
                f"topic {self.topic!r} does not exist on {self._kafka.bootstrap_servers} and "
                f"could not be created: {exc}"
            ) from exc
        structlog.get_logger().info(
            "producer.topic_created",
            topic=self.topic,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
        )

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(err.str())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        if err.code() == KafkaError._TRANSPORT or err.str() == self._last_error:
            return  # connection failures are in librdkafka's own log already
        self._last_error = err.str()
        structlog.get_logger().warning("producer.kafka_error", error=err.str(), fatal=err.fatal())

    def check(self) -> None:
        """Raise if a delivery report said a record was lost (or the client hit a fatal error).

        Raises:
            DeliveryError: at least one record failed.
        """
        if self._fatal is not None:
            raise DeliveryError(f"the Kafka producer hit a fatal error: {self._fatal}")
        if self.failed:
            raise DeliveryError(
                f"{self.failed} of {self.sent} windows were not delivered to {self.topic}: "
                f"{'; '.join(self.errors)}"
            )

    def send(
        self,
        source_id: str,
        seq: int,
        event_time_ms: int,
        values: npt.ArrayLike,
        *,
        label: int | None = None,
        anomaly_type: str | None = None,
        regime: str | None = None,
        encoding: Encoding | None = None,
    ) -> None:
        """Queue one window, keyed by ``source_id``, with optional ground-truth headers.

        ``event_time_ms`` goes into the message; the record timestamp is the produce time.

        Raises:
            DeliveryError: an earlier delivery failed, or the client refused the record.
        """
        value, headers = encode_record(
            source_id,
            seq,
            event_time_ms,
            values,
            encoding or self.encoding,
            label,
            anomaly_type,
            regime,
        )
        self.send_raw(source_id.encode(), value, headers)

    def send_window(self, w: LabeledWindow, event_time_ms: int) -> None:
        """Queue one labelled window with its ground truth, in the default encoding (the
        event time in the message, the produce time as the record timestamp)."""
        value, headers = encode_window(w, event_time_ms, self.encoding)
        self.send_raw(w.source_id.encode(), value, headers)

    def send_raw(
        self,
        key: bytes,
        value: bytes,
        headers: RecordHeaders | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        """Queue one pre-encoded record (waits while the local queue is full).

        ``timestamp_ms`` is the record timestamp; 0 (the default) is the produce time. Keep
        it recent: the broker deletes records older than the topic's retention.

        Raises:
            DeliveryError: an earlier delivery failed, or the client refused the record.
        """
        client = self._client()
        while True:
            try:
                client.produce(
                    self.topic,
                    value=value,
                    key=key,
                    headers=headers,
                    timestamp=timestamp_ms,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                client.poll(0.05)  # the queue drains as delivery reports arrive
                self.check()
            except KafkaException as exc:
                raise DeliveryError(f"cannot produce to {self.topic}: {exc}") from exc
        self.sent += 1
        if self.sent % _POLL_EVERY == 0:
            client.poll(0)
            self.check()

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports for up to ``timeout_s`` (returns early when one arrives).

        Raises:
            DeliveryError: a delivery failed.
        """
        if self._producer is not None:
            self._producer.poll(timeout_s)
        self.check()

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every delivery report.

        Raises:
            DeliveryError: some records failed or were not delivered within ``timeout_s``.
        """
        if self._producer is None:
            return
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise DeliveryError(
                f"{remaining} of {self.sent} windows were still undelivered to {self.topic} "
                f"after {timeout_s:g} s"
                + (f" ({self.failed} failed: {'; '.join(self.errors)})" if self.failed else "")
            )
        self.check()

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush for up to ``timeout_s``, drop what is left, and release the client.

        Raises:
            DeliveryError: as :meth:`flush`.
        """
        if self._producer is None:
            return
        try:
            self.flush(timeout_s)
        finally:
            client, self._producer = self._producer, None
            if len(client):
                # Bounded exit: what could not be delivered in time is dropped (and reported
                # by the DeliveryError above), rather than blocking until message.timeout.ms.
                client.purge(in_queue=True, in_flight=True, blocking=False)
                client.poll(0)

    def __enter__(self) -> WindowProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # An error is already on its way out and wins; undelivered records are only logged,
        # unless that error is itself about deliveries.
        try:
            self.close(5.0)
        except DeliveryError as extra:
            if not issubclass(exc_type, DeliveryError):
                structlog.get_logger().warning("producer.undelivered_at_exit", error=str(extra))
