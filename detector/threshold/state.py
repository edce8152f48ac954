"""One source's threshold state and its binary snapshot (:mod:`detector.threshold.bank`'s storage).

:class:`SourceState` holds a source's ring buffer of recent reference scores (negative entries
are censored: "above minus this") with the threshold in force and its counters. The bank writes
the ring on its hot path; this module owns its layout and everything that reads or rebuilds it.

Snapshot layout (:func:`encode_snapshot`, :func:`decode_snapshot`): ``b"THRS"``, format version
(u8), header length (u32 LE), JSON header (``_SnapshotHeader``), then the window's entries as
float32 LE in ring-buffer order (``pos`` in the header is the oldest once the ring is full), so
that a restored bank computes bit for bit what the original would have.
Pure: numpy, pydantic and orjson.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detector.errors import ThresholdStateError
from detector.threshold.types import SourceStats, ThresholdInfo

__all__ = [
    "SNAPSHOT_VERSION",
    "SourceState",
    "decode_snapshot",
    "encode_snapshot",
]

SNAPSHOT_VERSION = 2  # 2: the adaptive method's margin, counts and held-back scores
_MAGIC = b"THRS"
_PREFIX = struct.Struct("<4sBI")  # magic, version, header length


class SourceState:
    """Mutable per-source state. Every field is in the snapshot."""

    __slots__ = (
        "accepted", "buf", "calibrated_at_ms", "censored", "counted", "drift_armed",
        "drift_detections", "drift_p", "drift_value", "ep_spent", "errs", "excl_episode",
        "expected_censored", "flag_ewma", "flagged", "info", "invalid", "last_ms", "last_path",
        "margin", "n", "own", "pending", "pos", "prev_flagged", "prev_open", "recals",
        "retrain_armed", "seen", "since_drift", "since_recal", "value", "warm",
    )  # fmt: skip

    def __init__(self, value: float, capacity: int) -> None:
        self.buf: npt.NDArray[np.float32] = np.empty(capacity, dtype=np.float32)
        self.n = 0  # scores held (<= window)
        self.pos = 0  # next write index
        self.value = value  # threshold in force (the global one until `own`)
        self.own = False
        self.info: ThresholdInfo | None = None
        self.warm = True  # top the window up with the bundle prior until it fills
        self.seen = 0
        self.flagged = 0
        self.accepted = 0
        self.excl_episode = 0
        self.censored = 0
        self.last_path: str | None = None
        self.expected_censored: float | None = None
        self.invalid = 0
        self.since_recal = 0
        self.since_drift = 0
        self.recals = 0
        self.prev_open = False
        self.prev_flagged = False
        self.flag_ewma = 0.0
        self.last_ms: int | None = None
        self.calibrated_at_ms: int | None = None
        self.drift_armed = True
        self.drift_value: float | None = None
        self.drift_p: float | None = None
        self.drift_detections = 0
        self.retrain_armed = True
        # adaptive (detector.threshold.adaptive): the margin and the flags counted since the last
        # recalibration, the flags the open episode has spent of its budget, and the scores
        # held back while it is open (a flagged one stored as minus its score).
        self.margin = 1.0
        self.errs = 0
        self.counted = 0
        self.ep_spent = 0
        self.pending: list[float] = []

    def push(self, score: float, window: int) -> None:
        """Append one entry to the ring of ``window`` entries (growing it on demand)."""
        buf = self.buf
        n = self.n
        if n < window:
            if n == buf.shape[0]:
                grown = np.empty(min(2 * n, window), dtype=np.float32)
                grown[:n] = buf
                self.buf = buf = grown
            buf[n] = score
            self.n = n + 1
            self.pos = (n + 1) % window
        else:
            pos = self.pos
            buf[pos] = score
            self.pos = pos + 1 if pos + 1 < window else 0

    def chronological(self, window: int) -> npt.NDArray[np.float32]:
        """The window's entries, oldest first (a view while the ring is not yet full)."""
        if self.n < window:
            return self.buf[: self.n]
        return np.concatenate([self.buf[self.pos :], self.buf[: self.pos]])

    def keep_only(self, scores: npt.NDArray[np.float32], window: int) -> None:
        """Replace the window's entries with ``scores`` (oldest first, at most ``window``)."""
        fresh = np.empty(max(self.buf.shape[0], scores.shape[0]), dtype=np.float32)
        fresh[: scores.shape[0]] = scores
        self.buf = fresh
        self.n = scores.shape[0]
        self.pos = self.n % window

    def stats(self, source_id: str, info: ThresholdInfo, target_far: float) -> SourceStats:
        """Counters and gauges, with ``info`` the threshold in force for this source."""
        age = None
        if self.last_ms is not None and info.set_at_ms is not None:
            age = self.last_ms - info.set_at_ms
        return SourceStats(
            source_id=source_id,
            threshold=info.value,
            scope=info.scope,
            method=info.method,
            target_far=target_far,
            flag_rate=self.flag_ewma,
            seen=self.seen,
            flagged=self.flagged,
            accepted=self.accepted,
            excluded_episode=self.excl_episode,
            censored=self.censored,
            window_censored=int(np.count_nonzero(self.buf[: self.n] < 0)),
            last_estimator=self.last_path,
            expected_censored=self.expected_censored,
            invalid=self.invalid,
            window_n=self.n,
            recalibrations=self.recals,
            set_at_ms=info.set_at_ms,
            calibrated_at_ms=self.calibrated_at_ms,
            last_seen_ms=self.last_ms,
            calibration_age_ms=age,
            drift_armed=self.drift_armed,
            drift_statistic=self.drift_value,
            drift_p_value=self.drift_p,
            drift_detections=self.drift_detections,
            retrain_armed=self.retrain_armed,
        )


# SourceState fields persisted as they are (buf, n, pos and info are handled separately).
_PERSISTED = (
    "value", "own", "warm", "seen", "flagged", "accepted", "excl_episode", "censored",
    "last_path", "expected_censored",
    "invalid", "since_recal", "since_drift", "recals", "prev_open", "prev_flagged", "flag_ewma",
    "last_ms", "calibrated_at_ms", "drift_armed", "drift_value", "drift_p", "drift_detections",
    "retrain_armed", "margin", "errs", "counted", "ep_spent", "pending",
)  # fmt: skip


class _SnapshotHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    fingerprint: str
    source_id: str
    n: int = Field(ge=0)
    pos: int = Field(ge=0)
    value: float = Field(gt=0)
    own: bool
    method: str
    target_far: float
    samples_used: int = Field(ge=0)
    set_at_ms: int | None
    warm: bool
    seen: int = Field(ge=0)
    flagged: int = Field(ge=0)
    accepted: int = Field(ge=0)
    excl_episode: int = Field(ge=0)
    censored: int = Field(ge=0)
    last_path: str | None
    expected_censored: float | None
    invalid: int = Field(ge=0)
    since_recal: int = Field(ge=0)
    since_drift: int = Field(ge=0)
    recals: int = Field(ge=0)
    prev_open: bool
    prev_flagged: bool
    flag_ewma: float
    last_ms: int | None
    calibrated_at_ms: int | None
    drift_armed: bool
    drift_value: float | None
    drift_p: float | None
    drift_detections: int = Field(ge=0)
    retrain_armed: bool
    margin: float = Field(gt=0)
    errs: int = Field(ge=0)
    counted: int = Field(ge=0)
    ep_spent: int = Field(ge=0)
    pending: list[float]


def encode_snapshot(
    source_id: str, st: SourceState, *, fingerprint: str, method: str, target_far: float
) -> bytes:
    """Serialise one source's state (layout in the module docstring).

    Args:
        source_id: the source the state belongs to.
        st: its state.
        fingerprint: the bank's bundle-reference fingerprint.
        method, target_far: recorded for a source still on the global fallback (one with
            its own threshold records its :class:`ThresholdInfo`'s).
    """
    info = st.info
    header: dict[str, object] = {name: getattr(st, name) for name in _PERSISTED}
    header.update(
        fingerprint=fingerprint,
        source_id=source_id,
        n=st.n,
        pos=st.pos,
        method=info.method if info else method,
        target_far=info.target_far if info else target_far,
        samples_used=info.samples_used if info else 0,
        set_at_ms=info.set_at_ms if info else None,
    )
    head = orjson.dumps(header)
    body = st.buf[: st.n].astype("<f4", copy=False).tobytes()
    return _PREFIX.pack(_MAGIC, SNAPSHOT_VERSION, len(head)) + head + body


def decode_snapshot(
    source_id: str, data: bytes, *, fingerprint: str, window: int, capacity: int
) -> SourceState:
    """The state a snapshot offered for ``source_id`` holds, laid out for ``window`` entries.

    A snapshot taken with another ``window`` keeps its newest scores. The threshold in force is
    the snapshot's (``info`` set when it was the source's own); the caller decides what holds
    when the settings have changed since.

    Args:
        source_id: the source the snapshot is offered for.
        data: the snapshot's bytes.
        fingerprint: the bank's bundle-reference fingerprint.
        window: the bank's ring size.
        capacity: the smallest buffer to allocate.

    Raises:
        ThresholdStateError: the bytes are not a snapshot, are truncated or corrupt, have
            another format version, belong to another source, or were taken against another
            bundle reference (``fingerprint`` differs).
    """
    if len(data) < _PREFIX.size:
        raise ThresholdStateError(f"{source_id}: snapshot of {len(data)} bytes is truncated")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != _MAGIC:
        raise ThresholdStateError(f"{source_id}: not a threshold snapshot")
    if version != SNAPSHOT_VERSION:
        raise ThresholdStateError(
            f"{source_id}: snapshot format {version}, this detector reads {SNAPSHOT_VERSION}"
        )
    head_end = _PREFIX.size + head_len
    try:
        header = _SnapshotHeader.model_validate_json(data[_PREFIX.size : head_end])
    except ValidationError as exc:
        raise ThresholdStateError(f"{source_id}: corrupt snapshot header: {exc}") from exc
    if header.source_id != source_id:
        raise ThresholdStateError(f"snapshot of {header.source_id!r} offered for {source_id!r}")
    if header.fingerprint != fingerprint:
        raise ThresholdStateError(
            f"{source_id}: snapshot taken against another bundle reference "
            f"({header.fingerprint}, this bank {fingerprint}); start fresh"
        )
    body = data[head_end:]
    if len(body) != 4 * header.n:
        raise ThresholdStateError(
            f"{source_id}: snapshot holds {len(body)} bytes of scores, header says {header.n}"
        )
    scores = np.frombuffer(body, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(scores)):
        raise ThresholdStateError(f"{source_id}: snapshot scores hold NaN or inf")
    return _restore(header, scores, window, capacity)


def _restore(
    h: _SnapshotHeader, scores: npt.NDArray[np.float32], window: int, capacity: int
) -> SourceState:
    st = SourceState(h.value, max(capacity, scores.shape[0]))
    if scores.shape[0] == window and h.pos < window:
        st.buf[:] = scores  # same ring: same layout, same arithmetic
        st.n, st.pos = window, h.pos
    else:  # another window size: oldest first, keep the newest
        if h.pos and h.pos < scores.shape[0]:
            scores = np.concatenate([scores[h.pos :], scores[: h.pos]])
        scores = scores[-window:]
        st.buf[: scores.shape[0]] = scores
        st.n = int(scores.shape[0])
        st.pos = st.n % window
    for name in _PERSISTED:
        setattr(st, name, getattr(h, name))
    if h.own:
        st.info = ThresholdInfo(
            h.value, h.method, h.target_far, h.samples_used, h.set_at_ms, "source"
        )
    return st
