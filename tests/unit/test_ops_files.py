"""The ops files: Prometheus rules and config (judged and unit-tested by the real promtool),
the Alertmanager config (amtool), the Grafana dashboard and provisioning, the bridge's
/metrics endpoint. Prometheus itself runs them in tests/integration/test_prometheus.py."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from detector.alertmanager.mapping import AlertMapping, EpisodeBook
from detector.alertmanager.metrics import BridgeEndpoint, BridgeMetrics
from tests.ops_binaries import find_binary, promtool
from tests.unit.test_alertmanager import make_alert

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "vae-stream-detector.json"


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_rules_and_config_and_runs_the_rule_unit_tests() -> None:
    tool = promtool()
    _run([tool, "check", "rules", str(OPS / "prometheus" / "rules.yml")])
    for config in ("prometheus.yml", "prometheus.local.yml"):
        _run([tool, "check", "config", str(OPS / "prometheus" / config)])
    _run([tool, "test", "rules", str(OPS / "prometheus" / "rules_test.yml")])


def test_amtool_checks_the_alertmanager_config() -> None:
    amtool = find_binary(("amtool",))
    if amtool is None:
        promtool()  # the same skip-or-fail rule: both come from the set-up's Debian packages
        pytest.skip("amtool not found (Debian package prometheus-alertmanager)")
    _run([amtool, "check-config", str(OPS / "alertmanager" / "alertmanager.yml")])


def test_every_alert_rule_has_a_severity_summary_and_description() -> None:
    text = (OPS / "prometheus" / "rules.yml").read_text()
    blocks = re.split(r"\n      - (?=alert:|record:)", text)
    alerts = [b for b in blocks if b.startswith("alert:")]
    assert len(alerts) >= 10
    for block in alerts:
        name = block.split()[1]
        assert re.search(r"severity: (critical|warning|info)\n", block), name
        assert "summary:" in block and "description:" in block, name


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "instance", "source"}
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("throughput", "lag", "latency", "threshold", "flag rate", "score", "alerts",
                  "dead letters"):  # fmt: skip
        assert topic in titles, f"no panel about {topic}"
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval", "__interval"}
            assert used <= variables, (p["title"], used)


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    datasources = (OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in datasources and "url: http://prometheus:9090" in datasources
    providers = (OPS / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in providers
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./ops/grafana/dashboards:/var/lib/grafana/dashboards" in compose
    assert "./ops/prometheus/rules.yml:/etc/prometheus/rules.yml" in compose


def test_bridge_endpoint_serves_its_metrics_and_health() -> None:
    metrics = BridgeMetrics()
    book = EpisodeBook(AlertMapping())
    book.apply(make_alert(score=2.5), 0, 0, 0)
    metrics.show_episodes(book.episodes.values())
    endpoint = BridgeEndpoint(metrics, "127.0.0.1", 0, lambda: True)
    try:
        base = f"http://127.0.0.1:{endpoint.port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'alertmanager_bridge_episode_score{source="pump-1"} 2.5' in text
        assert "alertmanager_bridge_open_episodes 1.0" in text
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        endpoint.stop()
    metrics.show_episodes([])  # resolved: the per-source series go away
    from prometheus_client import generate_latest

    assert b'episode_score{source="pump-1"}' not in generate_latest(metrics.registry)
