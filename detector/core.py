"""The detector's pure core: records in; dead letters, alerts, events and state out.

No Kafka, no TensorFlow, no clocks: the service passes records as :class:`InputRecord`,
the model as anything with ``score(batch)`` (:class:`Scorer`), and the time as an argument.
One batch goes through two steps so the service can time the model call between them:

1. :meth:`BatchDecider.prepare` decodes and validates every record against the bundle's
   contract; bad ones become :class:`DeadLetter` values (never exceptions), good ones are
   stacked into one ``(B, T, C)`` array.
2. :meth:`BatchDecider.decide` walks the scored windows in stream order: threshold in force
   per source, episode lifecycle, threshold learning (normal windows only), alerts, events.

Why one module of ~550 lines: :meth:`~BatchDecider.prepare`, :meth:`~BatchDecider.decide`,
the idle sweep and the state records (:meth:`~BatchDecider.state_records`,
:meth:`~BatchDecider.restore`) are the entry points of one object that owns the thresholds
and the episodes, and the state they write is exactly what ``decide`` changed. The value
types live apart (:mod:`detector.scores`, :mod:`detector.lifecycle`, :mod:`detector.alerts`,
:mod:`detector.events`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from detector.alerts import (
    Alert,
    AlertState,
    ChannelContribution,
    InputRef,
    ModelRef,
    StepContribution,
    ThresholdRef,
    alert_id,
    severity_for,
)
from detector.bundle import Manifest
from detector.errors import DecodeError, DetectorError
from detector.events import Event, ShiftAccepted
from detector.lifecycle import EpisodeTracker, LifecycleSettings, Transition
from detector.messages import DecodedWindow, Headers, decode_window
from detector.scores import BatchScores, Scorer
from detector.threshold import ThresholdBank, ThresholdConfig, ThresholdInfo

__all__ = [
    "STATE_FORMAT",
    "BatchDecider",
    "BatchScores",
    "DeadLetter",
    "Decisions",
    "InputRecord",
    "Prepared",
    "Scorer",
    "build_decider",
]

STATE_FORMAT = 1
EPISODE_KEY = "episode/"
THRESHOLD_KEY = "threshold/"


class InputRecord(NamedTuple):
    """One consumed Kafka record, as plain data.

    A named tuple rather than a frozen dataclass: the consumer builds one per record, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) costs ~1.1 µs against
    ~0.25 µs here, a tenth of the consume-only ceiling's whole budget per window.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be scored, and why."""

    record: InputRecord
    reason: str
    detail: str


@dataclass(slots=True)
class Prepared:
    """A decoded, validated batch."""

    records: list[InputRecord]
    windows: list[DecodedWindow]
    batch: npt.NDArray[np.float32]
    dead_letters: list[DeadLetter]


@dataclass(slots=True)
class Decisions:
    """What one batch decided."""

    alerts: list[Alert] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    flagged: int = 0
    # source_id -> input partition, for sources whose state goes into this batch's
    # transaction: episode state whenever it changed, threshold state of every source the
    # batch touched (with state_interval_ms > 0: on a recalibration, or once per interval).
    episode_states_due: dict[str, int] = field(default_factory=dict)
    threshold_states_due: dict[str, int] = field(default_factory=dict)


def _describe(exc: Exception) -> str:
    """``Type: message`` of an unexpected exception, for a dead letter's detail."""
    return f"{type(exc).__name__}: {exc}"[:1000]


class BatchDecider:
    """Decode, validate and decide, for one model bundle.

    Args:
        manifest: the bundle's manifest (window shape, model identity).
        bank: per-source thresholds.
        lifecycle: episode rules.
        max_message_bytes: larger records are dead-lettered as ``oversize``.
        state_interval_ms: 0 (exactly-once state): every source a batch touches has its
            state in that batch's records (:meth:`state_records`), so the state topic holds
            exactly the state of the committed offsets. Above 0, a touched source's threshold
            state is written on a recalibration or at most this often, and
            :meth:`unsaved_state` lists what is left to write (a clean stop and a revoke
            write it); a crash then restores older threshold state than the offsets.
    """

    def __init__(
        self,
        manifest: Manifest,
        bank: ThresholdBank,
        lifecycle: LifecycleSettings,
        max_message_bytes: int = 1 << 20,
        state_interval_ms: int = 0,
    ) -> None:
        self.manifest = manifest
        self.bank = bank
        self.tracker = EpisodeTracker(lifecycle)
        self._top_k = lifecycle.top_k
        self._shift_after = lifecycle.shift_after_windows
        self._max_bytes = max_message_bytes
        self._shape = (manifest.window_size, manifest.n_channels)
        self._model = ModelRef(
            name=manifest.model_name, version=manifest.model_version, sha256=manifest.model_sha256
        )
        self._state_interval_ms = state_interval_ms
        self._last_state_ms: dict[str, int] = {}
        self._unsaved: set[str] = set()  # threshold state not written (state_interval_ms > 0)
        self._last_ref: dict[str, InputRef] = {}
        self._partition_of: dict[str, int] = {}

    # -- step 1 ---------------------------------------------------------------------------

    def _check(self, record: InputRecord) -> DecodedWindow:
        if record.value is not None and len(record.value) > self._max_bytes:
            raise DecodeError("oversize", f"{len(record.value)} bytes > {self._max_bytes}")
        window = decode_window(record.key, record.value, record.headers)
        values = window.values
        if values.shape != self._shape:
            if values.size == self._shape[0] * self._shape[1] and self._shape[1] == 1:
                values = values.reshape(self._shape)
            else:
                raise DecodeError(
                    "bad_shape", f"shape {values.shape}, the model expects {self._shape}"
                )
        if values is not window.values:
            window = DecodedWindow(
                window.source_id, window.seq, window.event_time_ms, values, window.metadata
            )
        return window

    def prepare(self, records: list[InputRecord]) -> Prepared:
        """Decode and validate; never raises for a bad record.

        A fault barrier per record: a :class:`DecodeError` becomes a dead letter with its
        reason, and any other exception one record triggers (a bug or a library surprise)
        a dead letter with reason ``internal_error`` and the exception type, so one record
        can never stop the batch, nor, replayed after a restart, the service.
        """
        good: list[InputRecord] = []
        windows: list[DecodedWindow] = []
        dead: list[DeadLetter] = []
        # Samples beyond float32's range become inf (then non_finite below), not a
        # RuntimeWarning per record: one errstate for the batch costs less than one per call.
        with np.errstate(over="ignore", invalid="ignore"):
            for record in records:
                try:
                    windows.append(self._check(record))
                    good.append(record)
                except DecodeError as exc:
                    dead.append(DeadLetter(record, exc.reason, exc.detail))
                except Exception as exc:
                    dead.append(DeadLetter(record, "internal_error", _describe(exc)))
        if not windows:
            return Prepared(good, windows, np.zeros((0, *self._shape), np.float32), dead)
        batch = np.stack([w.values for w in windows]).astype(np.float32, copy=False)
        finite = np.isfinite(batch).all(axis=(1, 2))  # one vectorised check for the batch
        if not finite.all():
            for i in np.flatnonzero(~finite):
                dead.append(
                    DeadLetter(
                        good[i], "non_finite", "values contain NaN, infinity or beyond float32"
                    )
                )
            keep = np.flatnonzero(finite)
            good = [good[i] for i in keep]
            windows = [windows[i] for i in keep]
            batch = batch[keep]
        return Prepared(good, windows, batch, dead)

    # -- step 2 ---------------------------------------------------------------------------

    def decide(self, prepared: Prepared, result: BatchScores, now_ms: int) -> Decisions:
        """Thresholds, lifecycle and learning for a scored batch, in stream order.

        A window the model scored NaN or infinite is moved from ``prepared`` to its dead
        letters (``non_finite_score``) before anything is decided: it says nothing about the
        source, and must neither open an episode nor be learnt.
        """
        out = Decisions()
        scores = np.asarray(result.scores, dtype=np.float64)
        finite = np.isfinite(scores)
        if not finite.all():
            for bad in np.flatnonzero(~finite).tolist():
                prepared.dead_letters.append(
                    DeadLetter(
                        prepared.records[bad],
                        "non_finite_score",
                        f"the model scored {scores[bad]}",
                    )
                )
            keep = np.flatnonzero(finite)
            prepared.records = [prepared.records[i] for i in keep]
            prepared.windows = [prepared.windows[i] for i in keep]
            prepared.batch = prepared.batch[keep]
            result = result.take(keep)
            scores = scores[keep]
        for i, (record, window) in enumerate(zip(prepared.records, prepared.windows, strict=True)):
            source = window.source_id
            score = float(scores[i])
            info = self.bank.get(source)
            flagged = score > info.value
            out.flagged += flagged
            self._partition_of[source] = record.partition
            was_open = self.tracker.is_open(source)
            # An episode id is needed only when this window may open one.
            episode_id = self._episode_id(record) if flagged and not was_open else ""
            transition = self.tracker.observe(
                source, flagged, score, window.event_time_ms, episode_id, arrival_ms=now_ms
            )
            is_open = self.tracker.is_open(source)
            if transition is not None or is_open:
                ref = InputRef(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    seq=window.seq,
                )
                if transition is not None:
                    out.alerts.append(
                        self._alert(
                            source,
                            transition,
                            ref,
                            window.event_time_ms,
                            score,
                            info,
                            result,
                            i,
                            now_ms,
                        )
                    )
                if is_open:
                    self._last_ref[source] = ref
            if was_open and not is_open:
                self._last_ref.pop(source, None)
            if was_open or is_open:
                out.episode_states_due[source] = record.partition
            shift = transition is not None and transition.shift
            events = self.bank.update(
                source,
                score,
                window.event_time_ms,
                flagged=flagged,
                episode_open=is_open,
                shift=shift,
            )
            if shift:
                assert transition is not None
                ep = transition.episode
                events.insert(
                    0,
                    ShiftAccepted(
                        source_id=source, at_ms=window.event_time_ms, episode_id=ep.episode_id,
                        windows=ep.windows, anomalous_windows=ep.anomalous_windows,
                        started_ms=ep.started_ms, peak_score=ep.peak_score,
                        threshold=info.value, shift_after_windows=self._shift_after,
                    ),
                )  # fmt: skip
            if events:
                out.events.extend(events)
            # Every scored window changes its source's threshold state (counters, ring).
            if (
                events
                or not self._state_interval_ms
                or now_ms - self._last_state_ms.get(source, 0) >= self._state_interval_ms
            ):
                out.threshold_states_due[source] = record.partition
            else:
                self._unsaved.add(source)
        if self._state_interval_ms:
            for source in out.threshold_states_due:
                self._last_state_ms[source] = now_ms
                self._unsaved.discard(source)
        return out

    def unsaved_state(self, partitions: set[int] | None = None) -> Decisions:
        """The threshold state decided but not yet in any batch's records (only with
        ``state_interval_ms`` > 0), of these input partitions (None: all), as a
        :class:`Decisions` for :meth:`state_records`; it counts as written from now on.

        Publish it only once every decided batch is committed: it is the state after them.
        """
        out = Decisions()
        for source in sorted(self._unsaved):
            partition = self._partition_of.get(source)
            if partition is None or source not in self.bank:
                self._unsaved.discard(source)
            elif partitions is None or partition in partitions:
                out.threshold_states_due[source] = partition
                self._unsaved.discard(source)
        return out

    def _episode_id(self, record: InputRecord) -> str:
        digest = alert_id(
            record.topic, record.partition, record.offset, "episode", self._model.sha256
        )
        return "ep-" + digest[:24]

    def sweep_idle(self, now_ms: int) -> Decisions:
        """Resolve episodes of sources that fell silent."""
        out = Decisions()
        for source, transition in self.tracker.sweep_idle(now_ms):
            ref = self._last_ref.pop(source, None) or InputRef(
                topic="", partition=-1, offset=-1, seq=-1
            )
            info = self.bank.get(source)
            out.alerts.append(
                self._alert(
                    source,
                    transition,
                    ref,
                    transition.episode.last_seen_ms,
                    transition.episode.peak_score,
                    info,
                    None,
                    0,
                    now_ms,
                )
            )
            out.episode_states_due[source] = self._partition_of.get(source, max(ref.partition, 0))
        return out

    def _alert(
        self,
        source: str,
        transition: Transition,
        ref: InputRef,
        event_time_ms: int,
        score: float,
        info: ThresholdInfo,
        result: BatchScores | None,
        row: int,
        now_ms: int,
    ) -> Alert:
        ep = transition.episode
        top_steps: list[StepContribution] = []
        top_channels: list[ChannelContribution] = []
        if result is not None and transition.state is not AlertState.RESOLVED:
            steps = np.asarray(result.step_errors[row])
            k = min(self._top_k, steps.size)
            for j in np.argsort(steps)[::-1][:k]:
                top_steps.append(StepContribution(step=int(j), error=float(steps[j])))
            chans = np.asarray(result.channel_errors[row])
            for j in np.argsort(chans)[::-1][: min(self._top_k, chans.size)]:
                top_channels.append(
                    ChannelContribution(
                        channel=self.manifest.channel_names[int(j)], error=float(chans[j])
                    )
                )
        severity_score = ep.peak_score if transition.state is AlertState.RESOLVED else score
        return Alert(
            alert_id=alert_id(
                ref.topic, ref.partition, ref.offset, transition.state.value, self._model.sha256
            ),
            episode_id=ep.episode_id,
            state=transition.state,
            source_id=source,
            severity=severity_for(max(severity_score, ep.peak_score), info.value),
            input=ref,
            event_time_ms=event_time_ms,
            detected_at_ms=now_ms,
            score=score,
            peak_score=ep.peak_score,
            threshold=ThresholdRef(
                value=info.value,
                method=info.method,
                target_far=info.target_far,
                samples_used=info.samples_used,
                set_at_ms=info.set_at_ms,
                scope=info.scope,
            ),
            model=self._model,
            anomalous_windows=ep.anomalous_windows,
            episode_started_ms=ep.started_ms,
            resolved_reason=transition.reason,
            top_steps=top_steps,
            top_channels=top_channels,
        )

    # -- state ----------------------------------------------------------------------------

    def state_records(self, decisions: Decisions) -> list[tuple[str, int, bytes | None]]:
        """(key, input partition, value) records for the compacted state topic.

        Keys are ``episode/<source>`` (value None, a tombstone, once no episode is open) and
        ``threshold/<source>``. An episode record also holds the input position of the
        episode's last window (``last_ref``): an idle-sweep resolution after a restart cites
        it (its alert id depends on it), as the uninterrupted detector would.
        """
        out: list[tuple[str, int, bytes | None]] = []
        for source, partition in decisions.episode_states_due.items():
            episode = self.tracker.snapshot(source)
            value = None
            if episode is not None:
                doc: dict[str, object] = {
                    "format": STATE_FORMAT,
                    "model_sha256": self._model.sha256,
                    "episode": episode,
                }
                ref = self._last_ref.get(source)
                if ref is not None:
                    doc["last_ref"] = [ref.topic, ref.partition, ref.offset, ref.seq]
                value = orjson.dumps(doc)
            out.append((EPISODE_KEY + source, partition, value))
        for source, partition in decisions.threshold_states_due.items():
            doc = {
                "format": STATE_FORMAT,
                "model_sha256": self._model.sha256,
                "threshold": base64.b64encode(self.bank.snapshot(source)).decode(),
            }
            out.append((THRESHOLD_KEY + source, partition, orjson.dumps(doc)))
        return out

    def restore(self, key: str, data: bytes, partition: int) -> bool:
        """Put back one state record; False (nothing changed) if unreadable or foreign."""
        if key.startswith(EPISODE_KEY):
            kind, source = "episode", key[len(EPISODE_KEY) :]
        elif key.startswith(THRESHOLD_KEY):
            kind, source = "threshold", key[len(THRESHOLD_KEY) :]
        else:
            return False
        try:
            doc = orjson.loads(data)
            if doc.get("format") != STATE_FORMAT or doc.get("model_sha256") != self._model.sha256:
                return False  # another model's scores live on another scale
            if kind == "episode":
                ref = doc.get("last_ref")
                last_ref = None
                if ref is not None:
                    topic, ref_partition, offset, seq = ref
                    last_ref = InputRef(
                        topic=topic, partition=ref_partition, offset=offset, seq=seq
                    )
                self.tracker.restore(source, doc["episode"])
                if last_ref is None:
                    self._last_ref.pop(source, None)
                else:
                    self._last_ref[source] = last_ref
            else:
                self.bank.restore(source, base64.b64decode(doc["threshold"]))
        except (
            orjson.JSONDecodeError,
            KeyError,
            ValueError,
            TypeError,
            AttributeError,
            DetectorError,
        ):
            return False
        self._partition_of[source] = partition
        return True

    def drop_partitions(self, partitions: set[int]) -> list[str]:
        """Forget the sources last seen on these partitions (revoked); returns them."""
        gone = [s for s, p in self._partition_of.items() if p in partitions]
        self.tracker.drop(set(gone))
        self.bank.drop(gone)
        for source in gone:
            self._partition_of.pop(source, None)
            self._last_ref.pop(source, None)
            self._last_state_ms.pop(source, None)
            self._unsaved.discard(source)
        return gone


def build_decider(
    manifest: Manifest,
    threshold: ThresholdConfig,
    lifecycle: LifecycleSettings,
    *,
    max_message_bytes: int = 1 << 20,
    state_interval_ms: int = 0,
) -> BatchDecider:
    """The core for a bundle, its thresholds warm-started from the bundle's reference errors.

    The service and the backtest both build their core here, so they decide alike.
    """
    bank = ThresholdBank(
        threshold,
        np.asarray(manifest.reference_errors.sample, dtype=np.float64),
        manifest.threshold.value,
        manifest.threshold.target_far,
    )
    return BatchDecider(
        manifest,
        bank,
        lifecycle,
        max_message_bytes=max_message_bytes,
        state_interval_ms=state_interval_ms,
    )
