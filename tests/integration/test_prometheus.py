"""The REAL Prometheus scraping a running detector, with the project's rules and dashboard.

Prometheus is Debian's ``prometheus`` package (installed by scripts/setup_ops.sh), on a free
loopback port, scraping a ``detector run`` process (real bundle, real broker) every second
and evaluating ops/prometheus/rules.yml every second. Asserted through its HTTP API
(/api/v1/query, /api/v1/rules): the detector's counters arrive, the recording rules compute
the realised flag rate, every rule evaluates without error, and every query of the Grafana
dashboard is valid PromQL that Prometheus runs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.messages import encode_binary
from kafka_local import free_port
from kafka_local.clients import produce_records, unique_name, wait_until
from tests.integration.detector_harness import process_env
from tests.ops_binaries import OpsProcess, get_json, prom_query, run_prometheus

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "ops" / "prometheus" / "rules.yml"
DASHBOARD = REPO / "ops" / "grafana" / "dashboards" / "vae-stream-detector.json"
WINDOW = 32


def _windows(rng: np.random.Generator, n: int, spikes: bool = False) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, WINDOW)
    x = np.sin(t + rng.uniform(0, 2 * np.pi, (n, 1))) + rng.normal(0, 0.05, (n, WINDOW))
    if spikes:
        x[np.arange(n), rng.integers(4, WINDOW - 4, n)] += 5.0
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real Keras bundle (a few seconds to fit)."""
    from tests.bundle_factory import build_bundle

    normal = _windows(np.random.default_rng(0), 600)[:, :, None]
    return build_bundle(tmp_path_factory.mktemp("bundle") / "bundle", normal, epochs=5)


def _records(seed: int, n: int, first_seq: int) -> list[tuple[bytes, bytes, Any]]:
    rng = np.random.default_rng(seed)
    normal, spiky = _windows(rng, n), _windows(rng, n, spikes=True)
    out = []
    for i in range(n):
        source = f"src-{i % 4}"
        values = spiky[i] if i % 20 == 0 else normal[i]
        seq = first_seq + i // 4
        value, headers = encode_binary(source, seq, 1_000 * seq, values)
        out.append((source.encode(), value, headers))
    return out


@pytest.fixture
def detector(
    kafka_bootstrap: str, small_bundle: Path, tmp_path: Path
) -> Iterator[tuple[str, int, Path]]:
    """A running ``detector run`` process: (windows topic, metrics port, log)."""
    tag = unique_name("prom")
    port = free_port()
    env = process_env(
        kafka_bootstrap,
        tag,
        DETECTOR_METRICS_PORT=str(port),
        DETECTOR_METRICS_HOST="127.0.0.1",
    )
    log = tmp_path / "detector.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detector", "run", "--bundle", str(small_bundle)],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: b"detector_started" in log.read_bytes() or proc.poll() is not None,
            180,
            "the detector to start",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        yield f"{tag}-windows", port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _config(metrics_port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "detector",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }


def _value(prometheus: OpsProcess, expr: str) -> float | None:
    result = prom_query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def _dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, with Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    fill = {"$__rate_interval": "1m", "$__interval": "15s", "$instance": ".*", "$source": ".*"}
    out = []
    for expr in exprs:
        filled = expr
        for var, value in fill.items():
            filled = filled.replace(var, value)
        assert "$" not in filled, f"a variable the test does not fill: {expr}"
        out.append(filled)
    return out


def test_prometheus_scrapes_the_detector_and_evaluates_the_rules(
    kafka_bootstrap: str, detector: tuple[str, int, Path], tmp_path: Path
) -> None:
    topic, metrics_port, log = detector
    with run_prometheus(tmp_path / "prometheus", _config(metrics_port)) as prom:
        wait_until(lambda: _value(prom, 'up{job="detector"}') == 1.0, 60, "the first scrape")

        first = _records(1, 400, 0)
        produce_records(kafka_bootstrap, topic, first)
        wait_until(
            lambda: (_value(prom, 'detector_windows_total{outcome="scored"}') or 0) >= len(first),
            120,
            f"Prometheus to see {len(first)} scored windows\n{log.read_text()[-2000:]}",
        )
        # A second burst after Prometheus has seen the first: the counters move between two
        # scrapes, so rates (and the recording rules built on them) are above zero.
        second = _records(2, 400, 100)
        produce_records(kafka_bootstrap, topic, second)
        total = len(first) + len(second)
        wait_until(
            lambda: (_value(prom, 'detector_windows_total{outcome="scored"}') or 0) >= total,
            120,
            f"Prometheus to see {total} scored windows",
        )
        wait_until(
            lambda: (_value(prom, "detector:windows_scored:rate5m") or 0) > 0,
            60,
            "the recording rule detector:windows_scored:rate5m",
        )
        wait_until(
            lambda: _value(prom, "detector:flag_rate:ratio_rate5m") is not None,
            60,
            "the recording rule detector:flag_rate:ratio_rate5m",
        )
        flagged = _value(prom, "detector_flagged_windows_total")
        assert flagged is not None and flagged > 0, "the spiky windows should be flagged"
        rate = _value(prom, "detector:flag_rate:ratio_rate5m")
        assert rate is not None and 0 < rate < 1
        ratio = _value(prom, "detector:flag_rate_vs_target:ratio1h")
        target = _value(prom, "detector_target_far")
        assert ratio is not None and target == pytest.approx(0.01)
        # The flag rate over the target is the rate divided by the target.
        hourly = _value(prom, "detector:flag_rate:ratio_rate1h")
        assert hourly is not None and ratio == pytest.approx(hourly / target, rel=1e-6)

        # Every rule of rules.yml was loaded and evaluates without error.
        wait_until(lambda: _rules_evaluated(prom), 30, "every rule to be evaluated")
        groups = get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == _rules_in_file()
        assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
        firing = {a["labels"]["alertname"] for a in _alerts(prom) if a["state"] == "firing"}
        assert "DetectorDown" not in firing and "DetectorMissing" not in firing

        # Every query of the Grafana dashboard is valid PromQL that Prometheus runs; those
        # on the detector's own series have data (per-source gauges are refreshed every 10 s).
        wait_until(
            lambda: (
                _value(prom, "detector:consumer_lag:sum") is not None
                and _value(prom, 'detector_threshold{source="src-0"}') is not None
            ),
            60,
            "the per-source and lag gauges",
        )
        for expr in _dashboard_queries():
            result = prom_query(prom, expr)
            if re.search(
                r"detector_windows_total|detector:windows_scored|detector_threshold", expr
            ):
                assert result, f"no data for the dashboard query {expr}"


def _rules_in_file() -> int:
    return len(re.findall(r"^\s+- (?:record|alert):", RULES.read_text(), flags=re.M))


def _rules_evaluated(prom: OpsProcess) -> bool:
    groups = get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
    return all(r["health"] != "unknown" for g in groups for r in g["rules"])


def _alerts(prom: OpsProcess) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = get_json(f"{prom.url}/api/v1/alerts")["data"]["alerts"]
    return alerts
