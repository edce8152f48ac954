"""The pure detector core: dead letters, decisions, determinism, state."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detector.alerts import AlertState
from detector.core import BatchDecider, InputRecord
from detector.messages import H_CONTENT_TYPE, DecodedWindow, Headers, encode_binary
from detector.settings import LifecycleSettings
from detector.threshold import ThresholdBank, ThresholdConfig
from tests.unit.helpers import MeanScorer, make_manifest, record


def _core(method: str = "static", **lifecycle: float) -> BatchDecider:
    manifest = make_manifest()
    bank = ThresholdBank(
        ThresholdConfig(method=method),  # type: ignore[arg-type]
        manifest.reference_errors.sample,
        manifest.threshold.value,
    )
    return BatchDecider(manifest, bank, LifecycleSettings(**lifecycle), max_message_bytes=4096)


def _run(core: BatchDecider, records: list[InputRecord], now_ms: int = 10**12):
    prepared = core.prepare(records)
    return prepared, core.decide(prepared, MeanScorer().score(prepared.batch), now_ms)


def test_bad_records_become_dead_letters_and_the_rest_is_scored() -> None:
    good = [record(i, 0.1, binary=i % 2 == 0) for i in range(4)]
    nan_value, nan_headers = encode_binary("s1", 9, 0, np.full(8, np.nan))
    bad = [
        InputRecord("windows", 0, 100, b"s1", b"{oops", None, 0),
        InputRecord(
            "windows",
            0,
            101,
            b"s1",
            orjson.dumps({"source_id": "s1", "event_time": 0, "values": [1.0] * 7}),
            None,
            0,
        ),
        InputRecord("windows", 0, 102, b"s1", nan_value, nan_headers, 0),
        InputRecord("windows", 0, 103, b"s1", b"x" * 5000, None, 0),
        InputRecord("windows", 0, 104, b"s1", b"<a/>", [(H_CONTENT_TYPE, b"text/xml")], 0),
    ]
    prepared, decisions = _run(_core(), good[:2] + bad + good[2:])
    assert [r.offset for r in prepared.records] == [0, 1, 2, 3]
    assert prepared.batch.shape == (4, 8, 1)
    reasons = {dl.record.offset: dl.reason for dl in prepared.dead_letters}
    assert reasons == {
        100: "undecodable",
        101: "bad_shape",
        102: "non_finite",
        103: "oversize",
        104: "unknown_content_type",
    }
    assert decisions.alerts == []


def test_a_burst_gives_one_opened_and_one_resolved_with_context() -> None:
    core = _core(resolve_after_windows=3)
    levels = [0.1] * 5 + [2.5] * 10 + [0.1] * 5
    _prepared, decisions = _run(core, [record(i, lvl) for i, lvl in enumerate(levels)])
    states = [a.state for a in decisions.alerts]
    assert states.count(AlertState.OPENED) == 1
    assert states.count(AlertState.RESOLVED) == 1
    assert decisions.flagged == 10
    opened = decisions.alerts[0]
    assert (opened.input.offset, opened.input.seq, opened.source_id) == (5, 5, "s1")
    assert opened.score > opened.threshold.value
    assert opened.threshold.method == "static"
    assert opened.model.sha256 == "ab" * 32
    assert len(opened.top_steps) == 5
    assert [c.channel for c in opened.top_channels] == ["ch0"]
    resolved = decisions.alerts[-1]
    assert resolved.episode_id == opened.episode_id
    assert resolved.anomalous_windows == 10
    assert resolved.peak_score >= 2.5 - 1e-6


def test_same_records_give_the_same_alerts_whatever_the_batching() -> None:
    levels = [0.1] * 3 + [3.0] * 4 + [0.1] * 8 + [1.4] * 2 + [0.1] * 8
    records = [record(i, lvl) for i, lvl in enumerate(levels)]
    _p, whole = _run(_core(resolve_after_windows=3), records)
    split_core = _core(resolve_after_windows=3)
    pieces = []
    for chunk in (records[:4], records[4:11], records[11:]):
        pieces.extend(_run(split_core, chunk)[1].alerts)
    key = [(a.alert_id, a.state, a.episode_id) for a in whole.alerts]
    assert key == [(a.alert_id, a.state, a.episode_id) for a in pieces]
    assert len({a.alert_id for a in whole.alerts}) == len(whole.alerts)


def _restore_all(core: BatchDecider, records: list[tuple[str, int, bytes | None]]) -> None:
    latest = {key: value for key, _p, value in records}  # what compaction keeps
    for key, value in latest.items():
        if value is not None:
            assert core.restore(key, value, partition=0)


def test_restored_state_continues_the_episode_instead_of_opening_another() -> None:
    first = _core(resolve_after_windows=3)
    _p, d1 = _run(first, [record(i, 3.0) for i in range(3)])
    assert [a.state for a in d1.alerts] == [AlertState.OPENED]
    state = first.state_records(d1)
    # Two normal windows in a later batch: the streak must survive a restart too.
    _p, d2 = _run(first, [record(3, 0.1), record(4, 0.1)])
    state += first.state_records(d2)
    assert {key for key, _p, _v in state} == {"episode/s1", "threshold/s1"}

    second = _core(resolve_after_windows=3)
    _restore_all(second, state)
    _p, d3 = _run(second, [record(5, 0.1)])
    # Exactly where an uncrashed detector resolves: the third normal window.
    assert [a.state for a in d3.alerts] == [AlertState.RESOLVED]
    assert d3.alerts[0].episode_id == d1.alerts[0].episode_id
    # The resolved episode leaves a tombstone, so a later restart finds no open episode.
    assert ("episode/s1", 0, None) in second.state_records(d3)


def test_state_of_another_model_is_not_restored() -> None:
    core = _core()
    _p, d = _run(core, [record(0, 3.0)])
    for key, _p, value in core.state_records(d):
        assert value is not None
        doc = orjson.loads(value)
        doc["model_sha256"] = "cd" * 32
        fresh = _core()
        assert not fresh.restore(key, orjson.dumps(doc), partition=0)
        assert not fresh.restore(key, b"garbage", partition=0)
        assert not fresh.restore("unknown/s1", value, partition=0)
        assert not fresh.tracker.is_open("s1")


def test_revoked_partitions_drop_their_sources_only() -> None:
    core = _core()
    _run(core, [record(0, 3.0, source="a", partition=0), record(1, 3.0, source="b", partition=1)])
    assert core.drop_partitions({1}) == ["b"]
    assert core.tracker.is_open("a") and not core.tracker.is_open("b")


def test_one_record_s_unexpected_exception_is_an_internal_error_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault barrier: whatever one record triggers, the batch goes on without it."""
    from detector import core as core_module

    real = core_module.decode_window

    def decode(key: bytes | None, value: bytes | None, headers: Headers | None) -> DecodedWindow:
        if value == b"boom":
            raise ZeroDivisionError("a bug that only this record reaches")
        return real(key, value, headers)

    monkeypatch.setattr(core_module, "decode_window", decode)
    records = [
        record(0, 0.1),
        InputRecord("windows", 0, 1, b"s1", b"boom", None, 0),
        record(2, 0.1),
    ]
    prepared, _decisions = _run(_core(), records)
    assert [r.offset for r in prepared.records] == [0, 2]
    (dead,) = prepared.dead_letters
    assert (dead.record.offset, dead.reason) == (1, "internal_error")
    assert dead.detail.startswith("ZeroDivisionError: ")


def test_out_of_range_times_strings_and_long_ids_are_dead_letters_not_crashes() -> None:
    """D3 and D10 of issue 14: each is dead-lettered with its reason; state still encodes."""
    value, headers = encode_binary("s1", 3, 0, np.zeros(8))
    headers = [(k, b"100000000000000000000" if k == "event-time-ms" else v) for k, v in headers]

    def doc(**fields: object) -> bytes:
        return orjson.dumps({"source_id": "s1", "seq": 1, "event_time": 0, **fields})

    bad = {
        10: (doc(values=[0.1] * 8, event_time=1e20), None),
        11: (value, headers),
        12: (doc(values=["0.1"] * 8), None),
        13: (doc(values=[True] * 8), None),
        14: (doc(values=[0.1] * 8, source_id="s" * 300), None),
    }
    records = [record(0, 0.1)] + [
        InputRecord("windows", 0, off, b"s1", v, h, 0) for off, (v, h) in bad.items()
    ]
    core = _core(method="quantile")
    prepared, decisions = _run(core, records)
    assert [r.offset for r in prepared.records] == [0]
    reasons = {dl.record.offset: dl.reason for dl in prepared.dead_letters}
    assert reasons == {
        10: "bad_event_time",
        11: "bad_event_time",
        12: "non_numeric",
        13: "non_numeric",
        14: "bad_source_id",
    }
    decisions.threshold_states_due["s1"] = 0
    assert core.state_records(decisions)  # encodes: no out-of-range integer reached the state


def test_a_window_scored_nan_or_infinite_is_a_dead_letter_not_a_decision() -> None:
    from detector.core import BatchScores

    core = _core("adaptive")
    records = [record(i, 0.1) for i in range(4)]
    prepared = core.prepare(records)
    scores = np.array([0.1, np.nan, np.inf, 0.2], dtype=np.float32)
    result = BatchScores(scores, np.zeros((4, 8), np.float32), np.zeros((4, 1), np.float32))
    decisions = core.decide(prepared, result, 0)
    assert [d.reason for d in prepared.dead_letters] == ["non_finite_score"] * 2
    assert [r.offset for r in prepared.records] == [0, 3]
    assert prepared.batch.shape[0] == 2
    assert decisions.flagged == 0 and not decisions.alerts
    assert core.bank.stats("s1").seen == 2  # only the finite windows reached the thresholds
