"""Dead-letter records: the input record as it came, plus why, sized so it can always be sent.

A dead letter keeps the original key, value and headers untouched and adds headers:

=========================  ===================================================================
``dlq-reason``             machine-readable reason (``undecodable``, ``oversize`` ...)
``dlq-detail``             one human-readable line (at most 1000 bytes)
``dlq-source-topic``       where the record was read: topic, partition and offset
``dlq-source-partition``
``dlq-source-offset``
``dlq-time-ms``            when it was dead-lettered (wall clock, ms)
=========================  ===================================================================

The dead-letter path must not fail on size: a record the producer cannot send
(``MSG_SIZE_TOO_LARGE``) aborts the transaction of its whole batch, and after a restart the
same record comes back, forever. So a record that does not fit ``max_bytes`` (the producer's
``message.max.bytes``) is sent *truncated*: the value's first bytes, the key (cut too only if
it alone takes more than an eighth of the budget), the original headers that fit in another
eighth, and these headers:

=========================  ===================================================================
``dlq-truncated``          ``true``
``dlq-original-bytes``     the original value's length
``dlq-original-sha256``    the original value's sha256 (hex), to match it with the source
``dlq-original-key-bytes`` the original key's length (only if the key was cut)
``dlq-dropped-headers``    how many original headers were left out (only if any)
=========================  ===================================================================

Examples:
    >>> from detector.core import DeadLetter, InputRecord
    >>> rec = InputRecord("windows", 0, 7, b"k", b"x" * 50_000, None, 0)
    >>> key, value, headers = dead_letter_record(DeadLetter(rec, "oversize", "big"), 0, 20_000)
    >>> len(value) < 20_000, dict(headers)["dlq-original-bytes"]
    (True, b'50000')
"""

from __future__ import annotations

import hashlib

from detector.core import DeadLetter

__all__ = [
    "DEFAULT_MESSAGE_MAX_BYTES",
    "DLQ_HEADERS",
    "DLQ_TRUNCATION_HEADERS",
    "dead_letter_record",
    "record_size",
]

DLQ_HEADERS = (
    "dlq-reason",
    "dlq-detail",
    "dlq-source-topic",
    "dlq-source-partition",
    "dlq-source-offset",
    "dlq-time-ms",
)
DLQ_TRUNCATION_HEADERS = (
    "dlq-truncated",
    "dlq-original-bytes",
    "dlq-original-sha256",
    "dlq-original-key-bytes",
    "dlq-dropped-headers",
)
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes default
# Room left under the limit for what librdkafka adds around a record: its framing (< 100 bytes
# per record with varints) and a record batch header (61 bytes); generous on purpose.
_HEADROOM_BYTES = 4096
_PER_HEADER_BYTES = 10  # a header's varint lengths in the record format
_MIN_BUDGET = 16_384  # below this even a truncated copy would be mostly headers

Header = tuple[str, bytes]  # a null header value (None) from other clients is counted as empty


def record_size(key: bytes | None, value: bytes | None, headers: list[Header]) -> int:
    """Bytes a record takes against ``message.max.bytes`` (framing not included)."""
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name) + len(v or b"") + _PER_HEADER_BYTES for name, v in headers)
    )


def dead_letter_record(
    dl: DeadLetter, now_ms: int, max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES
) -> tuple[bytes | None, bytes | None, list[Header]]:
    """(key, value, headers) of the dead-letter copy of ``dl.record``, within ``max_bytes``.

    Args:
        dl: the record and why it could not be scored.
        now_ms: the time stamped in ``dlq-time-ms``.
        max_bytes: the producer's ``message.max.bytes``; the copy is cut to fit under it.
    """
    r = dl.record
    original: list[Header] = list(r.headers or [])
    extra: list[Header] = [
        ("dlq-reason", dl.reason.encode()),
        ("dlq-detail", dl.detail.encode("utf-8", errors="replace")[:1000]),
        ("dlq-source-topic", r.topic.encode()),
        ("dlq-source-partition", str(r.partition).encode()),
        ("dlq-source-offset", str(r.offset).encode()),
        ("dlq-time-ms", str(now_ms).encode()),
    ]
    budget = max(_MIN_BUDGET, max_bytes - _HEADROOM_BYTES)
    if record_size(r.key, r.value, original + extra) <= budget:
        return r.key, r.value, original + extra
    value = r.value or b""
    extra += [
        ("dlq-truncated", b"true"),
        ("dlq-original-bytes", str(len(value)).encode()),
        ("dlq-original-sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    key = r.key
    if key is not None and len(key) > budget // 8:
        extra.append(("dlq-original-key-bytes", str(len(key)).encode()))
        key = key[: budget // 8]
    kept: list[Header] = []
    used = 0
    for header in original:
        size = record_size(None, None, [header])
        if used + size > budget // 8:
            break
        kept.append(header)
        used += size
    if len(kept) < len(original):
        extra.append(("dlq-dropped-headers", str(len(original) - len(kept)).encode()))
    headers = kept + extra
    room = budget - record_size(key, None, headers)
    return key, value[: max(0, room)], headers
