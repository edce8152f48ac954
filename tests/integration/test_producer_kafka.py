"""The producer on a real broker: exact counts, keys, headers, encodings, its real rate,
failed deliveries as errors, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from detector.kafka.config import KafkaSettings
from detector.messages import (
    CONTENT_TYPE_F32,
    CONTENT_TYPE_JSON,
    H_ANOMALY_TYPE,
    H_CONTENT_TYPE,
    H_LABEL,
    H_REGIME,
    decode_window,
)
from kafka_local.clients import consume_records, unique_name, wait_until
from producer.__main__ import main
from producer.errors import DeliveryError
from producer.kafka_io import WindowProducer
from producer.scenarios import DriftScenario
from producer.simulate import make_arrays

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_structlog")]

REPO = Path(__file__).resolve().parents[2]


def _records_on(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of its partitions' offset ranges)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("count")})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _summary(out: str) -> dict[str, object]:
    doc: dict[str, object] = orjson.loads(out.strip().splitlines()[-1])
    return doc


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_n_windows_make_exactly_n_records_with_keys_headers_and_encoding(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    encoding: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = new_topic(partitions=3)
    n = 600
    argv = ["simulate", "--kind", "ecg", "--sources", "4", "--count", str(n), "--rate", "0"]
    argv += ["--anomaly-rate", "0.1", "--seed", "5", "--drift", "gradual", "--encoding", encoding]
    argv += ["--topic", topic, "--bootstrap-servers", kafka_bootstrap, "--quiet"]
    started_ms = time.time_ns() // 1_000_000
    assert main(argv) == 0
    ended_ms = time.time_ns() // 1_000_000
    assert _summary(capsys.readouterr().out)["delivered"] == n
    assert _records_on(kafka_bootstrap, topic) == n, "exactly N records, no more, no fewer"
    records = consume_records(kafka_bootstrap, topic, n, timeout_s=60)
    expected = make_arrays(
        "ecg",
        n,
        seed=5,
        anomaly_rate=0.1,
        n_sources=4,
        drift=DriftScenario("gradual", start=37, length=75),  # the CLI's defaults for 150/source
    )
    want_type = CONTENT_TYPE_JSON if encoding == "json" else CONTENT_TYPE_F32
    by_key_seq = {}
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    for m in records:
        h = dict(m.headers() or [])
        assert h[H_CONTENT_TYPE].decode() == want_type
        w = decode_window(m.key(), m.value(), m.headers())
        assert w.source_id == (m.key() or b"").decode()
        assert started_ms <= m.timestamp()[1] <= ended_ms, "the record timestamp: produce time"
        by_key_seq[(w.source_id, w.seq)] = (w, h)
        seqs_by_key[w.source_id].append(w.seq)
    assert {k: len(v) for k, v in seqs_by_key.items()} == {f"ecg-{i}": n // 4 for i in range(4)}
    for seqs in seqs_by_key.values():
        assert seqs == list(range(n // 4)), "per-source seq from 0, in order within a key"
    for i, src in enumerate(expected.source_ids):
        w, h = by_key_seq[(src, int(expected.seqs[i]))]
        np.testing.assert_allclose(w.values, expected.values[i], rtol=1e-6, atol=1e-6)
        assert h[H_LABEL] == str(int(expected.labels[i])).encode()
        assert h[H_ANOMALY_TYPE].decode() == expected.anomaly_types[i]
        assert h[H_REGIME].decode() == expected.regimes[i]
    assert any(r.startswith("drift:gradual:") for r in expected.regimes)


def test_rate_over_five_seconds_is_near_the_target(
    kafka_bootstrap: str, new_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic()
    target = 400.0
    started = time.monotonic()
    argv = ["simulate", "--kind", "sensor", "--sources", "3", "--rate", str(target)]
    argv += ["--duration", "5", "--topic", topic, "--bootstrap-servers", kafka_bootstrap]
    argv += ["--encoding", "binary", "--quiet"]
    assert main(argv) == 0
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    summary = _summary(captured.out)
    sent = int(captured.err.split("sent ")[1].split(" windows")[0])
    assert sent == summary["sent"] == summary["delivered"]
    reported = float(summary["rate"])  # type: ignore[arg-type]
    records = consume_records(kafka_bootstrap, topic, sent, timeout_s=30)
    # The rate seen in the records' own timestamps, over their middle 90 % (robust to a stall
    # at either end on a busy machine).
    stamps = np.sort([m.timestamp()[1] for m in records])
    lo, hi = int(0.05 * len(stamps)), int(0.95 * len(stamps))
    measured = (hi - lo) / ((stamps[hi] - stamps[lo]) / 1000)
    print(f"rate over 5 s: reported {reported:.1f}, from record times {measured:.1f}, target 400")
    assert 0.9 * target <= reported <= 1.05 * target
    assert 0.9 * target <= measured <= 1.1 * target
    assert 4.5 <= float(summary["seconds"]) <= 6.0  # type: ignore[arg-type]
    assert elapsed < 15
    assert _records_on(kafka_bootstrap, topic) == sent


def test_window_producer_api_sends_truth_headers(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    with WindowProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic) as producer:
        producer.connect()
        producer.send("pump-1", 0, 1_700_000_000_000, values, label=1, anomaly_type="spike")
        producer.send("pump-1", 1, 1_700_000_000_500, values, encoding="binary", regime="baseline")
        producer.flush(30)
        assert producer.delivered == 2 and producer.failed == 0
    first, second = consume_records(kafka_bootstrap, topic, 2)
    h1, h2 = dict(first.headers() or []), dict(second.headers() or [])
    assert first.key() == b"pump-1" and h1[H_CONTENT_TYPE] == CONTENT_TYPE_JSON.encode()
    assert h1[H_LABEL] == b"1" and h1[H_ANOMALY_TYPE] == b"spike" and H_REGIME not in h1
    assert h2[H_CONTENT_TYPE] == CONTENT_TYPE_F32.encode() and H_LABEL not in h2
    assert h2[H_REGIME] == b"baseline"
    for m in (first, second):
        np.testing.assert_array_equal(decode_window(m.key(), m.value(), m.headers()).values, values)


def test_a_failed_delivery_is_an_error_never_silence(
    kafka_bootstrap: str, new_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(config={"max.message.bytes": "200"})  # an ECG window in JSON is ~3 kB
    with (
        pytest.raises(DeliveryError, match="were not delivered") as info,
        WindowProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic) as producer,
    ):
        producer.send("ecg-0", 0, 1_700_000_000_000, np.zeros(140, np.float32))
        producer.flush(30)
    assert "too large" in str(info.value).lower()
    argv = ["simulate", "--count", "20", "--rate", "0", "--topic", topic]
    assert main([*argv, "--bootstrap-servers", kafka_bootstrap, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "producer: error: " in err and "not delivered" in err and "Traceback" not in err
    assert _records_on(kafka_bootstrap, topic) == 0


def test_ctrl_c_stops_cleanly_after_flushing_what_was_sent(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    argv = ["simulate", "--sources", "2", "--rate", "200", "--topic", topic, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "producer", *argv, "--bootstrap-servers", kafka_bootstrap],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PRODUCER_LOG_LEVEL": "WARNING"},
    )
    try:
        wait_until(lambda: _records_on(kafka_bootstrap, topic) >= 100, 60, "100 records")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGINT, err
    summary = _summary(out)
    assert summary["interrupted"] is True
    assert summary["sent"] == summary["delivered"] == _records_on(kafka_bootstrap, topic)
    assert "stopped by SIGINT" in err and "Traceback" not in err


def test_replay_of_a_labelled_csv_keeps_labels_and_file_times(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic()
    rows = ["time;flow;temp;label"] + [
        f"{1_700_000_000 + i};{i};{-i};{int(i == 33)}" for i in range(64)
    ]
    path = tmp_path / "line7.csv"
    path.write_text("\n".join(rows) + "\n")
    argv = ["replay", "--file", str(path), "--window", "16", "--rate", "0", "--encoding", "binary"]
    argv += ["--event-time", "file", "--topic", topic, "--bootstrap-servers", kafka_bootstrap]
    started_ms = time.time_ns() // 1_000_000
    assert main([*argv, "--quiet"]) == 0
    ended_ms = time.time_ns() // 1_000_000
    records = consume_records(kafka_bootstrap, topic, 4)
    # The file's times (2023) are the event times; the records are stamped now, so that
    # the topic's retention does not delete them at once.
    assert all(started_ms <= m.timestamp()[1] <= ended_ms for m in records)
    assert _records_on(kafka_bootstrap, topic) == 4
    assert [dict(m.headers() or [])[H_LABEL] for m in records] == [b"0", b"0", b"1", b"0"]
    assert {m.key() for m in records} == {b"line7"}
    windows = [decode_window(m.key(), m.value(), m.headers()) for m in records]
    assert [w.event_time_ms for w in windows] == [
        (1_700_000_000 + 16 * k + 15) * 1000 for k in range(4)
    ]
    assert windows[2].values[0].tolist() == [32.0, -32.0]


def test_replay_of_ecg5000_sends_every_beat(
    kafka_bootstrap: str, new_topic: Callable[..., str], ecg5000_path: Path
) -> None:
    topic = new_topic(partitions=2)
    argv = ["replay", "--file", str(ecg5000_path), "--format", "ecg5000", "--rate", "0"]
    argv += ["--sources", "4", "--encoding", "binary", "--topic", topic]
    assert main([*argv, "--bootstrap-servers", kafka_bootstrap, "--quiet"]) == 0
    assert _records_on(kafka_bootstrap, topic) == 4998
    records = consume_records(kafka_bootstrap, topic, 4998, timeout_s=60)
    labels = [dict(m.headers() or [])[H_LABEL] for m in records]
    assert labels.count(b"1") == 2079, "abnormal beats (ECG5000 label 0) are label 1 here"


def test_an_unreachable_broker_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRODUCER_CONNECT_TIMEOUT_S", "2")
    argv = ["simulate", "--count", "5", "--bootstrap-servers", "127.0.0.1:1", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "producer: error: cannot reach Kafka at 127.0.0.1:1 within 2 s" in err


def test_a_missing_topic_is_created_or_with_no_create_topic_a_clear_error(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    topic = unique_name("absent")
    argv = ["simulate", "--count", "5", "--topic", topic, "--bootstrap-servers", kafka_bootstrap]
    # Whatever the broker's auto.create.topics.enable, this client must not create it.
    no_auto = ["-X", "allow.auto.create.topics=false"]
    assert main([*argv, *no_auto, "--no-create-topic"]) == 2
    assert f"topic '{topic}' does not exist" in capsys.readouterr().err
    assert main([*argv, *no_auto, "--quiet"]) == 0, "created as the detector creates its own"
    assert _records_on(kafka_bootstrap, topic) == 5
    assert _partitions(kafka_bootstrap, topic) == 4, "the detector's default partition count"
    # Replay too, with a partition count of its own.
    replayed = unique_name("replayed")
    src = tmp_path / "beats.csv"
    src.write_text("0.1,0.2,0.3,1\n0.2,0.3,0.4,0\n")
    argv = ["replay", "--file", str(src), "--topic", replayed, "--partitions", "2", "--rate", "0"]
    assert main([*argv, "--bootstrap-servers", kafka_bootstrap, *no_auto, "--quiet"]) == 0
    assert _records_on(kafka_bootstrap, replayed) == 2
    assert _partitions(kafka_bootstrap, replayed) == 2


def _partitions(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("meta")})
    try:
        return len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        consumer.close()
