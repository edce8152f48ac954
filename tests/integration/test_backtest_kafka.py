"""Backtest = the service without Kafka: a file replayed into a topic and run through the
detector gives the alerts and events ``detector backtest`` computes for the same file.

One labelled CSV (two channels, a sine with noise; two short injected incidents; then a level
shift that persists to the end), one small real Keras bundle, one fresh one-partition topic.
The producer's replay sends the file's windows (the same window and stride the backtest
cuts), the service consumes them all (exactly-once, default adaptive thresholds), and a
read_committed consumer reads what it published; ``backtest_file`` runs the same file with
the same settings and the topic's name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Message

from detector.alerts import Alert, AlertState
from detector.backtest import backtest_file
from detector.datafile import read_windows
from detector.events import parse_event
from detector.kafka.state import read_committed_to_end
from detector.messages import decode_window
from detector.service import build_service
from kafka_local.clients import consume_records, unique_name, wait_committed
from producer.__main__ import main as producer_main
from tests.integration.detector_harness import running, settings_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_structlog")]

WINDOW = 16
STRIDE = 8  # overlapping windows: the stride must reach both the producer and the backtest
ROWS = 4800  # 599 windows
T0_S = 1_700_000_000  # the file's times: epoch seconds, one row per second
INCIDENTS = (1600, 2400)  # first rows of two 12-row incidents on channel a
SHIFT_ROW = 3200  # channel b moves up by 0.5 from here to the end of the file
SHIFT_AFTER = 40  # lifecycle: an episode open this many windows is a sustained shift
SOURCE = "line7"  # the file's stem: the source id of both the replay and the backtest


def _series(rng: np.random.Generator, n: int) -> np.ndarray:
    i = np.arange(n)
    a = np.sin(2 * np.pi * i / 16) + rng.normal(0, 0.1, n)
    b = 0.5 * np.cos(2 * np.pi * i / 16) + rng.normal(0, 0.1, n)
    return np.stack([a, b], axis=1)


def _write_csv(path: Path) -> Path:
    x = _series(np.random.default_rng(0), ROWS)
    label = np.zeros(ROWS, dtype=int)
    for start in INCIDENTS:
        x[start : start + 12, 0] += 3.0
        label[start : start + 12] = 1
    x[SHIFT_ROW:, 1] += 0.5
    label[SHIFT_ROW : SHIFT_ROW + WINDOW] = 1  # the change point itself is labelled
    lines = ["time,a,b,label"]
    lines += [f"{T0_S + i},{x[i, 0]:.5f},{x[i, 1]:.5f},{label[i]}" for i in range(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real bundle fitted on normal windows of the same process (a few seconds)."""
    from tests.bundle_factory import build_bundle

    train = _series(np.random.default_rng(1), 600 * STRIDE + WINDOW)
    windows = np.stack(
        [train[k : k + WINDOW] for k in range(0, len(train) - WINDOW + 1, STRIDE)]
    ).astype(np.float32)
    return build_bundle(tmp_path_factory.mktemp("bundle") / "bundle", windows, epochs=12)


def _read_to_end(bootstrap: str, topic: str) -> list[Message]:
    """Every committed record of every partition of ``topic`` (read_committed, bounded)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("meta")})
    try:
        partitions = sorted(probe.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        probe.close()
    config = {"bootstrap.servers": bootstrap}
    records, unfinished = read_committed_to_end(config, topic, partitions, 60, unique_name("r"))
    assert unfinished == [], f"{topic}: partitions {unfinished} not read to their end in 60 s"
    return records


def _alerts(messages: list[Message]) -> list[Alert]:
    return [Alert.model_validate_json(m.value() or b"") for m in messages]


def test_streamed_alerts_and_events_are_the_backtests(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _write_csv(tmp_path / f"{SOURCE}.csv")
    expected = read_windows(data, window=WINDOW, stride=STRIDE)
    n = len(expected)
    topic = new_topic(partitions=1, prefix="bt-windows")

    # 1. The producer's replay: one record per window, in the file's window order.
    argv = ["replay", "--file", str(data), "--window", str(WINDOW), "--stride", str(STRIDE)]
    argv += ["--rate", "0", "--encoding", "binary", "--event-time", "file", "--topic", topic]
    assert producer_main([*argv, "--bootstrap-servers", kafka_bootstrap, "--quiet"]) == 0
    capsys.readouterr()
    sent = consume_records(kafka_bootstrap, topic, n, timeout_s=60)
    assert [(m.partition(), m.offset()) for m in sent] == [(0, i) for i in range(n)]
    for i, m in enumerate(sent):
        w = decode_window(m.key(), m.value(), m.headers())
        assert (w.source_id, w.seq, w.event_time_ms) == (
            SOURCE,
            i,
            int(expected.event_time_ms[i]),
        ), f"offset {i}"
        np.testing.assert_array_equal(w.values, expected.values[i])

    # 2. The service on that topic until it has committed every record. (The file ends
    # inside an episode; the service would resolve it after resolve_after_s = 300 s of wall
    # clock without input, an idle sweep the backtest has no counterpart for. It is stopped
    # long before.)
    s = settings_for(
        kafka_bootstrap,
        bundle=bundle,
        topics={"windows": topic},
        lifecycle={"shift_after_windows": SHIFT_AFTER},
    )
    assert s.threshold.method == "adaptive"
    service = build_service(s)
    with running(service):
        wait_committed(kafka_bootstrap, s.group_id, topic, 1, n, timeout_s=120)
    alert_msgs = _read_to_end(kafka_bootstrap, s.topics.alerts)
    event_msgs = _read_to_end(kafka_bootstrap, s.topics.events)
    assert service.totals["scored"] == n and service.totals["dead_letters"] == 0
    streamed = _alerts(alert_msgs)

    # 3. The backtest of the same file, same settings, the topic's name.
    out = tmp_path / "backtest"
    summary = backtest_file(
        bundle,
        data,
        out,
        threshold=s.threshold,
        lifecycle=s.lifecycle,
        read={"stride": STRIDE},
        topic=topic,
        plot=False,
    )
    backtested = [
        Alert.model_validate_json(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()
    ]
    events = [parse_event(line) for line in (out / "events.jsonl").read_bytes().splitlines()]

    # The scenario is what it claims: both incidents and the shift raise alerts, the shift
    # ends as a sustained shift, the incidents end by themselves.
    assert summary["all_windows"]["windows"] == n
    assert summary["anomaly_spans"] == 3 and summary["spans_detected"] == 3
    resolved = [a for a in backtested if a.state is AlertState.RESOLVED]
    assert any((a.resolved_reason or "").startswith("sustained shift") for a in resolved)
    assert any("consecutive normal windows" in (a.resolved_reason or "") for a in resolved)

    # Identical alerts: ids and states as sets, no duplicates on the topic.
    want = {(a.alert_id, a.state) for a in backtested}
    got = {(a.alert_id, a.state) for a in streamed}
    assert want, "the scenario must raise alerts"
    assert got == want
    assert len(streamed) == len(got), "no alert published twice"
    assert Counter(a.state.value for a in streamed) == Counter(summary["alerts"])
    by_id = {a.alert_id: a for a in backtested}
    for a in streamed:
        b = by_id[a.alert_id]
        assert (a.episode_id, a.source_id, a.input, a.event_time_ms) == (
            b.episode_id,
            b.source_id,
            b.input,
            b.event_time_ms,
        )
        assert (a.resolved_reason, a.anomalous_windows, a.severity) == (
            b.resolved_reason,
            b.anomalous_windows,
            b.severity,
        )
        assert a.score == pytest.approx(b.score, rel=1e-4)
        assert a.threshold.value == pytest.approx(b.threshold.value, rel=1e-4)
        assert (a.threshold.scope, a.threshold.samples_used) == (
            b.threshold.scope,
            b.threshold.samples_used,
        )

    # Identical events, in the same order (one source; the events topic has one partition).
    streamed_events = [parse_event(m.value() or b"") for m in event_msgs]
    assert Counter(e.type for e in streamed_events) == Counter(e.type for e in events)
    assert Counter(e.type for e in events) == Counter(summary["events"])
    assert summary["threshold_states_due"] == summary["events"]["threshold_recalibrated"]
    assert "shift_accepted" in summary["events"]
    assert [(e.type, e.source_id, e.at_ms) for e in streamed_events] == [
        (e.type, e.source_id, e.at_ms) for e in events
    ]
    for got_event, want_event in zip(streamed_events, events, strict=True):
        if want_event.type == "threshold_recalibrated":
            assert got_event.reason == want_event.reason  # type: ignore[union-attr]
            assert got_event.new == pytest.approx(want_event.new, rel=1e-4)  # type: ignore[union-attr]
