"""Alert episodes as Alertmanager v2 alerts: mapping, episode book, HTTP client, retries.

The HTTP tests post to a tiny in-process server that records requests (the request format
only); the real Alertmanager is in tests/integration/test_alertmanager_bridge.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from detector.alertmanager.bridge import AlertmanagerBridge, BridgeSettings
from detector.alertmanager.client import AlertmanagerClient, alerts_endpoint
from detector.alertmanager.mapping import (
    AlertMapping,
    EpisodeBook,
    am_alert,
    episode_labels,
    rfc3339,
)
from detector.alerts import (
    Alert,
    AlertState,
    ChannelContribution,
    InputRef,
    ModelRef,
    Severity,
    ThresholdRef,
)
from detector.errors import AlertmanagerRejectedError, AlertmanagerUnavailableError, ConfigError
from detector.kafka.config import KafkaSettings
from kafka_local import free_port

T0 = 1_800_000_000_000  # wall-clock ms of the tests' "now"


def make_alert(
    state: AlertState = AlertState.OPENED,
    episode: str = "ep-1",
    severity: Severity = Severity.MINOR,
    offset: int = 7,
    detected_ms: int = T0,
    score: float = 1.2,
    reason: str | None = None,
) -> Alert:
    return Alert(
        alert_id=f"{episode}-{state.value}-{offset}",
        episode_id=episode,
        state=state,
        source_id="pump-1",
        severity=severity,
        input=InputRef(topic="windows", partition=2, offset=offset, seq=3),
        event_time_ms=1_000,
        detected_at_ms=detected_ms,
        score=score,
        peak_score=max(score, 1.2),
        threshold=ThresholdRef(
            value=1.0,
            method="adaptive",
            target_far=0.01,
            samples_used=500,
            set_at_ms=None,
            scope="source",
        ),
        model=ModelRef(name="ecg-vae", version="3", sha256="ab" * 32),
        anomalous_windows=1,
        episode_started_ms=1_000,
        resolved_reason=reason,
        top_channels=[ChannelContribution(channel="ecg", error=0.5)],
    )


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# -- mapping ---------------------------------------------------------------------------------


def test_an_alert_maps_to_labels_annotations_and_wall_clock_times() -> None:
    mapping = AlertMapping(labels={"env": "prod"}, expire_after_s=300)
    alert = make_alert()
    out = am_alert(alert, episode_labels(alert, mapping), T0, T0 + 5_000, mapping)
    assert out["labels"] == {
        "env": "prod",
        "alertname": "DetectorAnomaly",
        "episode_id": "ep-1",
        "source": "pump-1",
        "model": "ecg-vae",
        "severity": "minor",
    }
    ann = out["annotations"]
    assert ann["state"] == "opened"
    assert ann["score"] == "1.2" and ann["threshold"] == "1"
    assert ann["input"] == "windows/2/7"
    assert (ann["input_topic"], ann["input_partition"], ann["input_offset"]) == (
        "windows",
        "2",
        "7",
    )
    assert ann["target_far"] == "0.01" and ann["threshold_method"] == "adaptive"
    assert ann["top_channels"] == "ecg 0.5"
    assert "pump-1" in ann["summary"] and "windows/2/7" in ann["description"]
    assert all(isinstance(v, str) for v in ann.values())
    assert _ms(out["startsAt"]) == T0
    assert _ms(out["endsAt"]) == T0 + 5_000 + 300_000  # firing: expires unless re-posted
    assert "generatorURL" not in out


def test_resolved_ends_when_resolved_but_not_before_min_firing() -> None:
    alert = make_alert(AlertState.RESOLVED, detected_ms=T0 + 2_000, reason="normal again")
    labels = episode_labels(alert, AlertMapping())
    short = am_alert(alert, labels, T0, T0 + 9_000, AlertMapping(min_firing_s=60))
    assert _ms(short["endsAt"]) == T0 + 60_000  # a blip still outlives group_wait
    exact = am_alert(alert, labels, T0, T0 + 9_000, AlertMapping(min_firing_s=0))
    assert _ms(exact["endsAt"]) == T0 + 2_000
    assert exact["annotations"]["resolved_reason"] == "normal again"
    # A detector clock ahead of the bridge's cannot push endsAt into the future.
    ahead = make_alert(AlertState.RESOLVED, detected_ms=T0 + 50_000)
    out = am_alert(ahead, labels, T0, T0 + 9_000, AlertMapping(min_firing_s=0))
    assert _ms(out["endsAt"]) == T0 + 9_000


def test_generator_url_links_the_input_record() -> None:
    mapping = AlertMapping(generator_url="http://ui/{topic}/{partition}/{offset}?s={source}")
    alert = make_alert()
    out = am_alert(alert, episode_labels(alert, mapping), T0, T0, mapping)
    assert out["generatorURL"] == "http://ui/windows/2/7?s=pump-1"
    with pytest.raises(ValueError, match="generator_url"):
        AlertMapping(generator_url="http://ui/{nope}")


@pytest.mark.parametrize("name", ["severity", "alertname", "bad-name", "0x"])
def test_static_labels_cannot_override_identity_or_be_invalid(name: str) -> None:
    with pytest.raises(ValueError, match="label"):
        AlertMapping(labels={name: "x"})


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(T0 + 5) == "2027-01-15T08:00:00.005Z"


# -- episode book ----------------------------------------------------------------------------


def test_one_episode_keeps_one_label_set_from_opened_to_resolved() -> None:
    book = EpisodeBook(AlertMapping(min_firing_s=0))
    opened = book.apply(make_alert(), partition=0, offset=10, now_ms=T0)
    assert opened is not None
    # The severity grows during the episode: the label set (fingerprint) must not.
    ongoing = book.apply(
        make_alert(AlertState.ONGOING, severity=Severity.CRITICAL, score=5.0, offset=11),
        partition=0,
        offset=11,
        now_ms=T0 + 1_000,
    )
    assert ongoing is not None
    assert ongoing["labels"] == opened["labels"]
    assert ongoing["labels"]["severity"] == "minor"
    assert ongoing["annotations"]["peak_severity"] == "critical"
    assert ongoing["startsAt"] == opened["startsAt"]
    assert len(book.firing(T0 + 2_000)) == 1
    resolved = book.apply(
        make_alert(AlertState.RESOLVED, severity=Severity.CRITICAL, detected_ms=T0 + 3_000),
        partition=0,
        offset=12,
        now_ms=T0 + 4_000,
    )
    assert resolved is not None
    assert resolved["labels"] == opened["labels"]
    assert _ms(resolved["endsAt"]) == T0 + 3_000
    assert book.firing(T0 + 5_000) == []


def test_commit_stays_at_the_first_alert_of_the_oldest_open_episode() -> None:
    book = EpisodeBook(AlertMapping(min_firing_s=0))
    assert book.resume_offset(0, 5) == 5
    book.apply(make_alert(episode="a"), 0, 5, T0)
    book.apply(make_alert(episode="b"), 0, 6, T0)
    book.apply(make_alert(episode="c"), 1, 3, T0)
    book.apply(make_alert(AlertState.ONGOING, episode="a"), 0, 7, T0)
    assert book.resume_offset(0, 8) == 5
    book.apply(make_alert(AlertState.RESOLVED, episode="a"), 0, 8, T0)
    assert book.resume_offset(0, 9) == 6
    book.apply(make_alert(AlertState.RESOLVED, episode="b"), 0, 9, T0)
    assert book.resume_offset(0, 10) == 10
    assert book.resume_offset(1, 4) == 3
    assert book.forget_partitions([1]) == 1
    assert book.resume_offset(1, 4) == 4


def test_a_restart_from_the_committed_offset_posts_the_same_alerts_again() -> None:
    """Replaying from resume_offset gives the same labels and startsAt: idempotent posts."""
    stream = [
        make_alert(episode="a", offset=0, detected_ms=T0),
        make_alert(episode="b", offset=1, detected_ms=T0 + 10),
        make_alert(AlertState.RESOLVED, episode="a", offset=2, detected_ms=T0 + 20),
        make_alert(AlertState.ONGOING, episode="b", offset=3, severity=Severity.MAJOR),
    ]
    first = EpisodeBook(AlertMapping(min_firing_s=0))
    posted = [first.apply(a, 0, i, T0 + 100) for i, a in enumerate(stream)]
    resume = first.resume_offset(0, len(stream))
    assert resume == 1  # episode b is still open
    again = EpisodeBook(AlertMapping(min_firing_s=0))
    # Everything below len(stream) was posted before the restart: "replayed".
    reposted = [
        again.apply(a, 0, i, T0 + 100, replayed=True) for i, a in enumerate(stream) if i >= resume
    ]
    # Episode a's resolved alert is skipped: without its opened alert its labels could not
    # be rebuilt (its severity label is the opened alert's).
    assert reposted[1] is None
    key = lambda p: (tuple(sorted(p["labels"].items())), p["startsAt"])  # noqa: E731
    assert {key(p) for p in reposted if p is not None} <= {key(p) for p in posted if p}
    assert [key(p) for p in again.firing(T0)] == [key(p) for p in first.firing(T0)]
    # Not replayed (e.g. an episode dropped as stale, then resolved): posted.
    assert EpisodeBook(AlertMapping()).apply(stream[2], 0, 2, T0) is not None


def test_a_short_episode_fires_for_min_firing_s_then_resolves_in_the_past() -> None:
    """Alertmanager keeps the later endsAt of an alert not yet resolved: a resolution is
    posted only once due, with an endsAt that is already past."""
    book = EpisodeBook(AlertMapping(min_firing_s=60, expire_after_s=300))
    opened = book.apply(make_alert(detected_ms=T0), 0, 0, T0)
    assert opened is not None and _ms(opened["endsAt"]) == T0 + 300_000
    held = book.apply(make_alert(AlertState.RESOLVED, detected_ms=T0 + 500), 0, 1, T0 + 600)
    assert held is None  # not yet: it has not fired for a minute
    assert book.firing(T0 + 1_000) == []  # no re-post of what is resolving
    assert book.drop_stale(T0 * 2) == []
    assert book.resume_offset(0, 2) == 0  # still pinned until its resolution is posted
    assert book.due(T0 + 59_999) == []
    ((partition, resolved),) = book.due(T0 + 61_000)
    assert partition == 0 and resolved["labels"] == opened["labels"]
    assert _ms(resolved["startsAt"]) == T0
    assert _ms(resolved["endsAt"]) == T0 + 60_000  # in the past when posted
    assert resolved["annotations"]["state"] == "resolved"
    assert book.episodes == {} and book.resume_offset(0, 2) == 2


def test_stale_open_episodes_are_dropped() -> None:
    book = EpisodeBook(AlertMapping(stale_after_s=60))
    book.apply(make_alert(episode="old", detected_ms=T0), 0, 0, T0)
    book.apply(make_alert(episode="new", detected_ms=T0 + 50_000), 0, 1, T0)
    stale = book.drop_stale(T0 + 70_000)
    assert [ep.latest.episode_id for ep in stale] == ["old"]
    assert list(book.episodes) == ["new"]
    assert EpisodeBook(AlertMapping(stale_after_s=0)).drop_stale(T0 * 2) == []


# -- HTTP client -----------------------------------------------------------------------------


class _Recorder:
    """A tiny HTTP server that records POSTs and answers with a scripted status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append((self.path, dict(self.headers), json.loads(body)))
                payload = b'{"error":"bad alert"}' if recorder.status >= 400 else b""
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def am() -> Iterator[_Recorder]:
    server = _Recorder()
    yield server
    server.close()


def test_client_posts_a_json_array_to_the_v2_api(am: _Recorder) -> None:
    alert = make_alert()
    payload = am_alert(alert, episode_labels(alert, AlertMapping()), T0, T0, AlertMapping())
    assert AlertmanagerClient([am.url + "/"]).post([payload]) == []
    ((path, headers, body),) = am.requests
    assert path == "/api/v2/alerts"
    assert headers["Content-Type"] == "application/json"
    assert body == [payload]


def test_client_errors_say_whether_a_retry_can_help(am: _Recorder) -> None:
    client = AlertmanagerClient([am.url], timeout_s=2)
    am.status = 400
    with pytest.raises(AlertmanagerRejectedError, match=r"HTTP 400.*bad alert"):
        client.post([{"labels": {}}])
    am.status = 503
    with pytest.raises(AlertmanagerUnavailableError, match="HTTP 503"):
        client.post([{"labels": {}}])
    am.status = 404
    with pytest.raises(AlertmanagerUnavailableError, match="v2 API"):
        client.post([{"labels": {}}])
    down = AlertmanagerClient([f"http://127.0.0.1:{free_port()}"], timeout_s=2)
    with pytest.raises(AlertmanagerUnavailableError, match="refused"):
        down.post([{"labels": {}}])


def test_one_instance_of_a_cluster_taking_the_alerts_is_enough(am: _Recorder) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    failures = AlertmanagerClient([down, am.url], timeout_s=2).post([{"labels": {"a": "b"}}])
    assert len(am.requests) == 1
    assert len(failures) == 1 and down in failures[0]


def test_urls_must_be_http() -> None:
    assert alerts_endpoint("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"
    for bad in ("am:9093", "ftp://am", "http://"):
        with pytest.raises(ConfigError, match="Alertmanager URL"):
            alerts_endpoint(bad)


# -- the bridge's retries --------------------------------------------------------------------


class _FlakyClient:
    """Fails ``failures`` times with 'connection refused', then takes every post."""

    endpoints = ("http://am:9093/api/v2/alerts",)

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or AlertmanagerUnavailableError("http://am:9093: connection refused")
        self.posted: list[list[dict[str, Any]]] = []

    def post(self, alerts: list[dict[str, Any]]) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.posted.append(list(alerts))
        return []


def _bridge(client: _FlakyClient) -> AlertmanagerBridge:
    settings = BridgeSettings(urls=["http://am:9093"], retry_initial_s=0.001, retry_max_s=0.002)
    return AlertmanagerBridge(settings, KafkaSettings(), client=client)  # type: ignore[arg-type]


def test_an_unreachable_alertmanager_is_retried_with_clear_log_lines() -> None:
    import structlog

    client = _FlakyClient(failures=3)
    bridge = _bridge(client)
    with structlog.testing.capture_logs() as logs:
        assert bridge._post([{"labels": {"a": "b"}}], "alerts")
    assert client.posted == [[{"labels": {"a": "b"}}]]
    events = [e["event"] for e in logs]
    assert events.count("alertmanager_unreachable") == 3
    assert "alertmanager_reachable" in events
    first = next(e for e in logs if e["event"] == "alertmanager_unreachable")
    assert first["log_level"] == "warning" and "connection refused" in first["error"]
    assert first["attempt"] == 1 and first["retry_in_s"] >= 0


def test_a_stop_during_retries_gives_up_without_committing() -> None:
    bridge = _bridge(_FlakyClient(failures=10**6))
    bridge.request_stop()
    assert bridge._post([{"labels": {}}], "alerts") is False


def test_a_rejected_payload_is_logged_and_skipped() -> None:
    import structlog

    client = _FlakyClient(failures=1, error=AlertmanagerRejectedError("HTTP 400: bad"))
    bridge = _bridge(client)
    with structlog.testing.capture_logs() as logs:
        assert bridge._post([{"labels": {}}], "alerts") is True
    assert [e["event"] for e in logs] == ["alertmanager_rejected"]
    assert bridge.totals["rejected"] == 1


class _Msg:
    """What the bridge reads of a confluent-kafka Message."""

    def __init__(self, value: bytes | None, offset: int, partition: int = 0) -> None:
        self._value, self._offset, self._partition = value, offset, partition

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return self._partition

    def topic(self) -> str:
        return "alerts"


def test_a_batch_posts_one_alert_per_episode_and_skips_what_is_not_an_alert() -> None:
    import structlog

    bridge = _bridge(_FlakyClient(failures=0))
    alerts = [
        make_alert(episode="a"),
        make_alert(AlertState.ONGOING, episode="a", score=3.0),
        make_alert(episode="b"),
        make_alert(AlertState.RESOLVED, episode="b"),
    ]
    msgs = [_Msg(a.model_dump_json().encode(), i) for i, a in enumerate(alerts)]
    msgs.insert(2, _Msg(b"not an alert", 99))
    msgs.append(_Msg(None, 100))
    with structlog.testing.capture_logs() as logs:
        bridge._take(msgs)  # type: ignore[arg-type]
    assert [e["event"] for e in logs] == ["alert_undecodable"]
    assert bridge.totals == {"read": 4, "posted": 0, "undecodable": 1, "rejected": 0}
    pending = {k: p["annotations"]["state"] for k, (_part, p) in bridge._pending.items()}
    # b resolved at once: it fires for min_firing_s (60) first, its resolution held back.
    assert pending == {"a": "ongoing", "b": "opened"}
    assert bridge._flush()
    assert bridge._pending == {}
    assert bridge.book.resume_offset(0, 101) == 0  # episode a is open since offset 0
    ((_part, resolved),) = bridge.book.due(T0 + 60_000)
    assert resolved["labels"]["episode_id"] == "b"
    assert resolved["annotations"]["state"] == "resolved"


def test_bridge_settings_refuse_an_expiry_shorter_than_the_repost_interval() -> None:
    with pytest.raises(ValueError, match="expire_after_s must exceed"):
        BridgeSettings(urls=["http://am"], repost_interval_s=600)


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(am: _Recorder) -> None:
    url = am.url.replace("http://", "http://bridge:s%40cret@")
    client = AlertmanagerClient([url])
    assert client.endpoints == [am.url + "/api/v2/alerts"]
    client.post([{"labels": {"a": "b"}}])
    ((_path, headers, _body),) = am.requests
    assert headers["Authorization"] == "Basic YnJpZGdlOnNAY3JldA=="  # bridge:s@cret


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to-alertmanager", "am:9093"], "an Alertmanager URL must be http(s)://"),
        (["--to-alertmanager", "http://am", "--expire-after-s", "5"], "expire_after_s must"),
        (["--to-alertmanager", "http://am", "--label", "env"], "--label must be NAME=VALUE"),
        (["--to-alertmanager", "http://am", "--label", "source=x"], "set by the bridge itself"),
    ],
)
def test_bad_bridge_options_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from detector.__main__ import main

    assert main(["alerts", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("detector: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
