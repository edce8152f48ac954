"""The window wire contract: both encodings round-trip; bad records become DecodeError."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detector.errors import DecodeError
from detector.messages import (
    CONTENT_TYPE_F32,
    H_CONTENT_TYPE,
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
