"""Settings of the ``detector`` process (env ``DETECTOR_*``, ``.env``, CLI flags override).

Nested groups use ``__`` in env names: ``DETECTOR_KAFKA__BOOTSTRAP_SERVERS``,
``DETECTOR_KAFKA__SASL_PASSWORD``, ``DETECTOR_THRESHOLD__TARGET_FAR``,
``DETECTOR_KAFKA__EXTRA='{"fetch.wait.max.ms": "50"}'``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector.health import HealthSettings
from detector.kafka.config import KafkaSettings, common_bootstrap_fallback
from detector.lifecycle import LifecycleSettings
from detector.log import LogFormat
from detector.threshold import ThresholdConfig

__all__ = ["DetectorSettings", "LifecycleSettings", "TopicSettings"]


class TopicSettings(BaseModel):
    """Topic names and how to create them when missing."""

    model_config = ConfigDict(extra="forbid")

    windows: str = "windows"
    alerts: str = "alerts"
    events: str = "events"
    dead_letters: str = "dead-letters"
    state: str = Field("detector-state", description="Compacted; key = source_id.")
    create_missing: bool = True
    partitions: int = Field(4, ge=1, description="Partitions of topics the detector creates.")
    replication_factor: int = Field(1, ge=1)


class DetectorSettings(BaseSettings):
    """Everything the detector process needs; built once in ``__main__`` and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="DETECTOR_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    bundle: Path = Field(Path("models/demo"), description="Model bundle directory.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    health: HealthSettings = Field(
        default_factory=HealthSettings,
        description="When /healthz and /readyz fail, and the broker probe "
        "(DETECTOR_HEALTH__STALL_S, __LOOP_STALE_S, __PROBE_INTERVAL_S, __PROBE_TIMEOUT_S).",
    )

    group_id: str = "vae-detector"
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description=(
            "Stable per-instance id: the static group member id and the transactional.id "
            "suffix, so a restarted instance fences its crashed predecessor at once. "
            "Give each process on one host its own."
        ),
    )
    delivery: Literal["exactly-once", "at-least-once"] = "exactly-once"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    max_batch: int = Field(2048, ge=1, description="Most windows scored in one model call.")
    max_wait_s: float = Field(
        0.02,
        ge=0,
        description=(
            "Longest wait for the next record when none is ready (the loop's idle tick). "
            "Batches are not held back to fill: a batch is what is ready, up to max_batch."
        ),
    )
    max_message_bytes: int = Field(1 << 20, ge=64, description="Larger records are dead-lettered.")

    state_interval_s: float = Field(
        0.0,
        ge=0,
        description="0 (exactly-once state): every batch's transaction carries the state of "
        "every source it touched, so a restart restores exactly the state of the committed "
        "offsets and reproduces the uninterrupted run's alerts. Above 0, a source's threshold "
        "state is written on a recalibration or at most this often (a clean stop and a "
        "rebalance write the rest): less to write, but a crash restores older threshold "
        "state than the offsets, and the alerts after it may differ.",
    )
    log_interval_s: float = Field(
        5.0, gt=0, description="Quiet batches are summarised in one log line this often."
    )
    startup_timeout_s: float = Field(30.0, gt=0, description="Broker/model budget at start-up.")
    stop_when_idle_s: float | None = Field(
        None,
        gt=0,
        description="Exit 0 after this long with no input, counted from the first partition "
        "assignment (jobs, tests).",
    )
    metrics_port: int | None = Field(
        9108, ge=0, le=65535, description="/metrics, /healthz, /readyz; None disables."
    )
    metrics_host: str = "0.0.0.0"
    log_level: str = "INFO"
    log_format: LogFormat = "auto"

    @model_validator(mode="before")
    @classmethod
    def _common_bootstrap(cls, data: Any) -> Any:
        """``KAFKA_BOOTSTRAP_SERVERS`` when no flag or prefixed variable names the brokers."""
        return common_bootstrap_fallback(data)
