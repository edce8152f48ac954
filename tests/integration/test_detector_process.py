"""The `detector` command as a process, with a real trained bundle, on a real broker.

These are the detector's acceptance tests: a replay flags exactly what the bundle flags
offline; SIGKILL mid-stream and restart loses and duplicates nothing; SIGTERM commits and
exits 0; start-up fails fast with a clear error.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from detector.alerts import Alert, AlertState
from detector.messages import encode_binary
from kafka_local import free_port
from kafka_local.clients import (
    committed_total,
    consume_records,
    produce_records,
    unique_name,
    wait_until,
)
from tests.integration.detector_harness import offline_alert_ids, process_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WINDOW = 64


def _normal(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, WINDOW)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    amp = rng.uniform(0.8, 1.2, size=(n, 1))
    return (amp * np.sin(t + phase) + rng.normal(0, 0.05, (n, WINDOW))).astype(np.float32)


def _spiky(rng: np.random.Generator, n: int) -> np.ndarray:
    x = _normal(rng, n)
    idx = rng.integers(5, WINDOW - 5, size=n)
    x[np.arange(n), idx] += rng.choice([-4.0, 4.0], size=n)
    return x


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real Keras bundle fitted on generated normal sine windows (~10 s)."""
    from tests.bundle_factory import build_bundle

    windows = _normal(np.random.default_rng(0), 1500)[:, :, None]
    return build_bundle(tmp_path_factory.mktemp("bundle") / "bundle", windows)


def _env(bootstrap: str, tag: str, **extra: str) -> dict[str, str]:
    return process_env(bootstrap, tag, **extra)


def _start(bundle: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "detector", "run", "--bundle", str(bundle), *args],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _log_events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def _records(rng: np.random.Generator, n: int, anomaly_every: int, sources: int = 6):
    """Binary windows, every `anomaly_every`-th one spiky; keys spread over sources."""
    normal, spiky = _normal(rng, n), _spiky(rng, n)
    out = []
    for i in range(n):
        source = f"src-{i % sources}"
        values = spiky[i] if anomaly_every and i % anomaly_every == 0 else normal[i]
        value, headers = encode_binary(source, i // sources, 1_000 * i, values)
        out.append((source.encode(), value, headers))
    return out


def _offline_flags(bundle: Path, records: list[tuple[bytes, bytes, object]]) -> set[bytes]:
    from detector.bundle import read_manifest
    from detector.model import load_bundle

    model = load_bundle(bundle)
    threshold = read_manifest(bundle).threshold.value
    batch = np.stack([np.frombuffer(v, "<f4").reshape(WINDOW, 1) for _k, v, _h in records])
    scores = np.asarray(model.score(batch).scores)
    return {records[i][1] for i in np.flatnonzero(scores > threshold)}


def _alerts(bootstrap: str, topic: str, n: int) -> list[Alert]:
    return [
        Alert.model_validate_json(m.value() or b"")
        for m in consume_records(bootstrap, topic, n, timeout_s=60)
    ]


def test_replay_flags_exactly_what_the_bundle_flags_offline(
    kafka_bootstrap: str, tiny_bundle: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    tag = unique_name("replay")
    rng = np.random.default_rng(7)
    records = _records(rng, 600, anomaly_every=9)
    expected = _offline_flags(tiny_bundle, records)
    assert 40 <= len(expected) <= 200, "the generated set should hold a fair share of anomalies"
    env = _env(
        kafka_bootstrap,
        tag,
        DETECTOR_THRESHOLD__METHOD="static",
        DETECTOR_LIFECYCLE__RESOLVE_AFTER_WINDOWS="1",
        DETECTOR_LIFECYCLE__ONGOING_INTERVAL_S="0.0001",
    )
    procs.append(_start(tiny_bundle, env, tmp_path / "det.log", "--stop-when-idle", "4"))
    wait_until(
        lambda: (
            (tmp_path / "det.log").exists()
            and b"detector_started" in (tmp_path / "det.log").read_bytes()
        ),
        120,
        "the detector to start",
    )
    produce_records(kafka_bootstrap, f"{tag}-windows", records)
    assert procs[0].wait(timeout=120) == 0, (tmp_path / "det.log").read_text()[-3000:]
    # With resolve-after-1 and a tiny ongoing interval, every flagged window emits an
    # opened or ongoing alert: the alert stream lists every flagged window.
    n = committed_total(kafka_bootstrap, f"{tag}-group", f"{tag}-windows", 2)
    assert n == len(records)
    stopped = [e for e in _log_events(tmp_path / "det.log") if e.get("event") == "detector_stopped"]
    total_alerts = int(stopped[-1]["alerts"])  # type: ignore[call-overload]
    alerts = _alerts(kafka_bootstrap, f"{tag}-alerts", total_alerts)
    by_position = {
        (m.partition(), m.offset()): m.value()
        for m in consume_records(kafka_bootstrap, f"{tag}-windows", len(records))
    }
    flagged = {
        by_position[(a.input.partition, a.input.offset)]
        for a in alerts
        if a.state is not AlertState.RESOLVED
    }
    assert flagged == expected
    assert len({a.alert_id for a in alerts}) == len(alerts)


def _start_busy(
    bootstrap: str,
    bundle: Path,
    env: dict[str, str],
    log: Path,
    procs: list[subprocess.Popen[bytes]],
    tag: str,
    records: list[tuple[bytes | None, bytes | None, Any]],
    committed: int,
) -> subprocess.Popen[bytes]:
    """Start a detector, send it ``records`` and return once it has committed ``committed``."""
    proc = _start(bundle, env, log)
    procs.append(proc)
    wait_until(lambda: b"detector_started" in log.read_bytes(), 120, "the detector to start")
    produce_records(bootstrap, f"{tag}-windows", records)
    wait_until(
        lambda: committed_total(bootstrap, f"{tag}-group", f"{tag}-windows", 2) >= committed,
        120,
        f"the detector to commit {committed} records",
    )
    return proc


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tiny_bundle: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    tag = unique_name("kill")
    rng = np.random.default_rng(11)
    records = _records(rng, 6000, anomaly_every=23)
    bad = [(b"src-0", b"{broken", None), (b"src-1", b"\x00\x01\x02", [("content-type", b"x/y")])]
    records[1000:1000] = bad[:1]
    records[4000:4000] = bad[1:]
    # Small batches: ~750 transactions, so the stream takes seconds and the kill lands
    # mid-stream (with 64 a fast detector had committed all 6002 before the kill).
    env = _env(kafka_bootstrap, tag, DETECTOR_THRESHOLD__METHOD="static", DETECTOR_MAX_BATCH="8")
    log = tmp_path / "det.log"
    # Two thirds of the stream before the kill, the rest after: the kill cannot land after
    # the end of the input however fast the machine.
    first_part = 2 * len(records) // 3
    first = _start_busy(
        kafka_bootstrap, tiny_bundle, env, log, procs, tag, records[:first_part], 1500
    )
    group, topic = f"{tag}-group", f"{tag}-windows"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert committed_total(kafka_bootstrap, group, topic, 2) < first_part, "killed too late"
    produce_records(kafka_bootstrap, topic, records[first_part:])

    second = _start(tiny_bundle, env, log, "--stop-when-idle", "4")
    procs.append(second)
    assert second.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert committed_total(kafka_bootstrap, group, topic, 2) == len(records)

    # Dead letters: each bad record exactly once.
    dead = consume_records(kafka_bootstrap, f"{tag}-dlq", 2, timeout_s=30)
    assert sorted(m.value() for m in dead) == sorted(v for _k, v, _h in bad)
    # Alerts: none twice, and exactly the set a single uninterrupted pass gives.
    stopped = [e for e in _log_events(log) if e.get("event") == "detector_stopped"]
    assert len(stopped) == 1  # the SIGKILLed one never logged its stop
    expected_ids = offline_alert_ids(tiny_bundle, kafka_bootstrap, topic, len(records))
    assert len(expected_ids) > 20, "the stream should open a fair number of episodes"
    got = [
        Alert.model_validate_json(m.value() or b"")
        for m in consume_records(kafka_bootstrap, f"{tag}-alerts", len(expected_ids), timeout_s=60)
    ]
    ids = [a.alert_id for a in got]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    assert set(ids) == expected_ids


def test_sigterm_finishes_the_batch_commits_and_exits_zero(
    kafka_bootstrap: str, tiny_bundle: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    tag = unique_name("term")
    records = _records(np.random.default_rng(3), 20000, anomaly_every=31)
    env = _env(kafka_bootstrap, tag, DETECTOR_MAX_BATCH="16")  # ~1250 transactions
    log = tmp_path / "det.log"
    proc = _start_busy(kafka_bootstrap, tiny_bundle, env, log, procs, tag, records, 500)
    group, topic = f"{tag}-group", f"{tag}-windows"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    (stopped,) = [e for e in _log_events(log) if e.get("event") == "detector_stopped"]
    processed = int(stopped["scored"]) + int(stopped["dead_letters"])  # type: ignore[call-overload]
    # Everything it processed was committed before it exited, and nothing more.
    assert committed_total(kafka_bootstrap, group, topic, 2) == processed
    assert 0 < processed < len(records)


def test_start_up_fails_fast_and_clearly(tiny_bundle: Path, tmp_path: Path) -> None:
    env = _env(f"127.0.0.1:{free_port()}", unique_name("down"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector",
            "run",
            "--bundle",
            str(tiny_bundle),
            "--startup-timeout-s",
            "3",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 3
    assert "no Kafka broker answered" in proc.stderr
    assert "Traceback" not in proc.stderr
    # librdkafka's own lines go through structlog, not raw "%3|...|FAIL|..." on stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("%")] == []

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_bundle.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.keras").write_bytes(b"tampered")
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "run", "--bundle", str(broken)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "sha256" in proc.stderr and "Traceback" not in proc.stderr
