"""The window wire contract: both encodings round-trip; bad records become DecodeError."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detector.errors import DecodeError
from detector.messages import (
    CONTENT_TYPE_F32,
    H_CONTENT_TYPE,
    H_EVENT_TIME_MS,
    H_SEQ,
    MAX_EVENT_TIME_MS,
    MAX_SOURCE_ID,
    Window,
    decode_window,
    encode_binary,
    encode_json,
)


@pytest.mark.parametrize("shape", [(140,), (64, 3)])
def test_json_and_binary_round_trip_the_same_values(shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    as_json = decode_window(b"src", encode_json("src", 5, 1_700_000_000_123, values), None)
    value, headers = encode_binary("src", 5, 1_700_000_000_123, values)
    as_bin = decode_window(b"src", value, headers)
    expected = values.reshape(shape[0], -1)
    for w in (as_json, as_bin):
        assert (w.source_id, w.seq, w.event_time_ms) == ("src", 5, 1_700_000_000_123)
        np.testing.assert_allclose(w.values, expected, rtol=1e-6)
        assert w.values.dtype == np.float32


def test_json_encoding_validates_against_the_published_model() -> None:
    doc = encode_json("pump", 1, 0, np.arange(4.0), metadata={"site": "a"})
    window = Window.model_validate_json(doc)
    assert window.values == [0.0, 1.0, 2.0, 3.0]
    assert window.metadata == {"site": "a"}


def test_source_falls_back_to_the_record_key() -> None:
    doc = orjson.dumps({"seq": 1, "event_time": 5, "values": [1, 2]})
    assert decode_window(b"from-key", doc, None).source_id == "from-key"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"{not json", None, "undecodable"),
        (b"[1, 2]", None, "undecodable"),
        (orjson.dumps({"source_id": "a", "event_time": 0}), None, "missing_field"),
        (orjson.dumps({"source_id": "a", "values": [1]}), None, "missing_field"),
        (
            orjson.dumps({"source_id": "a", "event_time": "yesterday", "values": [1]}),
            None,
            "undecodable",
        ),
        (
            orjson.dumps({"source_id": "a", "event_time": 0, "values": [[1, 2], [3]]}),
            None,
            "bad_shape",
        ),
        (orjson.dumps({"source_id": "a", "event_time": 0, "values": "abc"}), None, "bad_shape"),
        (
            orjson.dumps({"source_id": "a", "event_time": 0, "seq": -1, "values": [1]}),
            None,
            "undecodable",
        ),
        (b"abc", [(H_CONTENT_TYPE, b"application/x-float32le")], "missing_field"),
        (b"xml", [(H_CONTENT_TYPE, b"text/xml")], "unknown_content_type"),
        (None, None, "undecodable"),
    ],
)
def test_bad_records_raise_decode_error_with_reason(
    value: bytes | None, headers: list[tuple[str, bytes]] | None, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_window(None, value, headers)
    assert info.value.reason == reason


def test_binary_with_a_shape_that_does_not_fit_is_bad_shape() -> None:
    value, headers = encode_binary("s", 0, 0, np.zeros((10, 2)))
    headers = [(k, b"7,3" if k == "shape" else v) for k, v in headers]
    with pytest.raises(DecodeError) as info:
        decode_window(b"s", value, headers)
    assert info.value.reason == "bad_shape"


def test_binary_truncated_payload_is_undecodable() -> None:
    value, headers = encode_binary("s", 0, 0, np.zeros(8))
    with pytest.raises(DecodeError) as info:
        decode_window(b"s", value[:-2], headers)
    assert info.value.reason == "undecodable"
    assert headers[0] == (H_CONTENT_TYPE, CONTENT_TYPE_F32.encode())


_DOCS = [
    b'{"source_id":"a","seq":1,"event_time":1700000000000,"values":[1,2.5,-3e-2,1e-45]}',
    b'{"source_id":"a","seq":1,"event_time":"2023-11-14T22:13:20.5Z","values":[[1,2],[3,4]]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[[1,2],[3]]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[[1,2],[]]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[1,[2]]}',
    b'{"source_id":"a[1]","seq":1,"event_time":0,"values":[1]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[true,1]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[1,"2"]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":["1.5","2"]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[false,true]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[null,1]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[[1,"2"],[3,4]]}',
    b'{"source_id":"a","seq":1,"event_time":1e20,"values":[1]}',
    b'{"source_id":"a","seq":1,"event_time":100000000000000000000,"values":[1]}',
    b'{"source_id":"a","seq":1,"event_time":-1,"values":[1]}',
    b'{"source_id":"a","seq":18446744073709551615,"event_time":0,"values":[1]}',
    b'{"source_id":"' + b"s" * 257 + b'","seq":1,"event_time":0,"values":[1]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[1e300]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[1e400]}',
    b'{"source_id":"a","seq":1,"event_time":0,"values":[1],"values":[2,3]}',
    b'{"source_id":"a","seq":99999999999999999999999,"event_time":0,"values":[1]}',
    b'{"source_id":"a","seq":-1,"event_time":0,"values":[1]}',
    b'{"source_id":"\xc3\xa9","event_time":0,"values":[1],"metadata":{"k":"v","n":[1]}}',
    b'{"source_id":"a","event_time":0,"values":[1],"metadata":[]}',
    b'{"seq":1,"event_time":0,"values":[1]}',
    b'{"source_id":"a","seq":1,"values":[1]}',
    b'{"source_id":"a","seq":1,"event_time":null,"values":[1]}',
    b'{"source_id":"\xff","seq":1,"event_time":0,"values":[1]}',
    b"[1,2,3]",
    b'{"source_id":"a",',
    b"",
]


@pytest.mark.parametrize("doc", _DOCS)
def test_the_simdjson_fast_path_decodes_like_orjson(
    doc: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON windows go through simdjson when they are simple; every document must decode
    (or be refused, with the same reason) exactly as the plain orjson path does."""
    from detector import messages

    def outcome() -> tuple[object, ...]:
        try:
            with np.errstate(over="ignore"):  # 1e300 -> inf in float32, as the core does
                w = decode_window(b"key", doc, None)
        except DecodeError as exc:
            return ("error", exc.reason)
        return (w.source_id, w.seq, w.event_time_ms, w.values.tobytes(), w.values.shape, w.metadata)

    fast = outcome()
    monkeypatch.setattr(messages, "_fast_json", lambda _value: None)
    assert fast == outcome()


def test_the_fast_path_takes_flat_numeric_windows_and_can_parse_again() -> None:
    from detector.messages import _fast_json

    value = encode_json("src", 5, 1_700_000_000_123, np.arange(140.0))
    for _ in range(3):  # the parser is reused: no proxy of the last document may survive
        doc = _fast_json(value)
        assert doc is not None and doc["values"].dtype == np.float32
        assert _fast_json(b'{"values":[[1],[2]]}') is None


def _json(values: object, **fields: object) -> bytes:
    return orjson.dumps({"source_id": "a", "seq": 1, "event_time": 0, "values": values, **fields})


@pytest.mark.parametrize(
    "values",
    [["1.5", "2.5"], [1.5, "2.5"], [True, False], [1.0, True], [None, 1.0], [[1.0, "2"], [3, 4]]],
)
def test_only_json_numbers_are_samples(values: object) -> None:
    """numpy would read "1.5" as 1.5 and true as 1.0: such windows must not be scored."""
    with pytest.raises(DecodeError) as info:
        decode_window(b"a", _json(values), None)
    assert info.value.reason == "non_numeric"
    assert "JSON numbers" in info.value.detail


def test_integers_and_floats_are_samples() -> None:
    w = decode_window(b"a", _json([[1, 2.5], [0, -3]]), None)
    assert w.values.tolist() == [[1.0, 2.5], [0.0, -3.0]]


@pytest.mark.parametrize("binary", [False, True])
def test_source_id_is_bounded_as_the_schema_says(binary: bool) -> None:
    assert Window.model_json_schema()["properties"]["source_id"]["maxLength"] == MAX_SOURCE_ID
    for source, ok in (("s" * MAX_SOURCE_ID, True), ("s" * (MAX_SOURCE_ID + 1), False)):
        if binary:
            value, headers = encode_binary(source, 0, 0, np.zeros(4))
            args: tuple[bytes | None, bytes, list[tuple[str, bytes]] | None] = (
                None,
                value,
                headers,
            )
        else:
            args = (None, encode_json(source, 0, 0, np.zeros(4)), None)
        if ok:
            assert decode_window(*args).source_id == source
        else:
            with pytest.raises(DecodeError) as info:
                decode_window(*args)
            assert info.value.reason == "bad_source_id"


def test_an_overlong_record_key_is_no_source_id_either() -> None:
    doc = orjson.dumps({"event_time": 0, "values": [1.0]})
    with pytest.raises(DecodeError) as info:
        decode_window(b"k" * 100_000, doc, None)
    assert info.value.reason == "bad_source_id"


@pytest.mark.parametrize(
    "event_time",
    [1e20, 2**63, -1, MAX_EVENT_TIME_MS + 1, "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"],
)
def test_json_event_times_out_of_range_are_bad_event_time(event_time: object) -> None:
    with pytest.raises(DecodeError) as info:
        decode_window(b"a", _json([1.0], event_time=event_time), None)
    assert info.value.reason == "bad_event_time"


@pytest.mark.parametrize("header", [b"100000000000000000000", b"-5", b"253402300800000"])
def test_binary_event_times_out_of_range_are_bad_event_time(header: bytes) -> None:
    value, headers = encode_binary("s", 0, 0, np.zeros(4))
    headers = [(k, header if k == H_EVENT_TIME_MS else v) for k, v in headers]
    with pytest.raises(DecodeError) as info:
        decode_window(b"s", value, headers)
    assert info.value.reason == "bad_event_time"


def test_the_event_time_range_ends_at_year_9999() -> None:
    last = "9999-12-31T23:59:59.999Z"
    assert decode_window(b"a", _json([1.0], event_time=last), None).event_time_ms == (
        MAX_EVENT_TIME_MS
    )
    assert decode_window(b"a", _json([1.0], event_time=MAX_EVENT_TIME_MS), None).event_time_ms
    assert decode_window(b"a", _json([1.0], event_time=0), None).event_time_ms == 0


@pytest.mark.parametrize("seq", [b"-1", b"9223372036854775808"])
def test_binary_seq_is_bounded_like_json(seq: bytes) -> None:
    value, headers = encode_binary("s", 0, 0, np.zeros(4))
    headers = [(k, seq if k == H_SEQ else v) for k, v in headers]
    with pytest.raises(DecodeError) as info:
        decode_window(b"s", value, headers)
    assert info.value.reason == "undecodable"


def test_the_issue_s_event_time_literal_is_bad_event_time() -> None:
    doc = b'{"source_id":"a","seq":1,"event_time":100000000000000000000,"values":[1]}'
    with pytest.raises(DecodeError) as info:
        decode_window(b"a", doc, None)
    assert info.value.reason == "bad_event_time"
