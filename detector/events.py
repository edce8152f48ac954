"""Events published on the events topic: what the thresholds did and why.

Four kinds, told apart by ``type`` (a discriminated union, so a consumer parses any of them
with :func:`parse_event`):

* :class:`ThresholdRecalibrated`: a source's threshold changed (old -> new, method, samples,
  reason). Alerts carry the same provenance (:class:`detector.threshold.bank.ThresholdInfo`).
* :class:`DriftDetected`: the distribution of a source's normal errors shifted (a two-sample
  test between the older and the newer part of its reference window), emitted once per shift.
* :class:`RetrainRecommended`: the shift is beyond what recalibration should absorb.
* :class:`ShiftAccepted`: an episode lasted so long that it was taken as the source's new
  normal (the lifecycle's ``shift_after_windows``), and learnt.

Examples:
    >>> ev = DriftDetected(source_id="pump-1", statistic="ks", value=0.21, p_value=1e-9,
    ...                    reference_n=4000, recent_n=1000, at_ms=1_700_000_000_000)
    >>> parse_event(encode_event(ev)) == ev
    True
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "DriftDetected",
    "Event",
    "RetrainRecommended",
    "ShiftAccepted",
    "ThresholdRecalibrated",
    "encode_event",
    "parse_event",
]


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str = Field(min_length=1, description="The source whose threshold state changed.")
    at_ms: int = Field(description="Event time (ms since epoch) of the window that caused it.")


class ThresholdRecalibrated(_EventBase):
    """A source's threshold moved (or was first set from the source's own data)."""

    type: Literal["threshold_recalibrated"] = "threshold_recalibrated"
    old: float | None = Field(
        description="The threshold in force before (the global fallback "
        "before a source's first own calibration)."
    )
    new: float
    method: str = Field(description="'adaptive', 'quantile', 'spot' or 'static'.")
    target_far: float = Field(gt=0, lt=1)
    samples_used: int = Field(ge=0, description="The source's own normal scores in the window.")
    reason: str = Field(
        description="'first' (first own calibration), 'scheduled', 'drift', or 'shift' (an "
        "episode declared a sustained shift: its windows were learnt as the new normal)."
    )
    estimate: float | None = Field(
        None, description="The estimator's value before the bounded step was applied."
    )
    prior_samples: int = Field(
        0, ge=0, description="Bundle reference points topping up a window not yet full."
    )
    estimator: str | None = Field(
        None,
        description="'empirical' (read off the window), 'tail' (tail model with the censored "
        "flagged windows) or 'guarded' (flagged windows outnumbered a normal tail: the tail "
        "fitted to unflagged scores capped the estimate), or 'level' (adaptive: the source's "
        "score level and spread with the bundle's tail).",
    )
    censored: int = Field(0, ge=0, description="Flagged windows in the window, as censored.")
    margin: float | None = Field(
        None,
        description="adaptive: the margin factor on the bundle's tail, after the correction "
        "of the realised flag rate (1 = the bundle's tail as it is).",
    )


class DriftDetected(_EventBase):
    """The distribution of a source's normal errors shifted (once per shift)."""

    type: Literal["drift_detected"] = "drift_detected"
    statistic: Literal["ks", "psi"]
    value: float = Field(description="KS distance D, or the population stability index.")
    p_value: float | None = Field(ge=0, le=1)
    alpha: float | None = Field(None, description="The per-test level the p-value was held to.")
    reference_n: int = Field(ge=0)
    recent_n: int = Field(ge=0)


class RetrainRecommended(_EventBase):
    """Recalibration alone should not absorb this: retrain the model (once per excursion)."""

    type: Literal["retrain_recommended"] = "retrain_recommended"
    reason: str = Field(description="e.g. 'threshold_ratio'.")
    statistic: str = Field(description="What was measured, e.g. 'threshold_ratio'.")
    value: float
    limit: float = Field(description="The configured limit the value went beyond.")
    threshold: float | None = None
    bundle_threshold: float | None = None


class ShiftAccepted(_EventBase):
    """An episode outlasted ``shift_after_windows``: taken as a sustained shift, not an incident.

    The episode is resolved (its ``resolved`` alert gives the same reason), the windows it held
    back are learnt as the source's new normal, and the threshold follows (a
    ``threshold_recalibrated`` event with reason ``shift`` comes with it when it moved). Ops
    teams see here why the detector stopped alerting.
    """

    type: Literal["shift_accepted"] = "shift_accepted"
    episode_id: str
    windows: int = Field(ge=1, description="Windows the episode lasted, the opening one included.")
    anomalous_windows: int = Field(ge=1, description="Of which flagged.")
    started_ms: int = Field(description="Event time the episode opened.")
    peak_score: float
    threshold: float = Field(description="The threshold in force while it was open.")
    shift_after_windows: int = Field(ge=1, description="The policy setting that decided it.")


Event = Annotated[
    ThresholdRecalibrated | DriftDetected | RetrainRecommended | ShiftAccepted,
    Field(discriminator="type"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def encode_event(event: Event) -> bytes:
    """The JSON bytes published on the events topic."""
    return event.model_dump_json().encode()


def parse_event(data: bytes | str) -> Event:
    """Parse any event from its JSON form (raises ``pydantic.ValidationError`` if invalid)."""
    return _EVENT_ADAPTER.validate_json(data)
