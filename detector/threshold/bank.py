"""Per-source adaptive thresholds calibrated to a target false-alarm rate.

A :class:`ThresholdBank` keeps, for each ``source_id``, a ring buffer of that source's recent
normal scores and the threshold derived from it; a global fallback computed once from the
bundle's reference errors serves sources that have not yet seen ``min_samples`` normal windows.
Pure: numpy, pydantic and orjson; time comes in as ``now_ms``. The settings and value types
(:class:`ThresholdConfig`, :class:`ThresholdInfo`, :class:`SourceStats`) live in
:mod:`detector.threshold.types`, the per-source state and its snapshot format in
:mod:`detector.threshold.state`; this module re-exports their public names.

Methods (``ThresholdConfig.method``):

* ``static``: the bundle's recommended threshold, never recalibrated.
* ``quantile``: the ``1 - target_far`` quantile of the source's normal scores, read off the
  window when it can be, otherwise off an exponential tail fitted above the window's top
  ``tail_fraction`` (:func:`detector.threshold.tails.estimate_threshold`).
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
  right; the contamination guard of :func:`~detector.threshold.tails.estimate_threshold`
  stops anomalies that inflate the count from raising the bar, because the tail it then relies
  on is fitted to unflagged scores only (and calibrated once on the bundle's reference,
  :func:`guard_bias`).

The guard cannot tell anomalies from an upward drift of the normal scores by counts alone: under
drift its tail model is fitted mostly to older, lower scores, so it takes the excess for
anomalies and lowers the bar while the realised rate climbs. What tells them apart is the bulk:
anomalies add a tail, drift moves the bulk. So each recalibration first rank-tests the newest
``shift_recent`` entries (at most half the window) against the older rest, both cut at the
lowest threshold either faced (no flagged window counts, as in the drift test below; a one-sided
Mann-Whitney z-score, :func:`~detector.threshold.drift.rank_shift_z`). Above ``shift_z`` the
bulk has moved up: the threshold is estimated from the newest entries alone, their flagged
count trusted (no guard) and the warm-start prior dropped; the estimator path is then prefixed
``recent-``. So is the recalibration that follows a drift detection (the kept scores are all
post-change). Otherwise the estimate is exactly as described above.

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
against the older rest of the window (KS or PSI, :mod:`detector.threshold.drift`) at the
per-test level that keeps the expected false detections within
``drift_false_alarms_per_million``, on normal scores only, both parts cut at the lowest threshold
either faced (so neither anomalies nor a moving threshold look like drift). A detection
emits :class:`~detector.events.DriftDetected` once, drops the scores before the estimated change
point and recalibrates at once; the detector re-arms only after a test finds no difference
(p >= ``drift_rearm_p``), so a step change is reported once, not once per window. A threshold
beyond ``retrain_ratio`` times (or below its inverse) the bundle's emits
:class:`~detector.events.RetrainRecommended`, again once until it comes back within
``retrain_rearm_ratio``.

Why one module of ~600 lines: :class:`ThresholdBank` is the only owner of a source's
threshold state. Learning, recalibration, the drift and retrain checks, eviction and the
snapshots all read and write the same :class:`~detector.threshold.state.SourceState` under
invariants (normal scores only, the dirty set, held sources) that hold because one class
changes it. What can stand alone already does: the estimators (:mod:`detector.threshold.tails`,
:mod:`detector.threshold.adaptive`), the tests (:mod:`detector.threshold.drift`), the value types
(:mod:`detector.threshold.types`) and the snapshot codec (:mod:`detector.threshold.state`).

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bank = ThresholdBank(ThresholdConfig(), rng.gamma(8, size=2000), 16.0)
    >>> bank.get("pump-1").scope
    'global'
    >>> flags = 0
    >>> for i, s in enumerate(rng.gamma(8, size=5000)):
    ...     flagged = bool(s > bank.value("pump-1"))
    ...     flags += flagged
    ...     ev = bank.update("pump-1", float(s), i, flagged=flagged, episode_open=False)
    >>> info = bank.get("pump-1")
    >>> info.scope, info.method, 0.005 < flags / 5000 < 0.02  # realised rate near 1%
    ('source', 'adaptive', True)
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from detector.errors import ConfigError
from detector.events import DriftDetected, Event, RetrainRecommended, ThresholdRecalibrated
from detector.threshold.adaptive import AdaptiveLevel, adaptive_value, log_level, reference_tail
from detector.threshold.drift import change_point, drift_test, rank_shift_z
from detector.threshold.state import (
    SNAPSHOT_VERSION,
    SourceState,
    decode_snapshot,
    encode_snapshot,
)
from detector.threshold.tails import (
    TailEstimate,
    empirical_quantile,
    estimate_threshold,
    guard_bias,
    spot_quantile,
)
from detector.threshold.types import SourceStats, ThresholdConfig, ThresholdInfo

__all__ = [
    "SNAPSHOT_VERSION",
    "SourceStats",
    "ThresholdBank",
    "ThresholdConfig",
    "ThresholdInfo",
]

_MIN_KEEP_AFTER_DRIFT = 100
_MIN_SHIFT_PART = 50  # normal entries each part of the bulk-shift comparison needs


class ThresholdBank:
    """Thresholds for many sources, learnt from their normal scores.

    Call :meth:`get` (or :meth:`value`) to judge a window, then :meth:`update` with the verdict,
    for every scored window in stream order per source. Not thread-safe.

    Args:
        config: the settings.
        reference_scores: the bundle's held-out normal scores (``reference_errors.sample``).
        recommended: the bundle's recommended threshold (``threshold.value``).
        recommended_far: the rate it was calibrated for (``threshold.target_far``); when it
            is ``config.target_far`` the adaptive method's tail is anchored on it.

    Raises:
        ConfigError: ``recommended`` is not a positive finite number, or the reference holds
            non-finite values.
    """

    def __init__(
        self,
        config: ThresholdConfig,
        reference_scores: npt.ArrayLike,
        recommended: float,
        recommended_far: float | None = None,
    ) -> None:
        ref = np.asarray(reference_scores, dtype=np.float64).ravel()
        if not (math.isfinite(recommended) and recommended > 0):
            raise ConfigError(f"the recommended threshold must be positive, got {recommended}")
        if not np.all(np.isfinite(ref)):
            raise ConfigError("the reference scores hold NaN or infinite values")
        self.config = config
        self._adaptive: AdaptiveLevel | None = None
        if config.method == "adaptive" and ref.shape[0]:
            anchor = recommended if recommended_far == config.target_far else None
            self._adaptive = AdaptiveLevel(
                config, reference_tail(ref, config.target_far, anchor=anchor)
            )
        self._ref_sorted = np.sort(ref)
        digest = hashlib.sha256(self._ref_sorted.tobytes())
        digest.update(struct.pack("<d", recommended))
        self._fingerprint = digest.hexdigest()[:16]
        self._recommended = float(recommended)
        self._global = self._global_info(ref)
        self._guard_bias = guard_bias(ref, config.target_far)
        self._states: OrderedDict[str, SourceState] = OrderedDict()
        self._dirty: set[str] = set()
        self._evictions = 0
        self._ewma_k = 1.0 - 0.5 ** (1.0 / config.window)  # half-life: one window
        self._alpha = config.drift_alpha
        # hot-path copies of settings (attribute look-ups on the pydantic model cost more)
        self._window = config.level_window if self._adaptive is not None else config.window
        self._capacity0 = min(256, self._window)
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
        return st.stats(source_id, self.get(source_id), self.config.target_far)

    # -- the hot path ----------------------------------------------------------------------

    def update(
        self,
        source_id: str,
        score: float,
        now_ms: int,
        *,
        flagged: bool,
        episode_open: bool,
        shift: bool = False,
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
            shift: the episode that this window closes was declared a sustained shift by the
                lifecycle (``adaptive``: its held-back windows are learnt at once; the other
                methods resume learning, as after any episode).

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
        was_open = st.prev_open
        st.prev_open = episode_open
        st.prev_flagged = flagged
        if self._adaptive is not None:
            events = self._adaptive.update(
                source_id, st, score, now_ms, flagged, episode_open, opening, was_open, shift
            )
            if st.own and events:
                self._check_retrain(source_id, st, now_ms, events)
            return events
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
        st.push(score, self._window)
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

    def _maintain(self, source_id: str, st: SourceState, now_ms: int) -> list[Event]:
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

    def _estimate(
        self, st: SourceState, drifted: bool = False
    ) -> tuple[TailEstimate, int, int, bool]:
        """The estimate, the prior points used, the entries used, and whether it followed a
        bulk shift (estimated from the newest entries alone, without the guard)."""
        cfg = self.config
        recent = st.buf[: st.n] if drifted else self._shifted_recent(st)
        shifted = recent is not None
        if recent is not None:
            data = recent
            st.warm = False  # the bundle's reference is older still than the entries left out
        else:
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
            slack=math.inf if shifted else cfg.contamination_slack,
            empirical=cfg.method == "quantile",
            guard_bias=self._guard_bias,
        )
        return estimate, prior, int(data.shape[0]), shifted

    def _shifted_recent(self, st: SourceState) -> npt.NDArray[np.float32] | None:
        """The newest ``shift_recent`` entries when their bulk sits significantly above the
        older rest's, else None.

        Anomalies add a tail above the threshold (censored entries) but leave the bulk where it
        was; an upward drift of the normal scores moves the bulk. So both parts are cut at the
        lowest threshold any entry faced, as in the drift test (censored entries and scores
        above the cut are left out: no anomaly flagged in either part can count), and the
        Mann-Whitney z-score of the recent part against the older one is compared with
        ``shift_z``. Then the excess of flagged windows is drift, not contamination, and the
        older entries describe a distribution the source has left.
        """
        cfg = self.config
        r = min(cfg.shift_recent, st.n // 2)
        if r < _MIN_SHIFT_PART:
            return None
        scores = st.chronological(cfg.window)
        censored = scores < 0
        cut = float(-scores[censored].max()) if censored.any() else math.inf
        recent = scores[-r:]
        older = scores[:-r]
        older_normal = older[(older >= 0) & (older <= cut)]
        recent_normal = recent[(recent >= 0) & (recent <= cut)]
        if older_normal.shape[0] < _MIN_SHIFT_PART or recent_normal.shape[0] < _MIN_SHIFT_PART:
            return None
        if rank_shift_z(older_normal, recent_normal) <= cfg.shift_z:
            return None
        return recent

    def _prior_points(self, m: int) -> npt.NDArray[np.float64]:
        """``m`` evenly spaced quantiles of the bundle's reference sample."""
        ref = self._ref_sorted
        positions = (np.arange(m) + 0.5) / m * (ref.shape[0] - 1)
        points: npt.NDArray[np.float64] = np.interp(positions, np.arange(ref.shape[0]), ref)
        return points

    def _recalibrate(
        self, source_id: str, st: SourceState, now_ms: int, reason: str, events: list[Event]
    ) -> None:
        cfg = self.config
        st.since_recal = 0
        tail, prior, used, shifted = self._estimate(st, reason == "drift")
        estimate = tail.value
        path = f"recent-{tail.path}" if shifted else tail.path
        st.last_path = path
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
        st.info = ThresholdInfo(new, cfg.method, cfg.target_far, used, now_ms, "source")
        events.append(
            ThresholdRecalibrated(
                source_id=source_id, at_ms=now_ms, old=old, new=new, method=cfg.method,
                target_far=cfg.target_far, samples_used=used, reason=reason,
                estimate=estimate, prior_samples=prior, estimator=path,
                censored=tail.censored,
            )
        )  # fmt: skip
        self._check_retrain(source_id, st, now_ms, events)

    def _check_retrain(
        self, source_id: str, st: SourceState, now_ms: int, events: list[Event]
    ) -> None:
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

    def _check_drift(
        self, source_id: str, st: SourceState, now_ms: int, events: list[Event]
    ) -> bool:
        """Run one drift test; True when it detected a shift (and recalibrated)."""
        cfg = self.config
        statistic = cfg.drift_statistic
        if statistic == "off" or st.n < cfg.drift_recent + cfg.drift_reference_min:
            return False
        scores = st.chronological(cfg.window)
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
        st.keep_only(recent[start:], cfg.window)
        st.warm = False
        if cfg.method != "static" and st.own:
            self._recalibrate(source_id, st, now_ms, "drift", events)
        return True

    # -- source lifecycle ------------------------------------------------------------------

    def _new_state(self, source_id: str) -> SourceState:
        st = SourceState(self._global.value, self._capacity0)
        self._hold(source_id, st)
        return st

    def _hold(self, source_id: str, st: SourceState) -> None:
        """Make ``st`` the newest source's state, evicting the least recently used over the cap."""
        self._states.pop(source_id, None)
        self._states[source_id] = st
        while len(self._states) > self.config.max_sources:
            evicted, _ = self._states.popitem(last=False)
            self._dirty.discard(evicted)
            self._evictions += 1

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

        The format (:mod:`detector.threshold.state`) holds the window in ring-buffer order, so
        that a restored bank computes bit for bit what the original would have.
        """
        return encode_snapshot(
            source_id,
            self._states[source_id],
            fingerprint=self._fingerprint,
            method=self._global.method,
            target_far=self.config.target_far,
        )

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
        cfg = self.config
        st = decode_snapshot(
            source_id,
            data,
            fingerprint=self._fingerprint,
            window=self._window,
            capacity=self._capacity0,
        )
        info = st.info  # set when the snapshot's threshold was the source's own
        if info is None:
            st.value = self._global.value
        if cfg.method == "static":
            st.own, st.info, st.value = False, None, self._global.value
        elif info is not None and (info.method != cfg.method or info.target_far != cfg.target_far):
            st.since_recal = cfg.recalibrate_every  # settings changed: recalibrate at once
            if (info.method == "adaptive") != (cfg.method == "adaptive"):
                # the other family's ring means something else (censored entries, or none):
                # keep only plain scores, and start the source's own threshold afresh
                plain = st.chronological(self._window)
                st.keep_only(plain[plain >= 0], self._window)
                st.own, st.info, st.value = False, None, self._global.value
                st.pending, st.errs, st.counted, st.ep_spent, st.margin = [], 0, 0, 0, 1.0
        self._hold(source_id, st)
        self._dirty.discard(source_id)

    # -- the global fallback ---------------------------------------------------------------

    def _global_info(self, ref: npt.NDArray[np.float64]) -> ThresholdInfo:
        cfg = self.config
        static = ThresholdInfo(self._recommended, "static", cfg.target_far, ref.shape[0], None,
                               "global")  # fmt: skip
        if cfg.method == "static" or ref.shape[0] == 0:
            return static
        if self._adaptive is not None:  # the same formula as a source's, at the reference level
            level, spread = log_level(ref)
            value = adaptive_value(level, spread, 1.0, self._adaptive.tail)
            return ThresholdInfo(value, "adaptive", cfg.target_far, ref.shape[0], None, "global")
        if cfg.method == "quantile":
            if ref.shape[0] * cfg.target_far < 5:
                return static  # too few reference scores to resolve the rate
            value = empirical_quantile(ref, 1.0 - cfg.target_far)
        else:
            value = spot_quantile(ref, cfg.target_far, cfg.tail_fraction, cfg.min_peaks).value
        if not (math.isfinite(value) and value > 0):
            return static
        return ThresholdInfo(value, cfg.method, cfg.target_far, ref.shape[0], None, "global")
