"""The ``adaptive`` threshold: a source's own score level, the bundle's tail, a kept promise.

Why not a quantile of the source's own scores: a 1% quantile needs hundreds of normal windows
before it means anything, so on a short or drifting stream a source sits on the bundle's
threshold for most of its life; and the windows it flags must be left out of what it learns
(or anomalies raise the bar), which censors the top of the distribution and walks the
threshold down (the *downward ratchet*). On real recordings whose normal behaviour drifts from
the training rows that failed both ways (``issues show 13``).

What this method does instead, per source (all in log-score space, where a drift that scales
the reconstruction errors is a shift):

1. **Level and spread from the bulk.** The median and the IQR of the newest ``level_window``
   learnt log-scores. The bulk is learnt from tens of windows, and a few percent of anomalies
   hardly move it (no censoring needed, so no ratchet).
2. **Tail shape from the bundle.** ``k``: how far above the bundle's held-out normal
   log-scores' median the training-calibrated threshold sits (for the bundle's own target
   rate; for another rate, the ``1 - target_far`` quantile of those log-scores), in units of
   their spread (IQR). That sample is large and clean; the stream's own is neither. Where it
   cannot resolve the rate (fewer than 5 expected exceedances) an exponential tail fitted to
   its top is extrapolated.
3. **The promise kept online.** ``threshold = exp(level + margin * k * spread)``. ``margin``
   starts at 1 and is corrected at every recalibration by the realised flag rate since the
   last one, ``margin *= exp(margin_rate * (flags - target_far * windows))``: an online,
   bounded version of adaptive conformal inference (Gibbs and Candes, NeurIPS 2021), whose
   long-run flag rate equals the target whatever the data does, as long as the margin stays
   inside ``margin_bounds``. Windows of an open episode count only up to
   ``margin_episode_budget`` flags (the *alert budget* of one episode), so one long real
   incident cannot push the bar up for the rest of the stream. The loop cannot tell an
   incident from a false alarm: incidents spend the same budget, so where they are about as
   frequent as the target rate the realised rate on normal windows ends up below the target
   (the detector is then stricter than promised, never looser).
4. **What is learnt.** Every window outside an episode. Windows inside an episode are held
   back: when the episode resolves, its unflagged windows are learnt and its flagged ones
   forgotten (an incident teaches nothing about normal); when the lifecycle declares it a
   sustained shift (``DETECTOR_LIFECYCLE__SHIFT_AFTER_WINDOWS``), they replace what was
   learnt before (the old level is gone; keeping it would leave the median where it was and
   open the next episode at once) and the level is recomputed from them. Learning therefore
   pauses during an incident but never for longer than that setting: no freeze deadlock.

The threshold changes only at a recalibration (every ``level_every`` learnt windows, or at a
sustained shift), and only by more than ``min_change_ratio``: the same stream gives the same
thresholds however it is batched. :class:`AdaptiveLevel` does all this on a source's
:class:`~detector.threshold.state.SourceState` for the bank. Pure: numpy, pydantic and the
standard library.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tail = reference_tail(rng.gamma(8, size=2000), 0.01)
    >>> round(tail.k, 2) > 0
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.errors import BundleError
from detector.events import Event, ThresholdRecalibrated
from detector.threshold.state import SourceState
from detector.threshold.types import ThresholdConfig, ThresholdInfo

__all__ = [
    "IQR_SCALE",
    "AdaptiveLevel",
    "ReferenceTail",
    "adaptive_value",
    "log_level",
    "reference_tail",
]

IQR_SCALE = 1.349  # a normal sample's interquartile range over its standard deviation
_FLOOR = 1e-30  # scores are clamped here before the log (a perfect reconstruction scores 0)
_MIN_RESOLVED = 5  # expected reference exceedances needed to read the quantile off the sample
_SPREAD_FLOOR = 0.1  # a source's spread never goes below this share of the reference's


@dataclass(frozen=True, slots=True)
class ReferenceTail:
    """The bundle's normal tail, standardised.

    Attributes:
        k: the ``1 - q`` quantile of the standardised reference log-scores.
        spread: the reference log-scores' scaled IQR (the floor of a source's spread is a
            share of it).
        resolved: False when the reference is too small to read the rate off the sample
            (an exponential tail was extrapolated instead).
    """

    k: float
    spread: float
    resolved: bool


def _logs(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    x = np.asarray(scores, dtype=np.float64)
    logs: npt.NDArray[np.float64] = np.log(np.maximum(x, _FLOOR))
    return logs


def log_level(scores: npt.ArrayLike) -> tuple[float, float]:
    """Median and spread of the log-scores: the median, and the interquartile range scaled to
    a normal sample's standard deviation (IQR / 1.349).

    Both come from three order statistics of the scores themselves (the log is monotonic),
    found by one partial sort: a few microseconds for a ring of a thousand, where a log of
    every score and two full medians cost a hundred.

    >>> m, d = log_level([1.0, np.e, np.e ** 2, np.e ** 3, np.e ** 4])
    >>> round(m, 6), round(d, 4)
    (2.0, 1.4826)
    """
    x = np.asarray(scores)
    n = int(x.shape[0])
    ks = [(n - 1) // 4, (n - 1) // 2, (3 * (n - 1)) // 4]
    part = np.partition(x, ks)
    lo, mid, hi = (math.log(max(float(part[k]), _FLOOR)) for k in ks)
    return mid, (hi - lo) / IQR_SCALE


def reference_tail(
    reference: npt.ArrayLike, q: float, anchor: float | None = None
) -> ReferenceTail:
    """Standardise the bundle's reference scores and read the ``1 - q`` quantile off them.

    With ``anchor`` (the bundle's recommended threshold, calibrated by training for this
    same rate) the quantile is that value, standardised: the adaptive threshold then starts
    exactly where training put it. Otherwise, with fewer than ``5 / q`` reference scores the
    quantile is extrapolated from an exponential tail fitted to the top 10% of the
    standardised sample (its mean excess).
    """
    logs = _logs(reference)
    if logs.shape[0] == 0:
        raise BundleError("the bundle holds no reference scores")
    med, spread = log_level(np.exp(logs))
    if not spread > 0:
        spread = max(float(np.std(logs)), 1e-6)
    z = np.sort((logs - med) / spread)
    n = z.shape[0]
    if anchor is not None and math.isfinite(anchor) and anchor > 0:
        return ReferenceTail((math.log(anchor) - med) / spread, spread, n * q >= _MIN_RESOLVED)
    if n * q >= _MIN_RESOLVED:
        return ReferenceTail(float(np.quantile(z, 1.0 - q)), spread, True)
    top = max(2, n // 10)
    anchor = float(z[-top])
    excess = float(np.mean(z[-top + 1 :] - anchor)) if top > 1 else 1.0
    p_anchor = top / n
    k = anchor + max(excess, 1e-6) * math.log(p_anchor / q) if q < p_anchor else anchor
    return ReferenceTail(k, spread, False)


def adaptive_value(level: float, spread: float, margin: float, tail: ReferenceTail) -> float:
    """The threshold for a source's level, spread and margin (spread floored, see above).

    >>> tail = ReferenceTail(k=2.0, spread=1.0, resolved=True)
    >>> round(adaptive_value(0.0, 0.5, 1.0, tail), 4)  # exp(0 + 1 * 2 * 0.5)
    2.7183
    """
    d = max(spread, _SPREAD_FLOOR * tail.spread)
    return math.exp(level + margin * tail.k * d)


class AdaptiveLevel:
    """The adaptive method's learning and recalibration, on one source's state at a time.

    Args:
        config: the threshold settings (``level_*``, ``margin_*``, ``target_far``,
            ``min_change_ratio``).
        tail: the bundle's standardised tail (:func:`reference_tail`).
    """

    def __init__(self, config: ThresholdConfig, tail: ReferenceTail) -> None:
        self.config = config
        self.tail = tail
        self._ewma_k = 1.0 - 0.5 ** (1.0 / config.window)  # as the bank's flag-rate gauge

    def update(
        self,
        source_id: str,
        st: SourceState,
        score: float,
        now_ms: int,
        flagged: bool,
        episode_open: bool,
        opening: bool,
        was_open: bool,
        shift: bool,
    ) -> list[Event]:
        """Learn from one judged window; the events of a recalibration it caused, if any.

        Called by :meth:`detector.threshold.bank.ThresholdBank.update` with the source's state,
        after the counters every method keeps (``opening``: this flagged window opens an
        episode; ``was_open``: an episode was open before it).
        """
        cfg = self.config
        if not score >= 0.0 or score == math.inf:  # NaN, inf, negative: not a score
            st.invalid += 1
            return []
        # The realised rate: every window outside an episode counts, and inside one its
        # flagged windows up to the episode's budget (see detector.threshold.adaptive, step 3).
        if opening:
            st.ep_spent = 0
        if not was_open or opening or not flagged:
            st.counted += 1
            if flagged:
                st.errs += 1
                st.ep_spent += 1
        elif st.ep_spent < cfg.margin_episode_budget:
            st.counted += 1
            st.errs += 1
            st.ep_spent += 1
        if not episode_open or opening:  # the flag-rate gauge, as the other methods count it
            st.flag_ewma += ((1.0 if flagged else 0.0) - st.flag_ewma) * self._ewma_k
        if episode_open:  # held back until the episode ends (step 4)
            st.excl_episode += 1
            st.pending.append(-score if flagged else score)
            return []
        window = cfg.level_window
        learnt = 1
        held = st.pending
        st.pending = []
        if shift:  # the held-back windows are the new normal: the older level is gone
            fresh = np.abs(np.asarray([*held, score], dtype=np.float32))[-window:]
            st.keep_only(fresh, window)
            learnt = int(fresh.shape[0])
        else:
            for value in held:
                if value >= 0.0:  # an incident's flagged windows are forgotten
                    st.push(value, window)
                    learnt += 1
            st.push(score, window)
        st.accepted += learnt
        st.since_recal += learnt
        if shift:
            return self._recalibrate(source_id, st, now_ms, "shift")
        if st.own:
            if st.since_recal < cfg.level_every:
                return []
            return self._recalibrate(source_id, st, now_ms, "scheduled")
        if st.n < cfg.level_min_samples:
            return []
        return self._recalibrate(source_id, st, now_ms, "first")

    def _recalibrate(
        self, source_id: str, st: SourceState, now_ms: int, reason: str
    ) -> list[Event]:
        cfg = self.config
        tail = self.tail
        st.since_recal = 0
        if st.n == 0:
            return []
        if st.own and st.counted:
            step = cfg.margin_rate * (st.errs - cfg.target_far * st.counted)
            st.margin = min(max(st.margin * math.exp(step), cfg.margin_min), cfg.margin_max)
        st.errs = st.counted = 0  # the rate against the global fallback says nothing here
        level, spread = log_level(st.buf[: st.n])
        estimate = adaptive_value(level, spread, st.margin, tail)
        st.recals += 1
        st.calibrated_at_ms = now_ms
        st.last_path = "level"
        if not (math.isfinite(estimate) and estimate > 0):
            return []
        old = st.value
        first = not st.own
        if not first and abs(estimate - old) <= cfg.min_change_ratio * old:
            return []
        st.value = estimate
        st.own = True
        st.info = ThresholdInfo(estimate, "adaptive", cfg.target_far, st.n, now_ms, "source")
        events: list[Event] = [
            ThresholdRecalibrated(
                source_id=source_id, at_ms=now_ms, old=old, new=estimate, method="adaptive",
                target_far=cfg.target_far, samples_used=st.n, reason=reason, estimate=estimate,
                estimator="level", margin=st.margin,
            )
        ]  # fmt: skip
        return events
