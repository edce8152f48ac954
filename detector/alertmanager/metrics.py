"""The Alertmanager bridge's own metrics and its /metrics, /healthz endpoint.

Series (all ``alertmanager_bridge_*``): alerts read by state, undecodable records, posts by
outcome (``ok``, ``unavailable``, ``rejected``), the last successful post's time, open
episodes, and the score and threshold of each source's open episode.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from detector.alertmanager.mapping import OpenEpisode

__all__ = ["BridgeEndpoint", "BridgeMetrics"]


class BridgeMetrics:
    """The bridge's own Prometheus series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.read = Counter(
            "alertmanager_bridge_alerts_read",
            "Alerts read from Kafka, by state.",
            ["state"],
            registry=r,
        )
        self.undecodable = Counter(
            "alertmanager_bridge_alerts_undecodable",
            "Records of the alerts topic that are not alerts (skipped).",
            registry=r,
        )
        self.posts = Counter(
            "alertmanager_bridge_posts",
            "POSTs to Alertmanager by outcome (ok, unavailable, rejected).",
            ["outcome"],
            registry=r,
        )
        self.open_episodes = Gauge(
            "alertmanager_bridge_open_episodes", "Episodes kept firing.", registry=r
        )
        self.episode_score = Gauge(
            "alertmanager_bridge_episode_score",
            "Score of the latest alert of the source's open episode (gone when it resolves).",
            ["source"],
            registry=r,
        )
        self.episode_threshold = Gauge(
            "alertmanager_bridge_episode_threshold",
            "Threshold in force at the latest alert of the source's open episode.",
            ["source"],
            registry=r,
        )
        self.last_success = Gauge(
            "alertmanager_bridge_last_success_timestamp_seconds",
            "Unix time of the last post an Alertmanager took.",
            registry=r,
        )
        self._shown: set[str] = set()

    def show_episodes(self, episodes: Iterable[OpenEpisode]) -> None:
        """Open episodes, their per-source score and threshold (at most 200 sources)."""
        episodes = list(episodes)
        latest = {ep.latest.source_id: ep.latest for ep in episodes}
        self.open_episodes.set(len(episodes))
        for source in self._shown - latest.keys():
            with contextlib.suppress(KeyError):
                self.episode_score.remove(source)
                self.episode_threshold.remove(source)
        shown = sorted(latest)[:200]
        for source in shown:
            self.episode_score.labels(source=source).set(latest[source].score)
            self.episode_threshold.labels(source=source).set(latest[source].threshold.value)
        self._shown = set(shown)


class BridgeEndpoint:
    """/metrics and /healthz (200 while the loop has run in the last ``stale_s``)."""

    def __init__(
        self, metrics: BridgeMetrics, host: str, port: int, alive: Callable[[], bool]
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    ok = alive()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"loop stalled\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._httpd.server_address[1])
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
