"""Per-source adaptive thresholds calibrated to a target false-alarm rate.

A :class:`ThresholdBank` keeps, for each ``source_id``, a ring buffer of that source's recent
normal scores and the threshold derived from it; a global fallback computed once from the
bundle's reference errors serves sources that have not yet seen ``min_samples`` normal windows.
Pure: numpy, pydantic and orjson; time comes in as ``now_ms``.

Methods (``ThresholdConfig.method``):

* ``static``: the bundle's recommended threshold, never recalibrated.
* ``quantile``: the ``1 - target_far`` quantile of the source's normal scores, read off the
  window when it can be, otherwise off an exponential tail fitted above the window's top
  ``tail_fraction`` (:func:`detector.spot.estimate_threshold`).
* ``spot``: peaks over threshold with a generalised Pareto tail (SPOT), which extrapolates to
  rates a window cannot resolve empirically (1e-3, 1e-4).

What enters the window (``update``), and why:

* Nothing while the source has an open alert episode: the threshold is frozen and a long
  incident cannot raise the bar. (The flagged window that *opens* an episode is the exception
  below, whichever convention the caller uses for ``episode_open`` on that window.)
* An unflagged window enters with its score.
* A flagged window outside an episode (or opening one) enters *censored*: as "above the
  threshold in force", its score forgotten (stored as minus that threshold). Dropping it would
  censor the top ``target_far`` of the normal errors, so each recalibration would sit lower, flag
  more, and the threshold would walk down without end (``test_threshold_calibration.py`` shows
  it); keeping its score would let anomalies just above the bar raise it, then catch more of
  them (measured: 5% anomalies at 1-3x the bar ran it away to 2.5x). The count keeps the rate
  right; the contamination guard of :func:`~detector.spot.estimate_threshold` stops anomalies
  that inflate the count from raising the bar, because the tail it then relies on is fitted to
  unflagged scores only (and calibrated once on the bundle's reference, :func:`guard_bias`).

Recalibration is count-based (every ``recalibrate_every`` windows that entered, the first after
``min_samples``) so the same stream gives the same thresholds however it was batched, provided
the caller judges each window with :meth:`ThresholdBank.get` just before its ``update`` (not once
per batch). Each step is bounded by ``max_step_ratio``; changes under ``min_change_ratio`` are
not applied; while a source's window is not yet full the bundle's reference tops it up with
``prior_weight`` points (the warm start). Every change emits
:class:`~detector.events.ThresholdRecalibrated` (old, new, estimate, estimator path, samples).

Memory: one float32 ring of ``window`` entries per source, at most ``max_sources`` sources
(least recently updated evicted): 20 KB per source and 200 MB at the defaults' worst case.
Rings grow on demand, so quiet sources cost less.

Drift: every ``drift_check_every`` accepted windows the newest ``drift_recent`` scores are tested
against the older rest of the window (KS or PSI, :mod:`detector.drift`) at the per-test level
that keeps the expected false detections within ``drift_false_alarms_per_million``, on normal
scores only, both parts cut at the lowest threshold either faced (so neither anomalies nor a
moving threshold look like drift). A detection
emits :class:`~detector.events.DriftDetected` once, drops the scores before the estimated change
point and recalibrates at once; the detector re-arms only after a test finds no difference
(p >= ``drift_rearm_p``), so a step change is reported once, not once per window. A threshold
beyond ``retrain_ratio`` times (or below its inverse) the bundle's emits
:class:`~detector.events.RetrainRecommended`, again once until it comes back within
``retrain_rearm_ratio``.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bank = ThresholdBank(ThresholdConfig(min_samples=200), rng.gamma(8, size=2000), 15.5)
    >>> bank.get("pump-1").scope
    'global'
    >>> for i, s in enumerate(rng.gamma(8, size=300)):
    ...     ev = bank.update("pump-1", float(s), i, flagged=s > bank.value("pump-1"),
    ...                      episode_open=False)
    >>> info = bank.get("pump-1")
    >>> info.scope, info.method, 13 < info.value < 18
    ('source', 'quantile', True)
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from detector.drift import change_point, drift_test, per_test_alpha
from detector.errors import ConfigError, DetectorError
from detector.events import DriftDetected, Event, RetrainRecommended, ThresholdRecalibrated
from detector.spot import (
    TailEstimate,
    empirical_quantile,
    estimate_threshold,
    guard_bias,
    spot_quantile,
)

__all__ = [
    "SNAPSHOT_VERSION",
    "SourceStats",
    "ThresholdBank",
    "ThresholdConfig",
    "ThresholdInfo",
    "ThresholdStateError",
]

SNAPSHOT_VERSION = 1
_MAGIC = b"THRS"
_PREFIX = struct.Struct("<4sBI")  # magic, version, header length
_MIN_KEEP_AFTER_DRIFT = 100

Method = Literal["static", "quantile", "spot"]


class ThresholdStateError(DetectorError):
    """A threshold snapshot that cannot be restored (corrupt, another version or model)."""


class ThresholdConfig(BaseModel):
    """Threshold settings (nested in the detector's settings as ``DETECTOR_THRESHOLD__*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = Field("quantile", description="'static', 'quantile' or 'spot'.")
    target_far: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="Promised false-alarm rate: share of normal windows flagged.",
    )
    window: int = Field(
        5000, ge=100, le=1_000_000, description="Normal scores kept per source (ring buffer)."
    )
    min_samples: int = Field(
        500, ge=20, description="A source's own normal windows before its first own threshold."
    )
    recalibrate_every: int = Field(
        100, ge=1, description="Accepted windows between recalibrations."
    )
    max_step_ratio: float = Field(
        1.25, gt=1.0, description="One recalibration moves the threshold at most by this factor."
    )
    min_change_ratio: float = Field(
        0.01,
        ge=0.0,
        lt=0.5,
        description="Relative changes smaller than this are not applied (fewer events).",
    )
    prior_weight: int = Field(
        500, ge=0, description="Bundle reference points topping up a source's window (warm start)."
    )
    max_sources: int = Field(10_000, ge=1, description="Sources kept; least recently used evicted.")
    tail_fraction: float = Field(
        0.02,
        gt=0,
        lt=0.5,
        description="Share of the window above the tail anchor (raised to 3 x target_far).",
    )
    min_peaks: int = Field(
        30, ge=5, description="SPOT: fewer excesses fit an exponential tail instead of a GPD."
    )
    contamination_slack: float = Field(
        1.5,
        ge=1.0,
        description="Censored counts beyond this times the unflagged-tail prediction are "
        "taken as anomalies and not allowed to raise the threshold.",
    )
    drift_statistic: Literal["ks", "psi", "off"] = "ks"
    drift_recent: int = Field(1000, ge=50, description="Newest scores compared with the rest.")
    drift_reference_min: int = Field(
        1000, ge=50, description="Older scores needed in the window before testing."
    )
    drift_check_every: int = Field(500, ge=1, description="Accepted windows between drift tests.")
    drift_false_alarms_per_million: float = Field(
        1.0, gt=0, description="Budget: expected false drift detections per source per 1e6 windows."
    )
    drift_rearm_p: float = Field(
        0.05, gt=0, lt=1, description="After a detection, re-arm once a test has p >= this."
    )
    psi_bins: int = Field(10, ge=2, le=100)
    retrain_ratio: float = Field(
        3.0,
        gt=1.0,
        description="Threshold beyond this factor of the bundle's: recommend retraining.",
    )
    retrain_rearm_ratio: float = Field(
        2.0, gt=1.0, description="Re-arm the retrain advice once back within this factor."
    )

    @model_validator(mode="after")
    def _check(self) -> ThresholdConfig:
        if self.min_samples > self.window:
            raise ValueError("min_samples must not exceed window")
        if self.drift_statistic != "off" and self.drift_recent + self.drift_reference_min > (
            self.window
        ):
            raise ValueError("drift_recent + drift_reference_min must not exceed window")
        if self.retrain_rearm_ratio > self.retrain_ratio:
            raise ValueError("retrain_rearm_ratio must not exceed retrain_ratio")
        if self.method == "quantile" and self.window * self.target_far < 5:
            raise ValueError(
                "window * target_far < 5: an empirical quantile cannot resolve that rate; "
                "use method='spot' or a larger window"
            )
        if self.drift_statistic != "off" and self.drift_alpha >= self.drift_rearm_p:
            raise ValueError("the per-test drift level must be below drift_rearm_p")
        return self

    @property
    def drift_alpha(self) -> float:
        """Per-test level of the drift test (from the false-alarm budget)."""
        return per_test_alpha(self.drift_false_alarms_per_million, self.drift_check_every)


@dataclass(frozen=True, slots=True)
class ThresholdInfo:
    """The threshold in force for a source and how it was set (alerts carry this).

    Attributes:
        value: flag a window when its score is above this.
        method: ``"static"``, ``"quantile"`` or ``"spot"``.
        target_far: the false-alarm rate it was calibrated for.
        samples_used: the source's own windows in the reference it was computed from,
            censored (flagged) ones included (for the global fallback: the bundle's reference
            sample size).
        set_at_ms: event time of the window that set it; None for the global fallback.
        scope: ``"source"`` (the source's own) or ``"global"`` (the bundle warm start).
    """

    value: float
    method: str
    target_far: float
    samples_used: int
    set_at_ms: int | None
    scope: Literal["source", "global"]


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Counters and gauges of one source, for metrics and health checks.

    Counters are cumulative since the source was created (or restored with them); event
    times are the windows' (ms).

    Attributes:
        threshold, scope, method, target_far: the threshold in force (see ThresholdInfo).
        flag_rate: realised share of windows flagged outside episodes, exponentially
            weighted with a half-life of ``window`` windows: compare with ``target_far``.
        seen: windows offered to :meth:`ThresholdBank.update`.
        flagged: of which flagged.
        accepted: of which entered the reference (scores and censored ones).
        excluded_episode: of which left out because an episode was open.
        censored: of which entered censored (flagged, outside or opening an episode).
        window_censored: censored entries in the reference now.
        last_estimator: path of the last estimate: ``empirical``, ``tail`` or ``guarded``
            (flagged windows outnumbered what normal data would give: anomalies).
        expected_censored: the guard's prediction at the last estimate.
        invalid: NaN, infinite or negative scores ignored.
        window_n: entries in the reference now (<= ``window``).
        recalibrations: estimates made (changes are fewer: bounded, with a dead band).
        set_at_ms: when the value in force was set; None while on the global fallback.
        calibrated_at_ms: when it was last re-estimated (changed or not).
        last_seen_ms: the newest window's time.
        calibration_age_ms: ``last_seen_ms - set_at_ms``, or None.
        drift_armed: False between a detection and the test that re-arms it.
        drift_statistic, drift_p_value: the last drift test's.
        drift_detections: DriftDetected events emitted.
        retrain_armed: False after a RetrainRecommended until the ratio comes back.
    """

    source_id: str
    threshold: float
    scope: str
    method: str
    target_far: float
    flag_rate: float
    seen: int
    flagged: int
    accepted: int
    excluded_episode: int
    censored: int
    window_censored: int
    last_estimator: str | None
    expected_censored: float | None
    invalid: int
    window_n: int
    recalibrations: int
    set_at_ms: int | None
    calibrated_at_ms: int | None
    last_seen_ms: int | None
    calibration_age_ms: int | None
    drift_armed: bool
    drift_statistic: float | None
    drift_p_value: float | None
    drift_detections: int
    retrain_armed: bool


class _State:
    """Mutable per-source state. Every field is in the snapshot."""

    __slots__ = (
        "accepted", "buf", "calibrated_at_ms", "censored", "drift_armed", "drift_detections",
        "drift_p", "drift_value", "excl_episode", "expected_censored", "flag_ewma", "flagged",
        "info", "invalid", "last_ms", "last_path", "n", "own", "pos", "prev_flagged",
        "prev_open", "recals", "retrain_armed", "seen", "since_drift", "since_recal", "value",
        "warm",
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


# _State fields persisted as they are (buf, n, pos and info are handled separately).
_PERSISTED = (
    "value", "own", "warm", "seen", "flagged", "accepted", "excl_episode", "censored",
    "last_path", "expected_censored",
    "invalid", "since_recal", "since_drift", "recals", "prev_open", "prev_flagged", "flag_ewma",
    "last_ms", "calibrated_at_ms", "drift_armed", "drift_value", "drift_p", "drift_detections",
    "retrain_armed",
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


class ThresholdBank:
    """Thresholds for many sources, learnt from their normal scores.

    Call :meth:`get` (or :meth:`value`) to judge a window, then :meth:`update` with the verdict,
    for every scored window in stream order per source. Not thread-safe.

    Args:
        config: the settings.
        reference_scores: the bundle's held-out normal scores (``reference_errors.sample``).
        recommended: the bundle's recommended threshold (``threshold.value``).

    Raises:
        ConfigError: ``recommended`` is not a positive finite number, or the reference holds
            non-finite values.
    """

    def __init__(
        self, config: ThresholdConfig, reference_scores: npt.ArrayLike, recommended: float
    ) -> None:
        ref = np.asarray(reference_scores, dtype=np.float64).ravel()
        if not (math.isfinite(recommended) and recommended > 0):
            raise ConfigError(f"the recommended threshold must be positive, got {recommended}")
        if not np.all(np.isfinite(ref)):
            raise ConfigError("the reference scores hold NaN or infinite values")
        self.config = config
        self._ref_sorted = np.sort(ref)
        digest = hashlib.sha256(self._ref_sorted.tobytes())
        digest.update(struct.pack("<d", recommended))
        self._fingerprint = digest.hexdigest()[:16]
        self._recommended = float(recommended)
        self._global = self._global_info(ref)
        self._guard_bias = guard_bias(ref, config.target_far)
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._dirty: set[str] = set()
        self._evictions = 0
        self._ewma_k = 1.0 - 0.5 ** (1.0 / config.window)  # half-life: one window
        self._alpha = config.drift_alpha
        self._capacity0 = min(256, config.window)
        # hot-path copies of settings (attribute look-ups on the pydantic model cost more)
        self._window = config.window
        self._recal_every = config.recalibrate_every
        self._min_samples = config.min_samples
        self._drift_every = config.drift_check_every

    # -- reading ---------------------------------------------------------------------------

    @property
    def global_info(self) -> ThresholdInfo:
        """The fallback for sources without their own threshold yet."""
        return self._global

    @property
    def fingerprint(self) -> str:
        """Identifies the bundle reference; snapshots from another bundle are refused."""
        return self._fingerprint

    @property
    def evictions(self) -> int:
        """Sources evicted by the LRU cap since start."""
        return self._evictions

    def get(self, source_id: str) -> ThresholdInfo:
        """The threshold in force for ``source_id`` (the global fallback until it has its own)."""
        st = self._states.get(source_id)
        if st is None or st.info is None:
            return self._global
        return st.info

    def value(self, source_id: str) -> float:
        """Shortcut for ``get(source_id).value``."""
        st = self._states.get(source_id)
        return self._global.value if st is None else st.value

    def sources(self) -> list[str]:
        """Sources held, least recently updated first."""
        return list(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, source_id: object) -> bool:
        return source_id in self._states

    def stats(self, source_id: str) -> SourceStats:
        """Counters and gauges of a source (``KeyError`` when not held)."""
        st = self._states[source_id]
        info = self.get(source_id)
        age = None
        if st.last_ms is not None and info.set_at_ms is not None:
            age = st.last_ms - info.set_at_ms
        return SourceStats(
            source_id=source_id,
            threshold=info.value,
            scope=info.scope,
            method=info.method,
            target_far=self.config.target_far,
            flag_rate=st.flag_ewma,
            seen=st.seen,
            flagged=st.flagged,
            accepted=st.accepted,
            excluded_episode=st.excl_episode,
            censored=st.censored,
            window_censored=int(np.count_nonzero(st.buf[: st.n] < 0)),
            last_estimator=st.last_path,
            expected_censored=st.expected_censored,
            invalid=st.invalid,
            window_n=st.n,
            recalibrations=st.recals,
            set_at_ms=info.set_at_ms,
            calibrated_at_ms=st.calibrated_at_ms,
            last_seen_ms=st.last_ms,
            calibration_age_ms=age,
            drift_armed=st.drift_armed,
            drift_statistic=st.drift_value,
            drift_p_value=st.drift_p,
            drift_detections=st.drift_detections,
            retrain_armed=st.retrain_armed,
        )

    # -- the hot path ----------------------------------------------------------------------

    def update(
        self, source_id: str, score: float, now_ms: int, *, flagged: bool, episode_open: bool
    ) -> list[Event]:
        """Learn from one scored window (every window, in stream order per source).

        Args:
            source_id: the window's source.
            score: its anomaly score.
            now_ms: its event time (ms); stamps events and the calibration time.
            flagged: whether the detector flagged it (score above :meth:`get`'s value).
            episode_open: whether the source has an open alert episode. A flagged window that
                follows a window neither flagged nor in an episode is treated as the episode's
                opening window (it enters censored), whether the caller reports the episode
                state before or after it.

        Returns:
            Events to publish (usually none).
        """
        states = self._states
        st = states.get(source_id)
        if st is None:
            st = self._new_state(source_id)
        else:
            states.move_to_end(source_id)
        self._dirty.add(source_id)
        st.seen += 1
        st.last_ms = now_ms
        if flagged:
            st.flagged += 1
        opening = flagged and not (st.prev_open or st.prev_flagged)
        st.prev_open = episode_open
        st.prev_flagged = flagged
        if episode_open and not opening:
            st.excl_episode += 1
            return []
        st.flag_ewma += ((1.0 if flagged else 0.0) - st.flag_ewma) * self._ewma_k
        if not score >= 0.0 or score == math.inf:  # NaN, inf, negative: not a score
            st.invalid += 1
            return []
        if flagged:  # censored: "above the threshold in force", stored as minus that value
            st.censored += 1
            score = -min(score, st.value)
        buf = st.buf
        n = st.n
        window = self._window
        if n < window:
            if n == buf.shape[0]:
                grown = np.empty(min(2 * n, window), dtype=np.float32)
                grown[:n] = buf
                st.buf = buf = grown
            buf[n] = score
            st.n = n + 1
            st.pos = (n + 1) % window
        else:
            pos = st.pos
            buf[pos] = score
            st.pos = pos + 1 if pos + 1 < window else 0
        st.accepted += 1
        st.since_recal += 1
        st.since_drift += 1
        if episode_open:  # the opening window: learnt, but the threshold stays frozen
            return []
        due = self._recal_every if st.own else self._min_samples
        if st.since_recal < due and st.since_drift < self._drift_every:
            return []
        return self._maintain(source_id, st, now_ms)

    # -- recalibration and drift -----------------------------------------------------------

    def _maintain(self, source_id: str, st: _State, now_ms: int) -> list[Event]:
        cfg = self.config
        events: list[Event] = []
        if cfg.drift_statistic != "off" and st.since_drift >= cfg.drift_check_every:
            st.since_drift = 0
            if self._check_drift(source_id, st, now_ms, events):
                return events
        due = cfg.recalibrate_every if st.own else cfg.min_samples
        if cfg.method != "static" and st.since_recal >= due:
            self._recalibrate(source_id, st, now_ms, "scheduled" if st.own else "first", events)
        return events

    def _estimate(self, st: _State) -> tuple[TailEstimate, int]:
        cfg = self.config
        data = st.buf[: st.n]
        censored = data < 0
        censor_at = -data[censored]
        uncensored: npt.NDArray[np.floating] = data[~censored]
        prior = 0
        if st.warm and self._ref_sorted.shape[0] and st.n < cfg.window:
            prior = min(cfg.prior_weight, cfg.window - st.n)
            if prior:
                uncensored = np.concatenate([uncensored, self._prior_points(prior)])
        estimate = estimate_threshold(
            uncensored,
            censor_at,
            cfg.target_far,
            tail="gpd" if cfg.method == "spot" else "exponential",
            tail_fraction=cfg.tail_fraction,
            min_peaks=cfg.min_peaks,
            slack=cfg.contamination_slack,
            empirical=cfg.method == "quantile",
            guard_bias=self._guard_bias,
        )
        return estimate, prior

    def _prior_points(self, m: int) -> npt.NDArray[np.float64]:
        """``m`` evenly spaced quantiles of the bundle's reference sample."""
        ref = self._ref_sorted
        positions = (np.arange(m) + 0.5) / m * (ref.shape[0] - 1)
        points: npt.NDArray[np.float64] = np.interp(positions, np.arange(ref.shape[0]), ref)
        return points

    def _recalibrate(
        self, source_id: str, st: _State, now_ms: int, reason: str, events: list[Event]
    ) -> None:
        cfg = self.config
        st.since_recal = 0
        tail, prior = self._estimate(st)
        estimate = tail.value
        st.last_path = tail.path
        st.expected_censored = tail.expected_censored
        if not (math.isfinite(estimate) and estimate > 0):
            return  # degenerate window (e.g. all zeros): keep the threshold in force
        st.recals += 1
        st.calibrated_at_ms = now_ms
        old = st.value
        r = cfg.max_step_ratio
        new = min(max(estimate, old / r), old * r)
        first = not st.own
        if not first and abs(new - old) <= cfg.min_change_ratio * old:
            new = old
        if not first and new == old:
            return
        st.value = new
        st.own = True
        st.info = ThresholdInfo(new, cfg.method, cfg.target_far, st.n, now_ms, "source")
        events.append(
            ThresholdRecalibrated(
                source_id=source_id, at_ms=now_ms, old=old, new=new, method=cfg.method,
                target_far=cfg.target_far, samples_used=st.n, reason=reason,
                estimate=estimate, prior_samples=prior, estimator=tail.path,
                censored=tail.censored,
            )
        )  # fmt: skip
        self._check_retrain(source_id, st, now_ms, events)

    def _check_retrain(self, source_id: str, st: _State, now_ms: int, events: list[Event]) -> None:
        cfg = self.config
        ratio = st.value / self._global.value
        if st.retrain_armed and not 1.0 / cfg.retrain_ratio <= ratio <= cfg.retrain_ratio:
            st.retrain_armed = False
            events.append(
                RetrainRecommended(
                    source_id=source_id, at_ms=now_ms, reason="threshold_ratio",
                    statistic="threshold_ratio", value=ratio,
                    limit=cfg.retrain_ratio if ratio > 1 else 1.0 / cfg.retrain_ratio,
                    threshold=st.value, bundle_threshold=self._global.value,
                )
            )  # fmt: skip
        elif not st.retrain_armed and (
            1.0 / cfg.retrain_rearm_ratio <= ratio <= cfg.retrain_rearm_ratio
        ):
            st.retrain_armed = True

    def _chronological(self, st: _State) -> npt.NDArray[np.float32]:
        if st.n < self.config.window:
            return st.buf[: st.n]
        return np.concatenate([st.buf[st.pos :], st.buf[: st.pos]])

    def _check_drift(self, source_id: str, st: _State, now_ms: int, events: list[Event]) -> bool:
        """Run one drift test; True when it detected a shift (and recalibrated)."""
        cfg = self.config
        statistic = cfg.drift_statistic
        if statistic == "off" or st.n < cfg.drift_recent + cfg.drift_reference_min:
            return False
        scores = self._chronological(st)
        recent = scores[-cfg.drift_recent :]
        # Normal scores only, all cut at the lowest threshold any of them faced: censored
        # entries (flagged windows) must not make a drift, and neither must a threshold that
        # moved (scores between two thresholds are kept in one part and censored in the other).
        censored = scores < 0
        cut = float(-scores[censored].max()) if censored.any() else math.inf
        older = scores[: -cfg.drift_recent]
        older_normal = older[(older >= 0) & (older <= cut)]
        recent_normal = recent[(recent >= 0) & (recent <= cut)]
        if recent_normal.shape[0] < 50 or older_normal.shape[0] < 50:
            return False
        result = drift_test(older_normal, recent_normal, statistic, bins=cfg.psi_bins)
        st.drift_value = result.value
        st.drift_p = result.p_value
        if not st.drift_armed:
            if result.p_value >= cfg.drift_rearm_p:
                st.drift_armed = True
            return False
        if result.p_value >= self._alpha:
            return False
        st.drift_armed = False
        st.drift_detections += 1
        events.append(
            DriftDetected(
                source_id=source_id, at_ms=now_ms, statistic=statistic, value=result.value,
                p_value=result.p_value, alpha=self._alpha, reference_n=result.reference_n,
                recent_n=result.recent_n,
            )
        )  # fmt: skip
        # Keep only the scores after the estimated change point, so that the threshold follows
        # the new level now and the next tests compare post-shift data with itself.
        ranked = np.where(recent < 0, np.inf, recent)  # a censored entry is above the rest
        start = min(change_point(ranked), cfg.drift_recent - _MIN_KEEP_AFTER_DRIFT)
        kept = recent[start:]
        fresh = np.empty(max(st.buf.shape[0], kept.shape[0]), dtype=np.float32)
        fresh[: kept.shape[0]] = kept
        st.buf = fresh
        st.n = kept.shape[0]
        st.pos = st.n % cfg.window
        st.warm = False
        if cfg.method != "static" and st.own:
            self._recalibrate(source_id, st, now_ms, "drift", events)
        return True

    # -- source lifecycle ------------------------------------------------------------------

    def _new_state(self, source_id: str) -> _State:
        st = _State(self._global.value, self._capacity0)
        self._states[source_id] = st
        while len(self._states) > self.config.max_sources:
            evicted, _ = self._states.popitem(last=False)
            self._dirty.discard(evicted)
            self._evictions += 1
        return st

    def drop(self, source_ids: Iterable[str]) -> None:
        """Forget sources (e.g. their partitions were revoked); unknown ids are ignored."""
        for source_id in source_ids:
            self._states.pop(source_id, None)
            self._dirty.discard(source_id)

    def dirty(self) -> set[str]:
        """Sources updated or restored since :meth:`clear_dirty` (a copy)."""
        return set(self._dirty)

    def clear_dirty(self) -> None:
        """Mark every source as persisted."""
        self._dirty.clear()

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self, source_id: str) -> bytes:
        """Compact state of one source for a compacted topic (``KeyError`` when not held).

        Layout: ``b"THRS"``, format version (u8), header length (u32 LE), JSON header, then the
        window's entries as float32 LE in ring-buffer order (``pos`` in the header is the
        oldest once the ring is full), so that a restored bank computes bit for bit what the
        original would have. Negative entries are censored: "above minus this".
        """
        st = self._states[source_id]
        info = st.info
        header: dict[str, object] = {name: getattr(st, name) for name in _PERSISTED}
        header.update(
            fingerprint=self._fingerprint,
            source_id=source_id,
            n=st.n,
            pos=st.pos,
            method=info.method if info else self._global.method,
            target_far=info.target_far if info else self.config.target_far,
            samples_used=info.samples_used if info else 0,
            set_at_ms=info.set_at_ms if info else None,
        )
        head = orjson.dumps(header)
        body = st.buf[: st.n].astype("<f4", copy=False).tobytes()
        return _PREFIX.pack(_MAGIC, SNAPSHOT_VERSION, len(head)) + head + body

    def restore(self, source_id: str, data: bytes) -> None:
        """Replace ``source_id``'s state with a snapshot taken by :meth:`snapshot`.

        A snapshot taken with another ``window`` keeps its newest scores; one taken with another
        method or target rate keeps its scores and recalibrates at the next accepted window.

        Raises:
            ThresholdStateError: the bytes are not a snapshot, are truncated or corrupt, have
                another format version, belong to another source, or were taken against
                another bundle reference (their thresholds mean nothing for this model). The
                bank is unchanged when this is raised.
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
        if header.fingerprint != self._fingerprint:
            raise ThresholdStateError(
                f"{source_id}: snapshot taken against another bundle reference "
                f"({header.fingerprint}, this bank {self._fingerprint}); start fresh"
            )
        body = data[head_end:]
        if len(body) != 4 * header.n:
            raise ThresholdStateError(
                f"{source_id}: snapshot holds {len(body)} bytes of scores, header says {header.n}"
            )
        scores = np.frombuffer(body, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(scores)):
            raise ThresholdStateError(f"{source_id}: snapshot scores hold NaN or inf")
        self._install(source_id, header, scores)

    def _install(self, source_id: str, h: _SnapshotHeader, scores: npt.NDArray[np.float32]) -> None:
        cfg = self.config
        st = _State(h.value, max(self._capacity0, scores.shape[0]))
        if scores.shape[0] == cfg.window and h.pos < cfg.window:
            st.buf[:] = scores  # same ring: same layout, same arithmetic
            st.n, st.pos = cfg.window, h.pos
        else:  # another window size: oldest first, keep the newest
            if h.pos and h.pos < scores.shape[0]:
                scores = np.concatenate([scores[h.pos :], scores[: h.pos]])
            scores = scores[-cfg.window :]
            st.buf[: scores.shape[0]] = scores
            st.n = int(scores.shape[0])
            st.pos = st.n % cfg.window
        for name in _PERSISTED:
            setattr(st, name, getattr(h, name))
        if h.own:
            st.info = ThresholdInfo(
                h.value, h.method, h.target_far, h.samples_used, h.set_at_ms, "source"
            )
        else:
            st.value = self._global.value
        if cfg.method == "static":
            st.own, st.info, st.value = False, None, self._global.value
        elif h.own and (h.method != cfg.method or h.target_far != cfg.target_far):
            st.since_recal = cfg.recalibrate_every  # settings changed: recalibrate at once
        self._states.pop(source_id, None)
        self._states[source_id] = st
        while len(self._states) > cfg.max_sources:
            evicted, _ = self._states.popitem(last=False)
            self._dirty.discard(evicted)
            self._evictions += 1
        self._dirty.discard(source_id)

    # -- the global fallback ---------------------------------------------------------------

    def _global_info(self, ref: npt.NDArray[np.float64]) -> ThresholdInfo:
        cfg = self.config
        static = ThresholdInfo(self._recommended, "static", cfg.target_far, ref.shape[0], None,
                               "global")  # fmt: skip
        if cfg.method == "static" or ref.shape[0] == 0:
            return static
        if cfg.method == "quantile":
            if ref.shape[0] * cfg.target_far < 5:
                return static  # too few reference scores to resolve the rate
            value = empirical_quantile(ref, 1.0 - cfg.target_far)
        else:
            value = spot_quantile(ref, cfg.target_far, cfg.tail_fraction, cfg.min_peaks).value
        if not (math.isfinite(value) and value > 0):
            return static
        return ThresholdInfo(value, cfg.method, cfg.target_far, ref.shape[0], None, "global")
