"""Dead-letter copies: untouched when they fit, cut to the producer's limit when they do not."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from detector.core import DeadLetter, InputRecord
from detector.dead_letters import (
    DEFAULT_MESSAGE_MAX_BYTES,
    DLQ_HEADERS,
    DLQ_TRUNCATION_HEADERS,
    dead_letter_record,
)
from detector.messages import Headers


def _dead(value: bytes | None, key: bytes | None = b"pump-1", headers: Headers | None = None):
    record = InputRecord("windows", 3, 41, key, value, headers, 0)
    return DeadLetter(record, "oversize", f"{len(value or b'')} bytes > 1048576")


@pytest.fixture
def librdkafka() -> Iterator[Producer]:
    """A real librdkafka producer (no broker: nothing is sent). Its produce() refuses a record
    over message.max.bytes at once with MSG_SIZE_TOO_LARGE, the error that killed the
    detector (issue 14, D2): the copies below must pass that very check."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    yield producer
    producer.purge()
    producer.flush(0)


def test_a_record_that_fits_is_copied_untouched_with_the_reason() -> None:
    headers = [("content-type", b"application/json"), ("label", b"1")]
    key, value, out = dead_letter_record(_dead(b"{oops", headers=headers), 1234)
    assert (key, value) == (b"pump-1", b"{oops")
    assert out[:2] == headers
    names = [name for name, _ in out[2:]]
    assert names == list(DLQ_HEADERS)
    assert dict(out)["dlq-source-offset"] == b"41"
    assert not set(DLQ_TRUNCATION_HEADERS) & set(names)


@pytest.mark.parametrize("size", [1_040_000, 7_000_000, 999_990])
def test_an_oversize_record_is_cut_under_the_producer_limit_with_size_headers(
    size: int, librdkafka: Producer
) -> None:
    original = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    key, value, headers = dead_letter_record(
        _dead(original, headers=[("label", b"1")]), 0, DEFAULT_MESSAGE_MAX_BYTES
    )
    h = dict(headers)
    assert h["dlq-truncated"] == b"true"
    assert int(h["dlq-original-bytes"]) == size
    assert h["dlq-original-sha256"].decode() == hashlib.sha256(original).hexdigest()
    assert h["dlq-reason"] == b"oversize" and h["label"] == b"1"
    assert value is not None and original.startswith(value) and len(value) > 900_000
    assert key == b"pump-1"
    librdkafka.produce("dead-letters", value=value, key=key, headers=headers)


def test_the_untruncated_copy_of_the_issue_s_record_would_have_been_refused(
    librdkafka: Producer,
) -> None:
    """The test above is not vacuous: librdkafka refuses the 1,040,000-byte copy itself."""
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException, match="MSG_SIZE_TOO_LARGE"):
        librdkafka.produce("dead-letters", value=b"x" * 1_040_000, key=b"pump-1")


def test_a_huge_key_and_many_headers_are_cut_too(librdkafka: Producer) -> None:
    big_headers = [(f"h{i}", b"v" * 10_000) for i in range(200)]  # 2 MB of headers
    key, value, headers = dead_letter_record(
        _dead(b"v" * 10, key=b"k" * 3_000_000, headers=big_headers), 0
    )
    h = dict(headers)
    assert h["dlq-truncated"] == b"true"
    assert int(h["dlq-original-key-bytes"]) == 3_000_000
    assert 0 < int(h["dlq-dropped-headers"]) < 200
    assert value == b"v" * 10
    librdkafka.produce("dead-letters", value=value, key=key, headers=headers)


def test_a_raised_producer_limit_keeps_more_and_a_tiny_one_still_works() -> None:
    record = _dead(b"x" * 3_000_000)
    _k, whole, _h = dead_letter_record(record, 0, 8_000_000)
    assert whole == b"x" * 3_000_000
    _k, cut, headers = dead_letter_record(record, 0, 100)
    assert cut is not None and 0 < len(cut) < 16_384
    assert dict(headers)["dlq-truncated"] == b"true"


def test_a_tombstone_and_null_header_values_do_not_break_the_copy() -> None:
    headers: Headers = [("n", None)]  # type: ignore[list-item]
    key, value, out = dead_letter_record(_dead(None, key=None, headers=headers), 0)
    assert (key, value) == (None, None)
    assert out[0] == ("n", None)
