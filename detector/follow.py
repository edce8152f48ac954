"""``detector alerts``: print the alerts topic readably (or as JSON lines) for people.

A broker that cannot be reached is one line and exit code 3 (:class:`KafkaUnavailableError`),
as for ``detector run``: librdkafka's own log lines are kept off the terminal (the last one
is quoted in the error), and a broker lost while following is said once, not per retry.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from detector.alerts import Alert, AlertState, severity_bands
from detector.errors import DetectorError, KafkaUnavailableError
from detector.kafka.config import COMMON_BOOTSTRAP_ENV, KafkaSettings, new_client

__all__ = ["alert_legend", "follow_alerts", "format_alert"]

CONNECT_TIMEOUT_S = 10.0  # for the first answer of a broker (or --timeout, if shorter)

# librdkafka errors that mean "no broker answers", not a problem with the topic or a record.
_UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}

_COLORS = {"opened": "\x1b[1;31m", "ongoing": "\x1b[33m", "resolved": "\x1b[32m"}
_RESET = "\x1b[0m"


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def alert_legend() -> str:
    """What the columns of :func:`format_alert`'s lines mean (printed above them)."""
    return "\n".join(
        [
            "columns:  event time (UTC)  STATE  severity  source  score > threshold "
            "(method, score/threshold)  episode  seq (the window's number in its source)  "
            "[channels with the largest error]  lag (event time to detection)",
            "states:   OPENED an episode's first anomalous window; ONGOING still anomalous "
            "(at most one line per interval, with the peak so far); RESOLVED normal again "
            "(peak score, anomalous windows, why)",
            f"severity: {severity_bands()}",
        ]
    )


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


class _QuietLog:
    """confluent-kafka's ``logger``: keeps librdkafka's lines off the terminal, remembers the
    last one (an unreachable broker's reason) for the error message."""

    def __init__(self) -> None:
        self.last = ""

    def log(self, level: int, msg: str, *args: object) -> None:
        self.last = str(args[-1]) if args else msg


def _unreachable(kafka: KafkaSettings, why: str) -> KafkaUnavailableError:
    return KafkaUnavailableError(
        f"cannot reach Kafka at {kafka.bootstrap_servers}: {why} (set --bootstrap-servers, "
        f"DETECTOR_KAFKA__BOOTSTRAP_SERVERS or {COMMON_BOOTSTRAP_ENV})"
    )


def follow_alerts(
    kafka: KafkaSettings,
    topic: str,
    follow: bool = True,
    from_beginning: bool = False,
    as_json: bool = False,
    max_alerts: int | None = None,
    timeout_s: float | None = None,
    out: TextIO = sys.stdout,
    legend: TextIO | None = None,
) -> int:
    """Print alerts until interrupted, ``max_alerts`` printed, or ``timeout_s`` passed.

    Without ``follow`` it stops at the end of the topic. Returns how many were printed.
    With ``legend``, :func:`alert_legend` is written there once the topic is found.

    Raises:
        KafkaUnavailableError: no broker answered at the start.
        DetectorError: the topic does not exist.
        ConfigError: librdkafka rejected an option.
    """
    quiet = _QuietLog()
    consumer = new_client(
        Consumer,
        {
            **kafka.client_config(),
            "group.id": f"alerts-viewer-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        },
        logger=quiet,
    )
    color = out.isatty() and not as_json
    printed = 0
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        try:
            connect_s = min(CONNECT_TIMEOUT_S, timeout_s) if timeout_s else CONNECT_TIMEOUT_S
            meta = consumer.list_topics(topic, timeout=connect_s).topics.get(topic)
        except KafkaException as exc:
            first = exc.args[0] if exc.args else None
            why = first.str() if isinstance(first, KafkaError) else str(exc)
            raise _unreachable(kafka, quiet.last or why) from None
        if meta is None or meta.error is not None:
            raise DetectorError(f"topic {topic!r} does not exist at {kafka.bootstrap_servers}")
        parts = list(meta.partitions)
        if legend is not None:
            print(alert_legend(), file=legend, flush=True)
        offset = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
        consumer.assign([TopicPartition(topic, p, offset) for p in parts])
        at_end: set[int] = set()
        lost = False  # said once per outage
        while deadline is None or time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                    elif err.code() in _UNREACHABLE and not lost:
                        lost = True
                        print(
                            f"detector alerts: lost the broker at {kafka.bootstrap_servers} "
                            f"({err.str()}); still trying (Ctrl-C to stop)",
                            file=sys.stderr,
                            flush=True,
                        )
                    continue
                lost = False
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
