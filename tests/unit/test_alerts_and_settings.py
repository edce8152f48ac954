"""Alert ids, severity, settings from env, and librdkafka options."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from detector.alerts import Severity, alert_id, severity_for
from detector.kafka.config import KafkaSettings, parse_extra_options


def test_alert_id_is_deterministic_and_sensitive_to_each_field() -> None:
    base = ("windows", 1, 42, "opened", "a" * 64)
    assert alert_id(*base) == alert_id(*base)
    variants = [
        ("windows2", 1, 42, "opened", "a" * 64),
        ("windows", 2, 42, "opened", "a" * 64),
        ("windows", 1, 43, "opened", "a" * 64),
        ("windows", 1, 42, "resolved", "a" * 64),
        ("windows", 1, 42, "opened", "b" * 64),
    ]
    assert len({alert_id(*v) for v in variants} | {alert_id(*base)}) == 6


@pytest.mark.parametrize(
    ("score", "expected"),
    [(1.01, Severity.MINOR), (1.6, Severity.MAJOR), (3.0, Severity.CRITICAL)],
)
def test_severity_by_ratio(score: float, expected: Severity) -> None:
    assert severity_for(score, 1.0) is expected


def test_kafka_settings_reach_every_librdkafka_option() -> None:
    s = KafkaSettings(
        bootstrap_servers="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password=SecretStr("hunter2-secret"),
        ssl_ca_location="/ca.pem",
        extra=parse_extra_options(["socket.keepalive.enable=true", "linger.ms = 7"]),
    )
    conf = s.client_config()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.password"] == "hunter2-secret"
    assert conf["linger.ms"] == "7"
    assert conf["socket.keepalive.enable"] == "true"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_bad_extra_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_extra_options(["linger.ms"])


def test_detector_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.settings import DetectorSettings

    monkeypatch.setenv("DETECTOR_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("DETECTOR_KAFKA__SASL_PASSWORD", "secret")
    monkeypatch.setenv("DETECTOR_KAFKA__EXTRA", '{"fetch.wait.max.ms": "5"}')
    monkeypatch.setenv("DETECTOR_MAX_BATCH", "64")
    monkeypatch.setenv("DETECTOR_THRESHOLD__TARGET_FAR", "0.005")
    s = DetectorSettings(kafka={"security_protocol": "SASL_SSL"})
    assert s.kafka.bootstrap_servers == "env:9092"
    assert s.kafka.client_config()["sasl.password"] == "secret"
    assert s.kafka.client_config()["fetch.wait.max.ms"] == "5"
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.max_batch == 64
    assert s.threshold.target_far == 0.005


def test_librdkafka_lines_become_structured_log_events() -> None:
    import structlog

    from detector.log import LibrdkafkaLog

    with structlog.testing.capture_logs() as logs:
        LibrdkafkaLog().log(
            40, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect to ipv4#127.0.0.1:1 failed"
        )
        LibrdkafkaLog().log(20, "plain %d", 7)
    assert logs == [
        {
            "event": "librdkafka",
            "log_level": "error",
            "facility": "FAIL",
            "client": "rdkafka#consumer-1",
            "message": "Connect to ipv4#127.0.0.1:1 failed",
        },
        {
            "event": "librdkafka",
            "log_level": "info",
            "facility": "",
            "client": "",
            "message": "plain 7",
        },
    ]
