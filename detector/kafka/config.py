"""Kafka client settings shared by the detector, the producer and the tools.

Every librdkafka option is reachable: the common ones (bootstrap servers, SASL, SSL) are
typed fields, anything else goes through ``extra`` (env ``..._KAFKA__EXTRA='{"linger.ms": "5"}'``
or CLI ``-X linger.ms=5``). Credentials are ``SecretStr`` so they never reach a log line.

An option librdkafka rejects (an unknown name, a bad value) is a :class:`ConfigError` at once,
``invalid Kafka configuration: No such configuration property: "no.such.option"``, from
every client the project creates (:func:`new_client`) and, in the detector, before anything
slow (:func:`check_client_config`): not a broker that seems not to answer.

``KAFKA_BOOTSTRAP_SERVERS`` (what ``kafka-local`` prints, and what the tests and the demo
read) is every process's common fallback for the brokers: a flag wins, then the process's
own prefixed setting (``DETECTOR_KAFKA__BOOTSTRAP_SERVERS``, ``PRODUCER_KAFKA__...``), then
``KAFKA_BOOTSTRAP_SERVERS``, then ``127.0.0.1:9092`` (:func:`common_bootstrap_fallback`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from detector.errors import ConfigError

__all__ = [
    "COMMON_BOOTSTRAP_ENV",
    "KafkaSettings",
    "check_client_config",
    "common_bootstrap_fallback",
    "new_client",
    "parse_extra_options",
]

COMMON_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

Client = TypeVar("Client")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"]


class KafkaSettings(BaseModel):
    """Connection settings for librdkafka clients.

    Examples:
        >>> s = KafkaSettings(bootstrap_servers="b1:9092", extra={"linger.ms": "5"})
        >>> s.client_config()["linger.ms"]
        '5'
    """

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of brokers."
    )
    client_id: str | None = Field(None, description="client.id reported to the brokers.")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = Field(None, description="CA bundle (PEM) to verify brokers.")
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="Any other librdkafka option, passed through verbatim (wins over fields).",
    )

    def client_config(self) -> dict[str, str]:
        """The librdkafka configuration dictionary these settings describe."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        optional: dict[str, str | SecretStr | None] = {
            "client.id": self.client_id,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for key, value in optional.items():
            if value is None:
                continue
            conf[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        conf.update(self.extra)
        return conf


def common_bootstrap_fallback(data: Any, key: str = "kafka") -> Any:
    """A process settings' ``mode="before"`` validator step: ``KAFKA_BOOTSTRAP_SERVERS``
    fills ``kafka.bootstrap_servers`` when neither a flag nor the prefixed variable set it.

    Args:
        data: the settings' raw input (keyword arguments merged with env and ``.env``).
        key: the field holding the :class:`KafkaSettings`.

    Examples:
        >>> os.environ[COMMON_BOOTSTRAP_ENV] = "10.0.0.5:9092"
        >>> common_bootstrap_fallback({"kafka": {"sasl_username": "u"}})
        {'kafka': {'sasl_username': 'u', 'bootstrap_servers': '10.0.0.5:9092'}}
        >>> common_bootstrap_fallback({"kafka": {"bootstrap_servers": "b:9092"}})
        {'kafka': {'bootstrap_servers': 'b:9092'}}
        >>> del os.environ[COMMON_BOOTSTRAP_ENV]
    """
    common = os.environ.get(COMMON_BOOTSTRAP_ENV, "").strip()
    if not common or not isinstance(data, dict):
        return data
    kafka = data.get(key)
    if kafka is None:
        return {**data, key: {"bootstrap_servers": common}}
    if isinstance(kafka, dict) and kafka.get("bootstrap_servers") is None:
        return {**data, key: {**kafka, "bootstrap_servers": common}}
    return data  # set explicitly (or a KafkaSettings object): it wins


def parse_extra_options(pairs: list[str] | None) -> dict[str, str]:
    """Turn ``["linger.ms=5", "acks=all"]`` (CLI ``-X``) into a dictionary.

    Raises:
        ValueError: a pair has no ``=`` (the message shows the option's name, never what
            may be its value: ``-X sasl.password:secret`` must not print the secret).
    """
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            name = re.match(r"[\w.\-]*", pair.strip())
            shown = name.group() if name and name.group() else "an option"
            raise ValueError(f"librdkafka option must be KEY=VALUE, got {shown!r} without '='")
        out[key.strip()] = value.strip()
    return out


def new_client(factory: Callable[..., Client], conf: Mapping[str, Any], **kwargs: Any) -> Client:
    """``factory(conf, **kwargs)``: a confluent-kafka Producer, Consumer or AdminClient.

    Raises:
        ConfigError: librdkafka rejected an option, e.g. ``invalid Kafka configuration: No
            such configuration property: "no.such.option"``.
    """
    from confluent_kafka import KafkaError, KafkaException  # here: settings need no client

    try:
        return factory(dict(conf), **kwargs)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        text = err.str() if isinstance(err, KafkaError) else str(exc)
        raise ConfigError(f"invalid Kafka configuration: {text}") from exc


def check_client_config(conf: Mapping[str, Any]) -> None:
    """Have librdkafka judge every option now, before anything slow (the detector loads its
    model first): a producer handle with the options but no brokers, which connects nowhere
    and is destroyed at once. Options that only a role's own settings make wrong (a
    consumer's, a transactional producer's) are still caught by :func:`new_client`.

    Raises:
        ConfigError: as :func:`new_client`.
    """
    from confluent_kafka import Producer

    probe = new_client(Producer, {**conf, "bootstrap.servers": "", "log_level": 0})
    del probe
