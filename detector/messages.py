"""The window message: the input contract between producers and the detector.

A window is one fixed-length slice of a signal from one source (a heartbeat, a minute of a
multichannel sensor). The Kafka record key is the ``source_id``. Two encodings, chosen per
record by the ``content-type`` header:

* ``application/json`` (the default when the header is absent): a :class:`Window` document;
  ``values`` is a list (one channel) or a list of rows (time steps x channels).
* ``application/x-float32le`` (compact, for high volume): the value is the samples as
  little-endian float32 in row-major (time, channel) order; ``shape``, ``source-id``, ``seq``
  and ``event-time-ms`` travel in headers.

Ground truth from simulators and replays travels in headers (``label``, ``anomaly-type``,
``regime``) and is never used for scoring.

Bounds checked at decode, in both encodings (a value outside them is one bad record, not a
crash later in state encoding): ``source_id`` 1 to :data:`MAX_SOURCE_ID` characters,
``seq`` 0 to 2**63 - 1, the event time within :data:`MIN_EVENT_TIME_MS` ..
:data:`MAX_EVENT_TIME_MS` (1970 to the end of year 9999), and JSON ``values`` JSON numbers
only (no numeric strings, booleans or nulls).

Examples:
    >>> import numpy as np
    >>> value, headers = encode_binary("pump-1", 7, 1_700_000_000_000, np.zeros((4, 2)))
    >>> w = decode_window(b"pump-1", value, headers)
    >>> (w.source_id, w.seq, w.values.shape)
    ('pump-1', 7, (4, 2))
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field

from detector.errors import DecodeError

__all__ = [
    "CONTENT_TYPE_F32",
    "CONTENT_TYPE_JSON",
    "H_ANOMALY_TYPE",
    "H_CONTENT_TYPE",
    "H_EVENT_TIME_MS",
    "H_LABEL",
    "H_REGIME",
    "H_SEQ",
    "H_SHAPE",
    "H_SOURCE_ID",
    "MAX_EVENT_TIME_MS",
    "MAX_SEQ",
    "MAX_SOURCE_ID",
    "MIN_EVENT_TIME_MS",
    "DecodedWindow",
    "Headers",
    "Window",
    "decode_window",
    "encode_binary",
    "encode_json",
    "header_value",
]

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_F32 = "application/x-float32le"

H_CONTENT_TYPE = "content-type"
H_SOURCE_ID = "source-id"
H_SEQ = "seq"
H_EVENT_TIME_MS = "event-time-ms"
H_SHAPE = "shape"
H_LABEL = "label"  # ground truth: "1" anomalous, "0" normal. Never used for scoring.
H_ANOMALY_TYPE = "anomaly-type"
H_REGIME = "regime"

Headers = list[tuple[str, bytes]]

MAX_SOURCE_ID = 256  # characters, as the published schema says
MAX_SEQ = (1 << 63) - 1  # int64: every consumer of alerts can hold it
MIN_EVENT_TIME_MS = 0
# 9999-12-31T23:59:59.999Z: the last instant a datetime (and an ISO 8601 string) can name.
MAX_EVENT_TIME_MS = 253_402_300_799_999
# JSON values: only numbers. bool is not int here (type(True) is bool), so it is refused.
_NUMBER_TYPES = frozenset({int, float})
_JSON_TYPE_NAMES = {str: "string", bool: "boolean", type(None): "null", dict: "object"}


class Window(BaseModel):
    """JSON form of a window (its JSON Schema is the published input contract)."""

    model_config = ConfigDict(extra="forbid")

    source_id: str = Field(
        min_length=1, max_length=MAX_SOURCE_ID, description="Sensor or patient id."
    )
    seq: int = Field(ge=0, description="Per-source sequence number, increasing.")
    event_time: datetime = Field(description="When the window ended at the source (UTC).")
    values: list[float] | list[list[float]] = Field(
        description="Samples: a list (one channel) or rows of channels (time x channels)."
    )
    metadata: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DecodedWindow:
    """A window ready to be scored: values are float32 of shape (time, channels)."""

    source_id: str
    seq: int
    event_time_ms: int
    values: npt.NDArray[np.float32]
    metadata: dict[str, str] = field(default_factory=dict)


def header_value(headers: Headers | None, name: str) -> str | None:
    """The last value of header ``name`` decoded as UTF-8, or None."""
    if not headers:
        return None
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    if found is None:
        return None
    return found.decode("utf-8", errors="replace")


def _to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def encode_json(
    source_id: str,
    seq: int,
    event_time_ms: int,
    values: npt.ArrayLike,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Serialise a window as the JSON contract (fast path, no pydantic round trip)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    doc: dict[str, Any] = {
        "source_id": source_id,
        "seq": seq,
        "event_time": datetime.fromtimestamp(event_time_ms / 1000, tz=UTC).isoformat(
            timespec="milliseconds"
        ),
        "values": arr,
    }
    if metadata:
        doc["metadata"] = metadata
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_binary(
    source_id: str, seq: int, event_time_ms: int, values: npt.ArrayLike
) -> tuple[bytes, Headers]:
    """Serialise a window in the compact float32 form. Returns (value, headers)."""
    arr = np.asarray(values, dtype="<f4")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"values must be 1-D or 2-D, got shape {arr.shape}")
    headers: Headers = [
        (H_CONTENT_TYPE, CONTENT_TYPE_F32.encode()),
        (H_SOURCE_ID, source_id.encode()),
        (H_SEQ, str(seq).encode()),
        (H_EVENT_TIME_MS, str(event_time_ms).encode()),
        (H_SHAPE, f"{arr.shape[0]},{arr.shape[1]}".encode()),
    ]
    return np.ascontiguousarray(arr).tobytes(), headers


def _check_source(source: str) -> str:
    if len(source) > MAX_SOURCE_ID:
        raise DecodeError(
            "bad_source_id", f"source_id has {len(source)} characters, at most {MAX_SOURCE_ID}"
        )
    return source


def _check_seq(seq: int) -> int:
    if not 0 <= seq <= MAX_SEQ:
        raise DecodeError("undecodable", f"seq must be an integer in 0..2**63-1, got {seq}")
    return seq


def _check_event_time(event_time_ms: int) -> int:
    if not MIN_EVENT_TIME_MS <= event_time_ms <= MAX_EVENT_TIME_MS:
        raise DecodeError(
            "bad_event_time",
            f"event time {event_time_ms} ms is outside {MIN_EVENT_TIME_MS}..{MAX_EVENT_TIME_MS} "
            "(1970 to year 9999)",
        )
    return event_time_ms


def _json_values(raw: Any) -> npt.NDArray[np.float32]:
    """JSON ``values`` (a list of numbers, or of rows of numbers) as a float32 array.

    Only JSON numbers are samples: numpy would silently read ``"1.5"`` or ``true`` as 1.5
    or 1.0, so the element types are checked first (``set(map(type, row))`` runs in C,
    well under a microsecond per hundred samples).
    """
    if not isinstance(raw, list):
        raise DecodeError(
            "bad_shape", f"values must be a list or a list of rows, got {_json_type(type(raw))}"
        )
    types = set(map(type, raw))
    if list in types:
        if types != {list}:
            raise DecodeError("bad_shape", "values mix numbers and rows")
        types = set()
        for row in raw:
            types.update(map(type, row))
    wrong = types - _NUMBER_TYPES
    if wrong:
        if wrong & {list, dict}:
            raise DecodeError("bad_shape", "values must be 1-D or 2-D lists of numbers")
        names = ", ".join(sorted(_json_type(t) for t in wrong))
        raise DecodeError("non_numeric", f"values must be JSON numbers, found {names}")
    try:
        return np.asarray(raw, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DecodeError("bad_shape", f"values are not a numeric list or matrix: {exc}") from exc


def _json_type(t: type) -> str:
    return _JSON_TYPE_NAMES.get(t, "array" if t is list else t.__name__)


def _as_2d(arr: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    if arr.ndim == 1:
        return arr[:, None]
    if arr.ndim == 2:
        return arr
    raise DecodeError("bad_shape", f"values must be 1-D or 2-D, got {arr.ndim}-D")


# One simdjson parser per thread (a parser is not thread-safe), made on the thread's first
# JSON window: simdjson is imported there, so importing the core loads only numpy, pydantic
# and orjson beside the standard library (tests/unit/test_core_imports.py).
_LOCAL = threading.local()


def _fast_json(value: bytes) -> dict[str, Any] | None:
    """The document with ``values`` as a float32 array, parsed by simdjson; None when it is
    not a plain object with a flat list of numbers (the orjson path then decides).

    A window's samples are most of its bytes: orjson makes a Python float of each (~4 µs
    for 140), simdjson hands them over as one buffer of doubles. Only the easy case is taken
    here (one flat numeric list, no repeated key, where orjson keeps the last value and
    simdjson the first), so both paths accept and reject the same documents, and decode
    them to the same arrays (tested).
    """
    # Exactly one "[" (else a nested list somewhere, or a "[" in a string: orjson decides).
    # Two memchr scans: bytes.count walks the record byte by byte (~2 µs for 2.9 KB).
    first = value.find(b"[")
    if first < 0 or value.find(b"[", first + 1) >= 0:
        return None
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        import simdjson as module

        parser = _LOCAL.parser = module.Parser()
        _LOCAL.simdjson = module
    simdjson: Any = _LOCAL.simdjson
    doc: Any = None
    samples: Any = None
    try:
        doc = parser.parse(value)
        if not isinstance(doc, simdjson.Object):
            return None
        keys = list(doc.keys())
        if len(set(keys)) != len(keys) or "values" not in keys:
            return None
        samples = doc["values"]
        if not isinstance(samples, simdjson.Array):
            return None
        flat = np.frombuffer(samples.as_buffer(of_type="d"), dtype=np.float64)
        out: dict[str, Any] = {}
        for k in keys:
            if k != "values":
                v: Any = doc[k]
                if isinstance(v, simdjson.Object):
                    v = v.as_dict()
                elif isinstance(v, simdjson.Array):
                    v = v.as_list()
                out[k] = v
        out["values"] = flat.astype(np.float32)
        return out
    except (ValueError, TypeError, KeyError, RuntimeError):  # not the easy case
        return None
    finally:
        # The parser refuses to parse again while proxies of its last document live.
        del doc, samples


def _decode_json(key: bytes | None, value: bytes) -> DecodedWindow:
    doc: Any = _fast_json(value)
    if doc is None:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("undecodable", f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError("undecodable", "JSON window must be an object")
    try:
        raw_values = doc["values"]
        seq = doc.get("seq", 0)
        raw_time = doc["event_time"]
    except KeyError as exc:
        raise DecodeError("missing_field", f"JSON window lacks {exc.args[0]!r}") from exc
    source = doc.get("source_id") or (key.decode("utf-8", errors="replace") if key else None)
    if not isinstance(source, str) or not source:
        raise DecodeError("missing_field", "no source_id in the document or the record key")
    _check_source(source)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise DecodeError("undecodable", f"seq must be a non-negative integer, got {seq!r}")
    _check_seq(seq)
    try:
        if isinstance(raw_time, int | float) and not isinstance(raw_time, bool):
            event_time_ms = int(raw_time)
        elif isinstance(raw_time, str):
            event_time_ms = _to_ms(datetime.fromisoformat(raw_time))
        else:
            raise ValueError(f"unsupported type {type(raw_time).__name__}")
    except (ValueError, OverflowError) as exc:  # OverflowError: int(inf), year 1 at UTC+1
        raise DecodeError("undecodable", f"bad event_time {raw_time!r:.80}: {exc}") from exc
    _check_event_time(event_time_ms)
    arr = raw_values if isinstance(raw_values, np.ndarray) else _json_values(raw_values)
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DecodeError("undecodable", "metadata must be an object")
    return DecodedWindow(source, seq, event_time_ms, _as_2d(arr), metadata)


_SHAPE_CACHE: dict[bytes, tuple[int, ...]] = {}  # shape header -> dims; producers use a few


def _shape_of(raw: bytes) -> tuple[int, ...]:
    dims = _SHAPE_CACHE.get(raw)
    if dims is None:
        dims = tuple(int(d) for d in raw.decode("utf-8", errors="replace").split(","))
        if len(_SHAPE_CACHE) < 64:
            _SHAPE_CACHE[raw] = dims
    return dims


def _decode_f32(key: bytes | None, value: bytes, hdrs: dict[str, bytes]) -> DecodedWindow:
    raw_source = hdrs.get(H_SOURCE_ID) or key
    source = raw_source.decode("utf-8", errors="replace") if raw_source else None
    if not source:
        raise DecodeError("missing_field", "no source-id header and no record key")
    _check_source(source)
    try:
        seq = int(hdrs.get(H_SEQ) or 0)
        event_time_ms = int(hdrs.get(H_EVENT_TIME_MS) or b"")
    except ValueError as exc:
        raise DecodeError("undecodable", f"bad seq or event-time-ms header: {exc}") from exc
    _check_seq(seq)
    _check_event_time(event_time_ms)
    if len(value) % 4:
        raise DecodeError("undecodable", f"{len(value)} bytes is not a whole number of float32")
    arr = np.frombuffer(value, dtype="<f4")
    raw_shape = hdrs.get(H_SHAPE)
    if raw_shape:
        try:
            arr = arr.reshape(_shape_of(raw_shape))
        except ValueError as exc:
            shape_text = raw_shape.decode("utf-8", errors="replace")
            raise DecodeError(
                "bad_shape", f"shape header {shape_text!r} does not fit {arr.size} samples"
            ) from exc
    return DecodedWindow(source, seq, event_time_ms, arr if arr.ndim == 2 else _as_2d(arr))


def decode_window(key: bytes | None, value: bytes | None, headers: Headers | None) -> DecodedWindow:
    """Decode one Kafka record into a window.

    Shape against a model, finiteness and size limits are checked by the caller, which knows
    the model's contract; this checks only that the record is a well-formed window. Samples
    beyond float32's range become inf (numpy warns of the overflow unless the caller runs
    under ``np.errstate(over="ignore")``, as :meth:`BatchDecider.prepare` does per batch).

    Raises:
        DecodeError: the record is not a window; ``reason`` says why.
    """
    if value is None:
        raise DecodeError("undecodable", "record has no value (tombstone)")
    hdrs = dict(headers) if headers else {}  # the last value of a repeated header wins
    raw_type = hdrs.get(H_CONTENT_TYPE)
    content_type = raw_type.decode("utf-8", errors="replace") if raw_type else CONTENT_TYPE_JSON
    base = content_type.split(";", 1)[0].strip().lower()
    if base == CONTENT_TYPE_JSON:
        return _decode_json(key, value)
    if base == CONTENT_TYPE_F32:
        return _decode_f32(key, value, hdrs)
    raise DecodeError("unknown_content_type", f"content-type {content_type!r} is not supported")
