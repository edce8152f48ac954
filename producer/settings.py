"""Settings of the ``producer`` process (env ``PRODUCER_*``, ``.env``, CLI flags override).

``PRODUCER_KAFKA__BOOTSTRAP_SERVERS``, ``PRODUCER_KAFKA__SASL_PASSWORD``,
``PRODUCER_KAFKA__EXTRA='{"linger.ms": "20"}'``, ``PRODUCER_TOPIC`` ...
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector.kafka_config import KafkaSettings
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
    topic: str = "windows"
    encoding: Encoding = "json"
    progress_every_s: float = Field(5.0, gt=0, description="Progress line interval.")
    flush_timeout_s: float = Field(60.0, gt=0, description="Wait for delivery reports at exit.")
    log_level: str = "INFO"
    log_format: LogFormat = "auto"
