"""Settings and value types of the adaptive thresholds (:mod:`detector.threshold.bank`).

:class:`ThresholdConfig` is what an operator sets (``DETECTOR_THRESHOLD__*``);
:class:`ThresholdInfo` is the threshold in force for a source and how it was set (alerts carry
it); :class:`SourceStats` is one source's counters and gauges for metrics and health checks.
Pure: pydantic and the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detector.threshold.drift import per_test_alpha

__all__ = ["Method", "SourceStats", "ThresholdConfig", "ThresholdInfo"]

Method = Literal["static", "quantile", "spot", "adaptive"]


class ThresholdConfig(BaseModel):
    """Threshold settings (nested in the detector's settings as ``DETECTOR_THRESHOLD__*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = Field(
        "adaptive",
        description="'adaptive' (the source's own score level with the bundle's tail and an "
        "online correction of the realised rate; see detector.threshold.adaptive), 'static' (the "
        "bundle's threshold), 'quantile' or 'spot' (a quantile of the source's own normal "
        "scores, read off its window or extrapolated with a GPD tail).",
    )
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
    level_window: int = Field(
        1000,
        ge=50,
        le=1_000_000,
        description="adaptive: newest learnt scores whose median and spread set the level.",
    )
    level_min_samples: int = Field(
        50, ge=10, description="adaptive: learnt windows before a source's first own threshold."
    )
    level_every: int = Field(
        50,
        ge=1,
        description="adaptive: learnt windows between recalibrations (and so, at most, "
        "between threshold_recalibrated events of a source).",
    )
    margin_rate: float = Field(
        0.03,
        ge=0,
        le=1,
        description="adaptive: how fast the margin corrects the realised flag rate towards "
        "the target (0: never; the bundle's tail alone).",
    )
    margin_min: float = Field(0.1, gt=0, description="adaptive: smallest margin factor.")
    margin_max: float = Field(10.0, gt=1, description="adaptive: largest margin factor.")
    margin_episode_budget: int = Field(
        10,
        ge=1,
        description="adaptive: flagged windows of one episode that count against the rate "
        "(one long incident must not raise the bar for the rest of the stream).",
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
    shift_recent: int = Field(
        500,
        ge=0,
        description="At each recalibration the newest this many entries are compared with the "
        "older rest (rank test); when their bulk is significantly higher, the normal scores "
        "are drifting up: the threshold is estimated from them alone, trusting their flagged "
        "count (no contamination guard, no warm-start prior). 0: never.",
    )
    shift_z: float = Field(
        2.5,
        gt=0,
        description="Significance of that comparison: the rank statistic's z-score above which "
        "the bulk has moved up (one-sided; 2.5 is a 0.6% chance per recalibration when "
        "nothing moved, and then one estimate comes from the recent entries alone).",
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
        if self.level_min_samples > self.level_window:
            raise ValueError("level_min_samples must not exceed level_window")
        if self.margin_min >= 1.0:
            raise ValueError("margin_min must be below 1")
        if self.min_samples > self.window:
            raise ValueError("min_samples must not exceed window")
        if self.drift_statistic != "off" and self.drift_recent + self.drift_reference_min > (
            self.window
        ):
            raise ValueError("drift_recent + drift_reference_min must not exceed window")
        if self.shift_recent >= self.window:
            raise ValueError("shift_recent must be below window")
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
        seen: windows offered to :meth:`detector.threshold.bank.ThresholdBank.update`.
        flagged: of which flagged.
        accepted: of which entered the reference (scores and censored ones).
        excluded_episode: of which left out because an episode was open.
        censored: of which entered censored (flagged, outside or opening an episode).
        window_censored: censored entries in the reference now.
        last_estimator: path of the last estimate: ``empirical``, ``tail`` or ``guarded``
            (flagged windows outnumbered what normal data would give: anomalies), prefixed
            ``recent-`` when the bulk had moved up and only the newest entries were used.
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
