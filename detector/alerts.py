"""The alert contract published to the alerts topic (JSON; schema from :class:`Alert`)."""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CRITICAL_RATIO",
    "MAJOR_RATIO",
    "Alert",
    "AlertState",
    "ChannelContribution",
    "InputRef",
    "ModelRef",
    "Severity",
    "StepContribution",
    "ThresholdRef",
    "alert_id",
    "severity_bands",
    "severity_for",
]

MAJOR_RATIO = 1.5  # score / threshold from which an alert is major
CRITICAL_RATIO = 3.0  # ... and critical


class AlertState(StrEnum):
    """Where an alert stands in its episode."""

    OPENED = "opened"
    ONGOING = "ongoing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    """How far the score is above the threshold (score / threshold)."""

    MINOR = "minor"  # < 1.5x
    MAJOR = "major"  # 1.5x to 3x
    CRITICAL = "critical"  # >= 3x


def severity_for(score: float, threshold: float) -> Severity:
    """Severity from the ratio of score to threshold.

    >>> severity_for(1.2, 1.0), severity_for(2.0, 1.0), severity_for(9.0, 1.0)
    (<Severity.MINOR: 'minor'>, <Severity.MAJOR: 'major'>, <Severity.CRITICAL: 'critical'>)
    """
    ratio = score / threshold if threshold > 0 else float("inf")
    if ratio >= CRITICAL_RATIO:
        return Severity.CRITICAL
    if ratio >= MAJOR_RATIO:
        return Severity.MAJOR
    return Severity.MINOR


def severity_bands() -> str:
    """The bands of :func:`severity_for`, for people.

    >>> severity_bands()
    'minor: score below 1.5x the threshold, major: 1.5x to 3x, critical: 3x and above'
    """
    return (
        f"minor: score below {MAJOR_RATIO:g}x the threshold, major: {MAJOR_RATIO:g}x to "
        f"{CRITICAL_RATIO:g}x, critical: {CRITICAL_RATIO:g}x and above"
    )


def alert_id(topic: str, partition: int, offset: int, state: str, model_sha256: str) -> str:
    """Deterministic id: the same input record, state and model give the same id.

    >>> args = ("windows", 0, 42, "opened", "ab" * 32)
    >>> alert_id(*args) == alert_id(*args)
    True
    """
    text = f"{topic}\x1f{partition}\x1f{offset}\x1f{state}\x1f{model_sha256}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class InputRef(BaseModel):
    """The Kafka record that triggered the alert."""

    topic: str
    partition: int
    offset: int
    seq: int


class ThresholdRef(BaseModel):
    """How the threshold in force was set."""

    value: float
    method: str
    target_far: float
    samples_used: int
    set_at_ms: int | None
    scope: str


class ModelRef(BaseModel):
    """Which model scored the window."""

    name: str
    version: str
    sha256: str


class StepContribution(BaseModel):
    """One time step's share of the reconstruction error."""

    step: int
    error: float


class ChannelContribution(BaseModel):
    """One channel's share of the reconstruction error."""

    channel: str
    error: float


class Alert(BaseModel):
    """An anomaly alert. One episode = one ``opened``, some ``ongoing``, one ``resolved``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = 1
    alert_id: str = Field(description="Deterministic: same input record and state -> same id.")
    episode_id: str = Field(description="Shared by every alert of one episode.")
    state: AlertState
    source_id: str
    severity: Severity
    input: InputRef
    event_time_ms: int = Field(description="Event time of the window behind this alert.")
    detected_at_ms: int = Field(description="Wall-clock time the detector decided.")
    score: float
    peak_score: float = Field(description="Highest score so far in the episode.")
    threshold: ThresholdRef
    model: ModelRef
    anomalous_windows: int = Field(description="Anomalous windows in the episode so far.")
    episode_started_ms: int
    resolved_reason: str | None = None
    top_steps: list[StepContribution] = Field(default_factory=list)
    top_channels: list[ChannelContribution] = Field(default_factory=list)
