"""Honest health through a broker outage: the `detector` process, a broker of its own, stopped.

The detector runs as a process against a one-node broker that this test owns (the session's
broker must stay up for the other tests), so it needs the local JVM broker (Java and the
Kafka jars); it is skipped otherwise, or fails when ``CI`` is set. While the broker is down,
``/readyz`` must answer 503 within a bounded time, ``/healthz`` must stay 200 (the loop is
alive; a restart would not bring the broker back), ``detector_broker_up`` must read 0, and a
``broker_unreachable`` warning must already be in the log (written at the time, not after
recovery). When a broker answers on the address again, ``broker_reachable`` says how long
the outage lasted and ``/readyz`` answers 200 again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from detector.messages import encode_binary
from kafka_local.clients import committed_total, produce_records, unique_name, wait_until
from tests.integration.detector_harness import process_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WINDOW = 32
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0


@pytest.fixture
def own_broker() -> Iterator[Any]:
    """A local JVM broker this test may stop and start again."""
    from kafka_local import BrokerSetupError, LocalKafka

    kafka = LocalKafka()
    try:
        kafka.start()
    except BrokerSetupError as exc:
        reason = f"a broker of the test's own could not start: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.bundle_factory import build_bundle

    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, WINDOW)
    windows = np.sin(t + rng.uniform(0, 2 * np.pi, (400, 1))) + rng.normal(0, 0.05, (400, WINDOW))
    return build_bundle(
        tmp_path_factory.mktemp("bundle") / "bundle", windows.astype(np.float32)[:, :, None], 5
    )


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not serving yet
        return 0, str(exc)


def _metric(port: int, name: str) -> float | None:
    for line in _get(port, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = orjson.loads(line)
            if event.get("event") == name:
                out.append(event)
    return out


def _wall(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_readyz_fails_and_a_warning_is_logged_while_the_broker_is_down(
    own_broker: Any, small_bundle: Path, tmp_path: Path
) -> None:
    from kafka_local import free_port

    bootstrap = own_broker.bootstrap_servers
    tag = unique_name("outage")
    port = free_port()
    env = process_env(
        bootstrap,
        tag,
        DETECTOR_THRESHOLD__METHOD="static",
        DETECTOR_METRICS_HOST="127.0.0.1",
        DETECTOR_METRICS_PORT=str(port),
        DETECTOR_HEALTH__PROBE_INTERVAL_S=str(PROBE_INTERVAL_S),
        DETECTOR_HEALTH__PROBE_TIMEOUT_S=str(PROBE_TIMEOUT_S),
    )
    log = tmp_path / "det.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detector", "run", "--bundle", str(small_bundle)],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: _get(port, "/readyz")[0] == 200, 120, "/readyz 200 after start-up")
        rng = np.random.default_rng(1)
        records = []
        for i in range(20):
            value, headers = encode_binary(f"s{i % 2}", i, 1_000 * i, rng.normal(0, 1, WINDOW))
            records.append((f"s{i % 2}".encode(), value, headers))
        produce_records(bootstrap, f"{tag}-windows", records)
        wait_until(
            lambda: committed_total(bootstrap, f"{tag}-group", f"{tag}-windows", 2) == 20,
            60,
            "the detector to commit its input",
        )
        assert _metric(port, "detector_broker_up") == 1
        assert _events(log, "broker_unreachable") == []

        stopping = time.time()
        own_broker.stop()
        down = time.monotonic()
        # Bounded: a failed probe takes probe_interval_s + probe_timeout_s at most (librdkafka
        # reporting all brokers down usually says it sooner); a margin for a loaded machine.
        bound_s = PROBE_INTERVAL_S + PROBE_TIMEOUT_S + 7
        wait_until(lambda: _get(port, "/readyz")[0] == 503, bound_s, "/readyz 503")
        detected_s = time.monotonic() - down
        code, body = _get(port, "/readyz")
        assert code == 503 and body.startswith("broker unreachable"), body
        assert _get(port, "/healthz")[0] == 200  # a restart would not bring the broker back
        assert _metric(port, "detector_broker_up") == 0
        assert _metric(port, "detector_ready") == 0
        # Logged while the broker is still down, stamped with the time of the outage.
        (unreachable,) = _events(log, "broker_unreachable")
        assert unreachable["level"] == "warning"
        assert unreachable["error"]
        assert stopping <= _wall(unreachable) <= time.time()
        assert proc.poll() is None

        time.sleep(3)  # an outage of a few seconds more: one warning, not one per probe
        assert len(_events(log, "broker_unreachable")) == 1
        assert _get(port, "/healthz")[0] == 200
        # A broker on the same address again (kafka_local starts it on the same port).
        own_broker.start()
        wait_until(lambda: bool(_events(log, "broker_reachable")), 30, "broker_reachable")
        (reachable,) = _events(log, "broker_reachable")
        assert reachable["outage_s"] >= 3
        wait_until(lambda: _get(port, "/readyz")[0] == 200, 30, "/readyz 200 again")
        assert _metric(port, "detector_broker_up") == 1
        print(f"outage detected in {detected_s:.1f} s; lasted {reachable['outage_s']} s")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
