"""``detector alerts``: print the alerts topic readably (or as JSON lines) for people."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from detector.alerts import Alert, AlertState
from detector.errors import DetectorError
from detector.kafka_config import KafkaSettings

__all__ = ["follow_alerts", "format_alert"]

_COLORS = {"opened": "\x1b[1;31m", "ongoing": "\x1b[33m", "resolved": "\x1b[32m"}
_RESET = "\x1b[0m"


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def format_alert(alert: Alert, color: bool = False) -> str:
    """One readable line for an alert.

    >>> from detector.alerts import *
    >>> a = Alert(alert_id="a" * 32, episode_id="ep-1", state=AlertState.OPENED, source_id="pump-1",
    ...     severity=Severity.MAJOR, input=InputRef(topic="w", partition=0, offset=7, seq=3),
    ...     event_time_ms=0, detected_at_ms=12, score=2.0, peak_score=2.0,
    ...     threshold=ThresholdRef(value=1.0, method="quantile", target_far=0.01, samples_used=500,
    ...         set_at_ms=None, scope="source"),
    ...     model=ModelRef(name="m", version="1", sha256="0" * 64), anomalous_windows=1,
    ...     episode_started_ms=0, top_channels=[ChannelContribution(channel="ecg", error=1.5)])
    >>> line = format_alert(a)
    >>> line[:40]
    '00:00:00.000 OPENED   major    pump-1  s'
    >>> line[40:]
    'core 2 > 1 (quantile, 2.0x) ep-1 seq 3 [ecg 1.5] lag 12 ms'
    """
    state = alert.state.value.upper()
    ratio = alert.score / alert.threshold.value if alert.threshold.value > 0 else float("inf")
    parts = [
        _ts(alert.event_time_ms),
        f"{state:<8}",
        f"{alert.severity.value:<8}",
        alert.source_id,
    ]
    if alert.state is AlertState.RESOLVED:
        parts.append(
            f" peak {alert.peak_score:.4g} over {alert.anomalous_windows} windows "
            f"({alert.resolved_reason})"
        )
    else:
        parts.append(
            f" score {alert.score:.4g} > {alert.threshold.value:.4g} "
            f"({alert.threshold.method}, {ratio:.1f}x)"
        )
    parts.append(f"{alert.episode_id} seq {alert.input.seq}")
    if alert.top_channels and alert.state is not AlertState.RESOLVED:
        top = ", ".join(f"{c.channel} {c.error:.3g}" for c in alert.top_channels[:3])
        parts.append(f"[{top}]")
    parts.append(f"lag {alert.detected_at_ms - alert.event_time_ms} ms")
    line = " ".join(parts)
    if color:
        return f"{_COLORS.get(alert.state.value, '')}{line}{_RESET}"
    return line


def follow_alerts(
    kafka: KafkaSettings,
    topic: str,
    follow: bool = True,
    from_beginning: bool = False,
    as_json: bool = False,
    max_alerts: int | None = None,
    timeout_s: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print alerts until interrupted, ``max_alerts`` printed, or ``timeout_s`` passed.

    Without ``follow`` it stops at the end of the topic. Returns how many were printed.
    """
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"alerts-viewer-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    color = out.isatty() and not as_json
    printed = 0
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise DetectorError(f"topic {topic!r} does not exist at {kafka.bootstrap_servers}")
        parts = list(meta.partitions)
        offset = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
        consumer.assign([TopicPartition(topic, p, offset) for p in parts])
        at_end: set[int] = set()
        while deadline is None or time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                    continue
                at_end.discard(msg.partition() or 0)
                value = msg.value() or b""
                if as_json:
                    out.write(value.decode() + "\n")
                else:
                    try:
                        out.write(format_alert(Alert.model_validate_json(value), color) + "\n")
                    except ValidationError:
                        out.write(f"(not an alert: {orjson.loads(value) if value else None})\n")
                out.flush()
                printed += 1
                if max_alerts is not None and printed >= max_alerts:
                    return printed
            if not follow and len(at_end) == len(parts):
                break
    finally:
        consumer.close()
    return printed
