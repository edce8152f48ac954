"""Session-wide fixtures: a real Kafka broker for integration tests.

The broker is chosen in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing cluster);
2. testcontainers' Kafka module if a Docker engine answers;
3. a one-node broker on the local JVM (:class:`kafka_local.LocalKafka`, jars from Maven Central).

If none can be had, integration tests fail with a clear message when ``CI`` is set and are
skipped with the reason otherwise.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from kafka_local.clients import create_topic, unique_name

if TYPE_CHECKING:
    from kafka_local import LocalKafka

REPO = Path(__file__).resolve().parent.parent
_BROKER: dict[str, str] = {}
_INTEGRATION: set[str] = set()  # kind and address of the session's broker, for the summary

# Property-based tests (hypothesis): "ci", the default, keeps them to seconds so they run in
# every test run; HYPOTHESIS_PROFILE=long explores much further (minutes, for benchmarks).
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,  # a shared 2-core machine: timing is not what these tests check
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _docker_answers() -> bool:
    """True if a Docker engine answers a ping within 3 s."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    import gc
    import warnings

    import docker

    with warnings.catch_warnings():
        # docker-py leaves the probe's socket to the GC when the engine does not answer.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


def _no_broker(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"no Kafka broker for integration tests (CI is set): {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker shared by the whole test session."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        _BROKER.update(kind="KAFKA_BOOTSTRAP_SERVERS", address=env)
        yield env
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        container = (
            KafkaContainer("confluentinc/cp-kafka:7.6.1")
            .with_kraft()
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        )
        with container:
            address = container.get_bootstrap_server()
            _BROKER.update(kind="testcontainers (Docker)", address=address)
            yield address
        return
    from kafka_local import BrokerSetupError, LocalKafka

    kafka = LocalKafka()
    try:
        kafka.start()
    except BrokerSetupError as exc:
        _no_broker(f"the local JVM broker could not start: {exc}")
    _BROKER.update(
        kind=f"local JVM broker, Apache Kafka {kafka.version} (pid {kafka.pid})",
        address=kafka.bootstrap_servers,
    )
    try:
        yield kafka.bootstrap_servers
    finally:
        # Destroy clients tests left unreferenced while the broker is still up; otherwise
        # they log connection failures at exit.
        gc.collect()
        kafka.stop()


@pytest.fixture
def restartable_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own, for broker-fault tests: it may ``restart()`` it, ``stop()``
    and ``start()`` it, or ``kill()`` it and start it again, always on the same port and data
    (``tmp_path / "kafka"``), so clients reconnect to the same address and the same cluster.

    Always the local JVM broker, whatever ``kafka_bootstrap`` uses: a shared broker must stay
    up for the other tests, and one in Docker is not this test's to restart.
    """
    from kafka_local import BrokerSetupError, LocalKafka

    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    try:
        kafka.start()
    except BrokerSetupError as exc:
        _no_broker(f"a broker of the test's own could not start on the local JVM: {exc}")
    try:
        yield kafka
    finally:
        gc.collect()  # clients the test left behind, destroyed while the broker is up
        kafka.stop()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: ``new_topic(partitions=1, config=None, prefix="t") -> name`` of a fresh topic."""

    def make(partitions: int = 1, config: dict[str, str] | None = None, prefix: str = "t") -> str:
        return create_topic(kafka_bootstrap, unique_name(prefix), partitions, config)

    return make


@pytest.fixture
def fresh_structlog() -> Iterator[None]:
    """Start and end a test with structlog's defaults: a CLI ``main()`` configures structlog on
    the stderr of the moment, a capture pytest closes after the test."""
    import structlog

    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def group_id() -> str:
    """A consumer group id no other test uses."""
    return unique_name("group")


@pytest.fixture(scope="session")
def ecg5000_path() -> Path:
    """ECG5000 CSV (tutorial layout): ``$ECG5000_PATH`` or ``../shared/data``; else skip."""
    env = os.environ.get("ECG5000_PATH")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "ecg5000" / "ecg5000.csv"
    if not path.is_file():
        pytest.skip(f"ECG5000 not found at {path}; set ECG5000_PATH")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly whether the integration tests ran against a real broker."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.nodeid not in _INTEGRATION or report.when not in ("setup", "call"):
                continue
            if outcome == "passed" and report.when != "call":
                continue
            counts[outcome] = counts.get(outcome, 0) + 1
    if not counts:
        return
    broker = _BROKER.get("kind", "none started")
    where = f" at {_BROKER['address']}" if "address" in _BROKER else ""
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    terminalreporter.write_line(
        f"integration tests against a real Kafka broker ({broker}{where}): {summary}"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Remember which tests carry the integration marker, for the summary."""
    _INTEGRATION.update(i.nodeid for i in items if i.get_closest_marker("integration"))
