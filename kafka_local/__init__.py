"""A real Apache Kafka broker on the local JVM, for tests and the offline demo (no Docker)."""

from __future__ import annotations

from kafka_local.broker import LocalKafka, free_port
from kafka_local.jars import DEFAULT_KAFKA_VERSION, BrokerSetupError, ensure_kafka_jars

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "BrokerSetupError",
    "LocalKafka",
    "ensure_kafka_jars",
    "free_port",
]
