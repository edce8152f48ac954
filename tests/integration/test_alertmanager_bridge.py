"""``detector alerts --to-alertmanager`` against the REAL Alertmanager and a real broker.

Alertmanager is Debian's ``prometheus-alertmanager`` (installed by scripts/setup_ops.sh), run
on a free loopback port with a minimal config whose one receiver is a webhook served by the
test: Alertmanager's own notifications show the episode firing, then resolved, under one
fingerprint. Alertmanager's API (GET /api/v2/alerts) shows it active, then gone (the API
lists no resolved alerts). The bridge is the real command, as a process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from detector.alerts import Alert, AlertState, Severity
from kafka_local import free_port
from kafka_local.clients import produce_records, unique_name, wait_until
from tests.ops_binaries import OpsProcess, get_json, run_alertmanager
from tests.unit.test_alertmanager import make_alert

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Webhook:
    """Alertmanager's receiver in these tests: records the notifications it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def alerts(self, episode: str, status: str) -> list[dict[str, Any]]:
        """Alerts of ``episode`` notified with ``status`` (firing or resolved)."""
        return [
            a
            for n in list(self.notifications)
            for a in n["alerts"]
            if a["labels"].get("episode_id") == episode and a["status"] == status
        ]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.httpd.shutdown()
    hook.httpd.server_close()


def _am_config(webhook: Webhook) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "test",
            "group_by": ["episode_id"],
            "group_wait": "200ms",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}
        ],
    }


def _am_alerts(am: OpsProcess, episode: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": f'episode_id="{episode}"'})
    alerts: list[dict[str, Any]] = get_json(f"{am.url}/api/v2/alerts?{query}")
    return alerts


def _alert(state: AlertState, episode: str, offset: int, **kw: Any) -> tuple[bytes, bytes, None]:
    now = time.time_ns() // 1_000_000
    alert: Alert = make_alert(state, episode=episode, offset=offset, detected_ms=now, **kw)
    return alert.source_id.encode(), alert.model_dump_json().encode(), None


@pytest.fixture
def bridge_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _start_bridge(
    bootstrap: str, url: str, topic: str, group: str, log: Path, *extra: str, min_firing: str = "0"
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env["DETECTOR_LOG_FORMAT"] = "json"
    argv = [
        sys.executable, "-m", "detector", "alerts",
        "--to-alertmanager", url,
        "--bootstrap-servers", bootstrap,
        "--topic", topic,
        "--group-id", group,
        "--min-firing-s", min_firing,
        "--repost-interval-s", "2",
        "--expire-after-s", "60",
        "--label", "env=test",
        *extra,
    ]  # fmt: skip
    with log.open("ab") as fh:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _logged(log: Path, event: str, where: Callable[[dict[str, Any]], bool] = bool) -> int:
    return sum(1 for e in _events(log) if e.get("event") == event and where(e))


def _ms(text: str) -> int:
    """An RFC 3339 time of Alertmanager (nanoseconds, Z) as epoch milliseconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    return int(whole * 1000) + int((frac + "000")[:3])


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert [ln for ln in text.splitlines() if ln.startswith("%")] == []  # no raw librdkafka


def test_an_episode_fires_then_resolves_in_the_real_alertmanager(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    webhook: Webhook,
    tmp_path: Path,
    bridge_procs: list[subprocess.Popen[bytes]],
) -> None:
    topic = new_topic(partitions=1, prefix="alerts")
    group = unique_name("bridge")
    episode = unique_name("ep")
    log = tmp_path / "bridge.log"
    with run_alertmanager(tmp_path / "am", _am_config(webhook)) as am:
        bridge_procs.append(_start_bridge(kafka_bootstrap, am.url, topic, group, log))
        # Another episode opens before ours and resolves after it opened: a restart re-reads
        # from our episode's first alert, which leaves the other's resolved alert behind it.
        other = unique_name("ep-other")
        produce_records(
            kafka_bootstrap,
            topic,
            [
                _alert(AlertState.OPENED, other, 0),
                _alert(AlertState.OPENED, episode, 1, severity=Severity.MAJOR, score=2.0),
                _alert(AlertState.RESOLVED, other, 2),
            ],
        )

        # Firing: listed active by the API, with the episode's labels and the input reference.
        wait_until(lambda: len(_am_alerts(am, episode)) == 1, 60, "the alert in Alertmanager")
        (firing,) = _am_alerts(am, episode)
        assert firing["status"]["state"] == "active"
        assert firing["labels"] == {
            "alertname": "DetectorAnomaly",
            "episode_id": episode,
            "source": "pump-1",
            "model": "ecg-vae",
            "severity": "major",
            "env": "test",
        }
        ann = firing["annotations"]
        assert ann["state"] == "opened" and ann["score"] == "2" and ann["threshold"] == "1"
        assert ann["input"] == "windows/2/1"
        fingerprint = firing["fingerprint"]
        wait_until(lambda: webhook.alerts(episode, "firing"), 30, "a firing notification")
        assert webhook.alerts(episode, "firing")[0]["fingerprint"] == fingerprint

        # A restart resumes from the bridge's committed offsets: the open episode is found
        # again and posted again under the same label set and start, which changes nothing.
        proc = bridge_procs[-1]
        wait_until(lambda: _logged(log, "alertmanager_posted") >= 1, 30, "the post logged")
        _stop(proc, log)
        log2 = tmp_path / "bridge2.log"
        bridge_procs.append(
            _start_bridge(kafka_bootstrap, am.url, topic, group, log2, min_firing="3")
        )
        wait_until(
            lambda: _logged(log2, "alertmanager_posted", lambda e: e.get("opened") == 1) >= 1,
            60,
            "the restarted bridge to post the open episode again",
        )
        (again,) = _am_alerts(am, episode)
        assert again["fingerprint"] == fingerprint
        assert again["startsAt"] == firing["startsAt"]
        # The other episode, opened before the committed offset, is not posted again.
        assert _logged(log2, "alertmanager_posted", lambda e: e.get("resolved")) == 0

        produce_records(kafka_bootstrap, topic, [_alert(AlertState.RESOLVED, episode, 3)])
        wait_until(lambda: _am_alerts(am, episode) == [], 60, "the alert to resolve")
        wait_until(lambda: webhook.alerts(episode, "resolved"), 30, "a resolved notification")
        (resolved,) = webhook.alerts(episode, "resolved")[:1]
        assert resolved["fingerprint"] == fingerprint
        assert resolved["annotations"]["state"] == "resolved"
        assert resolved["endsAt"] >= resolved["startsAt"]

        # A blip, opened and resolved at once, still fires (for --min-firing-s, 3 s here) so
        # that Alertmanager notifies it, then resolves.
        blip = unique_name("ep-blip")
        produce_records(
            kafka_bootstrap,
            topic,
            [_alert(AlertState.OPENED, blip, 4), _alert(AlertState.RESOLVED, blip, 5)],
        )
        wait_until(lambda: webhook.alerts(blip, "firing"), 30, "the blip notified firing")
        wait_until(lambda: webhook.alerts(blip, "resolved"), 30, "the blip notified resolved")
        assert _am_alerts(am, blip) == []
        (ended,) = webhook.alerts(blip, "resolved")[:1]
        lasted = _ms(ended["endsAt"]) - _ms(ended["startsAt"])
        assert 3_000 <= lasted < 10_000, lasted
        _stop(bridge_procs[-1], log2)


def test_an_unreachable_alertmanager_is_retried_until_it_answers(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    webhook: Webhook,
    tmp_path: Path,
    bridge_procs: list[subprocess.Popen[bytes]],
) -> None:
    topic = new_topic(partitions=1, prefix="alerts")
    episode = unique_name("ep")
    log = tmp_path / "bridge.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bridge_procs.append(_start_bridge(kafka_bootstrap, url, topic, unique_name("bridge"), log))
    produce_records(kafka_bootstrap, topic, [_alert(AlertState.OPENED, episode, 0)])
    wait_until(lambda: _logged(log, "alertmanager_unreachable") >= 2, 60, "failed attempts")
    refused = next(e for e in _events(log) if e["event"] == "alertmanager_unreachable")
    assert refused["level"] == "warning" and str(port) in refused["error"]
    with run_alertmanager(tmp_path / "am", _am_config(webhook), port=port) as am:
        wait_until(lambda: len(_am_alerts(am, episode)) == 1, 60, "the alert after recovery")
        assert _logged(log, "alertmanager_reachable") == 1
        _stop(bridge_procs[-1], log)
