"""Writing windows to Kafka, with every delivery report checked.

A failed delivery is an error, never silence: :meth:`WindowProducer.flush` raises
:class:`~producer.errors.DeliveryError` naming how many failed and why.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from detector.kafka_config import KafkaSettings
from detector.messages import (
    CONTENT_TYPE_JSON,
    H_ANOMALY_TYPE,
    H_CONTENT_TYPE,
    H_LABEL,
    H_REGIME,
    encode_binary,
    encode_json,
)
from producer.errors import DeliveryError
from producer.settings import Encoding
from producer.windows import LabeledWindow

__all__ = ["WindowProducer", "encode_window"]

_JSON_HEADER = (H_CONTENT_TYPE, CONTENT_TYPE_JSON.encode())


def encode_window(
    w: LabeledWindow, event_time_ms: int, encoding: Encoding
) -> tuple[bytes, list[tuple[str, str | bytes]]]:
    """The record value and headers of one window, ground truth included in headers."""
    truth: list[tuple[str, str | bytes]] = [
        (H_LABEL, b"1" if w.label else b"0"),
        (H_ANOMALY_TYPE, w.anomaly_type.encode()),
        (H_REGIME, w.regime.encode()),
    ]
    if encoding == "binary":
        value, headers = encode_binary(w.source_id, w.seq, event_time_ms, w.values)
        return value, headers + truth
    return encode_json(w.source_id, w.seq, event_time_ms, w.values), [_JSON_HEADER, *truth]


class WindowProducer:
    """A Kafka producer of windows (keyed by source) that counts deliveries.

    Args:
        kafka: connection settings.
        topic: where windows go.
        encoding: ``json`` or ``binary`` (compact float32).
    """

    def __init__(self, kafka: KafkaSettings, topic: str, encoding: Encoding = "json") -> None:
        self._kafka = kafka
        self.topic = topic
        self.encoding: Encoding = encoding
        self._producer: Producer | None = None
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self._errors: list[str] = []

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            conf: dict[str, Any] = {
                "linger.ms": 5,
                "batch.size": 1_000_000,
                "acks": "all",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 500_000,
                **self._kafka.client_config(),
            }
            self._producer = Producer(conf)
        return self._producer

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            if len(self._errors) < 5:
                self._errors.append(str(err))

    def send(self, w: LabeledWindow, event_time_ms: int) -> None:
        """Queue one window (blocks briefly while the local queue is full)."""
        value, headers = encode_window(w, event_time_ms, self.encoding)
        self.send_raw(w.source_id.encode(), value, headers)

    def send_raw(
        self, key: bytes, value: bytes, headers: list[tuple[str, str | bytes]] | None = None
    ) -> None:
        """Queue one pre-encoded record."""
        p = self.producer
        while True:
            try:
                p.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                p.poll(0.05)
            except KafkaException as exc:
                raise DeliveryError(f"cannot produce to {self.topic}: {exc}") from exc
        self.sent += 1
        if self.sent % 1000 == 0:
            p.poll(0)

    def send_batch(
        self, windows: list[LabeledWindow], event_times_ms: npt.NDArray[np.int64]
    ) -> None:
        """Queue windows with their event times."""
        for w, t in zip(windows, event_times_ms.tolist(), strict=True):
            self.send(w, int(t))

    def poll(self) -> None:
        """Serve delivery reports."""
        if self._producer is not None:
            self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every delivery report.

        Raises:
            DeliveryError: some records failed or were not delivered within ``timeout_s``.
        """
        if self._producer is None:
            return
        remaining = self._producer.flush(timeout_s)
        if remaining or self.failed:
            raise DeliveryError(
                f"{self.failed} of {self.sent} windows failed and {remaining} were not "
                f"delivered within {timeout_s:g} s (topic {self.topic}): {self._errors}"
            )

    def __enter__(self) -> WindowProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._producer is not None and exc_type is not None:
            self._producer.flush(5)  # best effort; the original error wins
