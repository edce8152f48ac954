"""Settings of the ``producer`` process: env ``PRODUCER_*``, a ``.env`` file, CLI flags override.

Examples of the environment::

    PRODUCER_KAFKA__BOOTSTRAP_SERVERS=broker:9092
    PRODUCER_KAFKA__SASL_PASSWORD=...                  (a SecretStr, never logged)
    PRODUCER_KAFKA__EXTRA='{"linger.ms": "20"}'        (any librdkafka option; CLI: -X)
    PRODUCER_TOPIC=windows  PRODUCER_ENCODING=binary  PRODUCER_RATE=500  PRODUCER_SOURCES=8
    PRODUCER_PARTITIONS=8  PRODUCER_CREATE_TOPIC=false   (a missing topic is created by default)

Tests build settings with keyword arguments (``ProducerSettings(_env_file=None, rate=0)``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector.kafka.config import KafkaSettings, common_bootstrap_fallback
from detector.log import LogFormat

__all__ = ["Encoding", "ProducerSettings"]

Encoding = Literal["json", "binary"]


class ProducerSettings(BaseSettings):
    """Where and how the simulator and the replayer write."""

    model_config = SettingsConfigDict(
        env_prefix="PRODUCER_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic: str = Field("windows", min_length=1, description="Topic the windows go to.")
    encoding: Encoding = Field("json", description="json, or binary (compact float32).")
    rate: float = Field(100.0, ge=0, description="Windows per second; 0 = as fast as possible.")
    bursty: bool = Field(False, description="Alternate fast and slow half-seconds.")
    sources: int = Field(1, ge=1, le=1_000_000, description="Sources (record keys).")
    seed: int = Field(0, ge=0, description="Seed of the simulated stream.")
    progress_every_s: float = Field(5.0, gt=0, description="Progress line interval.")
    flush_timeout_s: float = Field(60.0, gt=0, description="Wait for delivery reports at exit.")
    connect_timeout_s: float = Field(15.0, gt=0, description="Wait for the broker at start.")
    create_topic: bool = Field(True, description="Create the topic when it is missing.")
    partitions: int = Field(
        4, ge=1, description="Partitions of a topic the producer creates (as the detector's)."
    )
    replication_factor: int = Field(1, ge=1, description="Of a topic the producer creates.")
    log_level: str = "INFO"
    log_format: LogFormat = "auto"

    @model_validator(mode="before")
    @classmethod
    def _common_bootstrap(cls, data: Any) -> Any:
        """``KAFKA_BOOTSTRAP_SERVERS`` when no flag or prefixed variable names the brokers."""
        return common_bootstrap_fallback(data)
