"""Exactly-once state through restarts: the `detector` process, a real bundle, a real broker.

Each batch's transaction carries the threshold and episode state of every source it touched,
beside its alerts, events and offsets. So however often the detector is killed (SIGKILL, at
arbitrary points) or stopped (SIGTERM), the state topic holds exactly the state of the
committed offsets, and the alerts and events of the interrupted run are those of one
uninterrupted pass, with adaptive thresholds that recalibrate every few windows.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from detector.alerts import Alert
from detector.messages import encode_binary
from kafka_local.clients import (
    committed_total,
    consume_records,
    produce_records,
    unique_name,
    wait_until,
)
from tests.integration.test_detector_process import (  # noqa: F401 (fixtures)
    _env,
    _log_events,
    _normal,
    _spiky,
    _start,
    procs,
    tiny_bundle,
)

pytestmark = pytest.mark.integration

N = 9000  # windows: ~1,100 transactions of 8
SOURCES = 6
# Recalibrations every few windows of a source, drift tests, sustained shifts: every kind of
# state changes many times between two interruptions.
QUANTILE = {
    "method": "quantile", "target_far": 0.05, "window": 200, "min_samples": 20,
    "recalibrate_every": 5, "prior_weight": 50, "drift_recent": 50, "drift_reference_min": 50,
    "drift_check_every": 25, "shift_recent": 60,
}  # fmt: skip
ADAPTIVE = {"level_window": 50, "level_min_samples": 10, "level_every": 3}  # method: default
LIFECYCLE = {"resolve_after_windows": 2, "ongoing_interval_s": 20, "shift_after_windows": 15}


def _stream(seed: int) -> list[tuple[bytes, bytes, Any]]:
    """Sine windows, one in 23 spiky, noisier (scores drift up) after two thirds."""
    rng = np.random.default_rng(seed)
    normal, spiky = _normal(rng, N), _spiky(rng, N)
    normal[2 * N // 3 :] += rng.normal(0, 0.08, normal[2 * N // 3 :].shape).astype(np.float32)
    out = []
    for i in range(N):
        source = f"src-{i % SOURCES}"
        values = spiky[i] if i % 23 == 0 else normal[i]
        value, headers = encode_binary(source, i // SOURCES, 1_000 * i, values)
        out.append((source.encode(), value, headers))
    return out


def _settings_env(threshold: dict[str, Any]) -> dict[str, str]:
    env = {f"DETECTOR_THRESHOLD__{k.upper()}": str(v) for k, v in threshold.items()}
    env.update({f"DETECTOR_LIFECYCLE__{k.upper()}": str(v) for k, v in LIFECYCLE.items()})
    return env


def _fence(bootstrap: str, transactional_id: str) -> None:
    """Abort the killed detector's open transaction now, as its successor would at start-up
    (instead of after transaction.timeout.ms), so the state topic can be read to its end."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
    producer.init_transactions(30)
    producer.flush(5)


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in tps}
    finally:
        consumer.close()


class _Offline:
    """One uninterrupted pass of the core over the input topic, as the service decides it."""

    def __init__(self, bundle: Path, threshold: dict[str, Any]) -> None:
        from detector.bundle import read_manifest
        from detector.model import load_bundle
        from detector.settings import DetectorSettings

        self.manifest = read_manifest(bundle)
        self.model = load_bundle(bundle)
        self.settings = DetectorSettings(  # type: ignore[call-arg]
            _env_file=None, threshold=threshold, lifecycle=LIFECYCLE
        )

    def run(self, inputs: list[Any], upto: dict[int, int] | None = None) -> Any:
        """The core after every input (or those below ``upto[partition]``), and its outputs."""
        from detector.backtest import replay_records
        from detector.core import InputRecord, build_decider

        core = build_decider(self.manifest, self.settings.threshold, self.settings.lifecycle)
        alerts: list[Alert] = []
        events: list[bytes] = []
        for part in (0, 1):
            recs = [
                InputRecord(m.topic(), part, m.offset(), m.key(), m.value(), m.headers(), 0)
                for m in inputs
                if m.partition() == part and (upto is None or m.offset() < upto[part])
            ]
            run = replay_records(core, self.model.score, recs)
            alerts += run.alerts
            events += [e.model_dump_json().encode() for e in run.events]
        return core, alerts, events


def _state_topic(bootstrap: str, topic: str) -> tuple[dict[str, bytes], list[str]]:
    """The committed state records, latest per key (what a restart restores), and the
    records found outside their input partition's state partition (both topics have 2
    partitions, so a source's state lives in the partition of its input)."""
    from detector.kafka.state import H_INPUT_PARTITION, read_committed_to_end

    records, incomplete = read_committed_to_end(
        {"bootstrap.servers": bootstrap}, topic, [0, 1], 60, unique_name("state-check")
    )
    assert incomplete == []
    latest: dict[str, bytes] = {}
    misplaced: list[str] = []
    for m in records:
        key = (m.key() or b"").decode()
        input_partition = int(dict(m.headers() or [])[H_INPUT_PARTITION])
        if input_partition != m.partition():
            misplaced.append(f"{key} of input partition {input_partition} at {m.partition()}")
        if m.value() is None:
            latest.pop(key, None)
        else:
            latest[key] = m.value()
    return latest, misplaced


def _without_arrival(value: bytes) -> Any:
    doc = orjson.loads(value)
    doc.get("episode", {}).pop("last_arrival_ms", None)  # wall clock: differs run to run
    return doc


def _assert_state_is_the_committed_offsets_state(
    bootstrap: str, tag: str, offline: _Offline, inputs: list[Any]
) -> None:
    """The state topic holds, byte for byte, the state of one pass up to the committed
    offsets (episodes but for their wall-clock arrival time); a failure says what differs."""
    from detector.core import Decisions

    upto = _committed(bootstrap, f"{tag}-group", f"{tag}-windows")
    core, _alerts, _events = offline.run(inputs, upto)
    every = Decisions(
        episode_states_due={s: 0 for s in core.bank.sources() if core.tracker.is_open(s)},
        threshold_states_due=dict.fromkeys(core.bank.sources(), 0),
    )
    expected = {key: value for key, _p, value in core.state_records(every)}
    got, misplaced = _state_topic(bootstrap, f"{tag}-state")
    differ = sorted(
        key
        for key in expected.keys() & got.keys()
        if (got[key] != expected[key] if key.startswith("threshold/")
            else _without_arrival(got[key]) != _without_arrival(expected[key]))
    )  # fmt: skip
    if not (misplaced or differ or got.keys() != expected.keys()):
        return
    detail = [
        f"committed offsets {upto}",
        f"{len(misplaced)} state records outside their input partition's state partition "
        f"(first: {misplaced[:3]})",
        f"keys only in the topic {sorted(got.keys() - expected.keys())}, "
        f"only offline {sorted(expected.keys() - got.keys())}, differing {differ}",
    ]
    detail += [
        _explain(offline, inputs, key, got[key], expected[key], upto)
        for key in differ
        if key.startswith("threshold/")
    ]
    pytest.fail("the state topic is not the state at the committed offsets:\n" + "\n".join(detail))


def _snapshot_header(value: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the ring bytes of a threshold state record's snapshot."""
    import base64
    import struct

    raw = base64.b64decode(orjson.loads(value)["threshold"])
    _magic, _version, head_len = struct.unpack_from("<4sBI", raw)
    return orjson.loads(raw[9 : 9 + head_len]), raw[9 + head_len :]


def _explain(
    offline: _Offline,
    inputs: list[Any],
    key: str,
    got: bytes,
    expected: bytes,
    upto: dict[int, int],
) -> str:
    """What differs between two threshold state records, and after which input of the
    source's partition the offline pass held the state read from the topic."""
    from detector.backtest import SCORE_BATCH
    from detector.core import Decisions, InputRecord, Prepared, build_decider

    g, g_ring = _snapshot_header(got)
    e, e_ring = _snapshot_header(expected)
    fields = {f: (g.get(f), e.get(f)) for f in sorted(set(g) | set(e)) if g.get(f) != e.get(f)}
    source = key.removeprefix("threshold/")
    part = next(m.partition() for m in inputs if (m.key() or b"").decode() == source)
    recs = [
        InputRecord(m.topic(), part, m.offset(), m.key(), m.value(), m.headers(), 0)
        for m in inputs
        if m.partition() == part
    ]
    core = build_decider(offline.manifest, offline.settings.threshold, offline.settings.lifecycle)
    matches: list[int] = []
    for start in range(0, len(recs), SCORE_BATCH):  # scored as the offline pass scores
        prepared = core.prepare(recs[start : start + SCORE_BATCH])
        result = offline.model.score(prepared.batch)
        for i, (record, window) in enumerate(zip(prepared.records, prepared.windows, strict=True)):
            one = Prepared([record], [window], prepared.batch[i : i + 1], [])
            core.decide(one, result.take(slice(i, i + 1)), window.event_time_ms)
            if window.source_id == source:
                due = Decisions(threshold_states_due={source: part})
                if core.state_records(due)[0][2] == got:
                    matches.append(record.offset)
    return (
        f"{key} (input partition {part}, committed offset {upto.get(part)}): "
        f"fields differing (topic, offline) {fields}; "
        f"ring bytes equal {g_ring == e_ring} (n {g.get('n')}/{e.get('n')}, "
        f"pos {g.get('pos')}/{e.get('pos')}, seen {g.get('seen')}/{e.get('seen')}); "
        f"the topic's record equals the offline state after input offsets {matches[:10]} "
        f"of partition {part} (+1 = the offsets that state should be committed with)"
    )


@pytest.mark.parametrize(
    ("threshold", "stops"),
    [
        (QUANTILE, [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL]),
        (ADAPTIVE, [signal.SIGKILL]),
        (ADAPTIVE, [signal.SIGTERM]),
    ],
    ids=["quantile-3-sigkills", "adaptive-sigkill", "adaptive-sigterm"],
)
def test_interrupted_runs_give_the_uninterrupted_alerts_and_events(
    kafka_bootstrap: str,
    tiny_bundle: Path,  # noqa: F811
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],  # noqa: F811
    threshold: dict[str, Any],
    stops: list[signal.Signals],
) -> None:
    tag = unique_name("eos-state")
    records = _stream(seed=len(stops) + len(threshold))
    env = _env(kafka_bootstrap, tag, DETECTOR_MAX_BATCH="8", **_settings_env(threshold))
    log = tmp_path / "det.log"
    group, topic = f"{tag}-group", f"{tag}-windows"
    offline = _Offline(tiny_bundle, threshold)

    def count() -> int:
        return committed_total(kafka_bootstrap, group, topic, 2)

    inputs: list[Any] = []
    done = produced = 0
    for n, stop in enumerate(stops, start=1):
        # Stop points spread over the stream, each after the previous one. The input arrives
        # in stages, half a stage ahead of the stop point, so a fast machine cannot finish
        # the stream before the signal lands.
        target = max(done + 300, N * n // (len(stops) + 1))
        stage = min(N - 1, target + N // (2 * (len(stops) + 1)))
        proc = _start(tiny_bundle, env, log)
        procs.append(proc)
        if n == 1:
            wait_until(lambda: b"detector_started" in log.read_bytes(), 120, "the start")
        produce_records(kafka_bootstrap, topic, records[produced:stage])
        produced = stage
        inputs = consume_records(kafka_bootstrap, topic, produced)
        wait_until(lambda t=target: count() >= t, 120, f"{target} committed records")  # type: ignore[misc]
        proc.send_signal(stop)
        assert proc.wait(60) == (0 if stop is signal.SIGTERM else -signal.SIGKILL)
        if stop is signal.SIGKILL:
            _fence(kafka_bootstrap, f"{group}-{tag}-1")
        done = count()
        assert target <= done <= produced < N, f"stopped at {done} of {produced} produced"
        _assert_state_is_the_committed_offsets_state(kafka_bootstrap, tag, offline, inputs)

    produce_records(kafka_bootstrap, topic, records[produced:])
    inputs = consume_records(kafka_bootstrap, topic, N)
    last = _start(tiny_bundle, env, log, "--stop-when-idle", "4")
    procs.append(last)
    assert last.wait(timeout=240) == 0, log.read_text()[-3000:]
    assert count() == N

    _core, expected_alerts, expected_events = offline.run(inputs)
    recalibrations = sum(b'"threshold_recalibrated"' in e for e in expected_events)
    assert recalibrations > 300, "thresholds should recalibrate many times"
    expected_ids = [a.alert_id for a in expected_alerts]
    assert len(expected_ids) > 50, "the stream should open a fair number of episodes"
    stopped = [e for e in _log_events(log) if e.get("event") == "detector_stopped"]
    total = sum(int(e["alerts"]) for e in stopped)  # type: ignore[call-overload]
    got = [
        Alert.model_validate_json(m.value() or b"")
        for m in consume_records(kafka_bootstrap, f"{tag}-alerts", len(expected_ids), 60)
    ]
    ids = [a.alert_id for a in got]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    assert set(ids) == set(expected_ids)
    if signal.SIGKILL not in stops:
        assert total == len(ids)  # every process stopped cleanly and counted its own
    events = [
        m.value() for m in consume_records(kafka_bootstrap, f"{tag}-events", len(expected_events))
    ]
    assert Counter(events) == Counter(expected_events)
