"""Property-based fuzzing of everything one record can reach (issue 14, item 2).

Generated records (random bytes and headers, JSON of every shape and type, extreme numbers
and times, huge and empty values, numeric strings, booleans) go through the pure core; the
threshold state codec gets arbitrary score streams. Properties:

* nothing raises;
* every record ends up scored or dead-lettered, exactly once, and each dead letter's copy
  fits the producer's limit;
* state encodes, and restores into a fresh core to the same bytes.

Profiles (tests/conftest.py): ``ci`` (default, a few seconds) runs in every test run;
``HYPOTHESIS_PROFILE=long`` explores much further (minutes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from hypothesis import event, given
from hypothesis import strategies as st

from detector.core import BatchDecider, BatchScores, Decisions, InputRecord
from detector.dead_letters import DEFAULT_MESSAGE_MAX_BYTES, dead_letter_record, record_size
from detector.messages import (
    CONTENT_TYPE_F32,
    CONTENT_TYPE_JSON,
    H_CONTENT_TYPE,
    H_EVENT_TIME_MS,
    H_SEQ,
    H_SHAPE,
    H_SOURCE_ID,
    MAX_EVENT_TIME_MS,
)
from detector.settings import LifecycleSettings
from detector.threshold import ThresholdBank, ThresholdConfig
from tests.unit.helpers import make_manifest

WINDOW = 8
MAX_MESSAGE_BYTES = 4096
REASONS = {
    "undecodable",
    "bad_shape",
    "non_finite",
    "non_numeric",
    "bad_event_time",
    "bad_source_id",
    "unknown_content_type",
    "oversize",
    "missing_field",
}
# Small windows so that sources calibrate, recalibrate and test drift within a few examples.
SMALL = {
    "window": 200,
    "min_samples": 20,
    "recalibrate_every": 10,
    "target_far": 0.05,
    "prior_weight": 50,
    "shift_recent": 50,
    "drift_recent": 50,
    "drift_reference_min": 100,
    "drift_check_every": 25,
    "min_peaks": 5,
}

# -- strategies ---------------------------------------------------------------------------

EXTREMES = [0, -0.0, 1e20, 1e300, -1e300, 3.4e38, 3.5e38, 5e-324, 2**63, 2**64, -(2**63) - 1]
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EXTREMES),
)
numeric_strings = st.one_of(st.floats(allow_nan=False).map(str), st.integers().map(str))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12), numeric_strings)
json_any = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
samples = st.floats(min_value=-5, max_value=5, width=32)
good_values = st.one_of(
    st.lists(samples, min_size=WINDOW, max_size=WINDOW),
    st.lists(st.lists(samples, min_size=1, max_size=1), min_size=WINDOW, max_size=WINDOW),
)
values = st.one_of(
    good_values,
    good_values,
    st.lists(st.one_of(samples, scalars), min_size=WINDOW, max_size=WINDOW),
    st.lists(numbers, min_size=WINDOW, max_size=WINDOW),
    st.lists(samples, max_size=3 * WINDOW),
    st.just([]),
    st.just([[]]),
    st.lists(samples, min_size=600, max_size=600),  # > MAX_MESSAGE_BYTES as JSON: oversize
    json_any,
)
good_times = st.integers(min_value=0, max_value=MAX_EVENT_TIME_MS)
event_times = st.one_of(
    good_times,
    good_times,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive: read as UTC
    st.sampled_from([1e20, 10**20, "9999-12-31T23:59:59.999+00:00", "0001-01-01T00:00:00+01:00"]),
    scalars,
)
source_ids = st.one_of(
    st.sampled_from(["s1", "s2", "s3"]),
    st.text(min_size=1, max_size=20),
    st.text(min_size=250, max_size=300),
    scalars,
)
seqs = st.one_of(st.integers(min_value=0, max_value=1000), numbers, scalars)
FIELDS = {
    "source_id": source_ids,
    "seq": seqs,
    "event_time": event_times,
    "values": values,
    "metadata": st.one_of(st.dictionaries(st.text(max_size=4), st.text(max_size=4)), json_any),
    "extra": json_any,
}
headers = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([H_CONTENT_TYPE, H_SHAPE, H_SEQ, H_EVENT_TIME_MS, H_SOURCE_ID]),
            st.text(max_size=10),
        ),
        st.binary(max_size=40),
    ),
    max_size=4,
)
keys = st.one_of(st.none(), st.sampled_from([b"s1", b"s2"]), st.binary(max_size=300))


GOOD_FIELDS = {
    "source_id": st.sampled_from(["s1", "s2", "s3"]),
    "seq": st.integers(min_value=0, max_value=1000),
    "event_time": good_times,
    "values": good_values,
}


@st.composite
def json_records(draw: st.DrawFn) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    doc: dict[str, object] = {}
    if draw(st.integers(0, 3)):
        # Near-valid windows: each field usually good, else anything (or absent), so that odd
        # values also meet the stages after decode: open episodes, calibrated sources, state.
        for name in sorted(FIELDS):
            how = draw(st.integers(0, 9))
            if name in GOOD_FIELDS and how < 8:
                doc[name] = draw(GOOD_FIELDS[name])
            elif how == 9 or (name not in GOOD_FIELDS and how == 8):
                doc[name] = draw(FIELDS[name])
    else:
        doc = draw(st.fixed_dictionaries({}, optional=FIELDS))
    # The stdlib writes integers of any size and NaN/Infinity tokens (not JSON: refused).
    value = json.dumps(doc).encode()
    content_type = draw(
        st.sampled_from(
            [None, CONTENT_TYPE_JSON, "application/json; charset=utf-8", "APPLICATION/JSON"]
        )
    )
    hdrs = draw(headers)
    if content_type is not None:
        hdrs.append((H_CONTENT_TYPE, content_type.encode()))
    return draw(keys), value, hdrs


@st.composite
def binary_records(draw: st.DrawFn) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    if draw(st.integers(0, 3)):
        floats = draw(
            st.lists(st.floats(width=32) | samples | samples, min_size=WINDOW, max_size=WINDOW)
        )
        value = np.asarray(floats, dtype="<f4").tobytes()
    else:
        value = draw(st.binary(max_size=64))
    text = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        good_times.map(str),
        st.text(max_size=8),
    )
    hdrs: list[tuple[str, bytes]] = [(H_CONTENT_TYPE, CONTENT_TYPE_F32.encode())]
    odd = draw(st.integers(0, 2)) == 0  # else headers as the producer writes them
    for name, good, strategy in (
        (
            H_SHAPE,
            st.sampled_from(["8,1", "8"]),
            st.sampled_from(["1,8", "4,2", "x", "0,0", "-8,-1", ""]) | text,
        ),
        (H_SEQ, st.integers(min_value=0, max_value=99).map(str), text),
        (H_EVENT_TIME_MS, good_times.map(str), text),
        (H_SOURCE_ID, st.sampled_from(["s1", "s3"]), st.text(max_size=300)),
    ):
        if not odd:
            hdrs.append((name, draw(good).encode()))
        elif draw(st.integers(0, 3)):  # usually present
            hdrs.append((name, draw(good | strategy).encode("utf-8", errors="surrogatepass")))
    return draw(keys), value, hdrs + (draw(headers) if odd else [])


raw_records = st.tuples(
    keys,
    st.one_of(st.none(), st.binary(max_size=200), st.binary(min_size=4097, max_size=6000)),
    st.one_of(st.just([]), headers),
)
records = st.lists(
    st.one_of(json_records(), binary_records(), raw_records), min_size=1, max_size=12
)

# -- the core -----------------------------------------------------------------------------


def level_scorer(batch: npt.NDArray[np.float32]) -> BatchScores:
    """A plain function for a model: the mean absolute sample (finite for finite input)."""
    magnitude = np.abs(batch.astype(np.float64))
    return BatchScores(
        magnitude.mean(axis=(1, 2)).astype(np.float32),
        magnitude.mean(axis=2).astype(np.float32),
        magnitude.mean(axis=1).astype(np.float32),
    )


def _core(method: str) -> BatchDecider:
    manifest = make_manifest(window=WINDOW)
    bank = ThresholdBank(
        ThresholdConfig(method=method, **SMALL),  # type: ignore[arg-type]
        manifest.reference_errors.sample,
        manifest.threshold.value,
    )
    return BatchDecider(
        manifest,
        bank,
        LifecycleSettings(resolve_after_windows=2),
        max_message_bytes=MAX_MESSAGE_BYTES,
        state_interval_ms=0,
    )


def _all_state(core: BatchDecider) -> list[tuple[str, int, bytes | None]]:
    sources = core.bank.sources()
    everything = Decisions(
        episode_states_due=dict.fromkeys(sources, 0), threshold_states_due=dict.fromkeys(sources, 0)
    )
    return core.state_records(everything)


def _warm_up(core: BatchDecider, per_source: int) -> int:
    """Feed normal windows so that sources hold their own thresholds; returns the offsets used."""
    inputs = []
    for i in range(3 * per_source):
        level = 0.1 + 0.02 * (i % 7)
        value = json.dumps(
            {"source_id": f"s{i % 3 + 1}", "seq": i, "event_time": i, "values": [level] * WINDOW}
        )
        inputs.append(InputRecord("windows", 0, i, None, value.encode(), None, 0))
    prepared = core.prepare(inputs)
    assert not prepared.dead_letters
    core.decide(prepared, level_scorer(prepared.batch), 10**12)
    return len(inputs)


@given(
    batches=st.lists(records, min_size=1, max_size=3),
    method=st.sampled_from(["quantile", "spot"]),
    warm=st.sampled_from([0, 40]),
)
def test_every_record_is_scored_or_dead_lettered_and_state_round_trips(
    batches: list[list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]],
    method: str,
    warm: int,
) -> None:
    core = _core(method)
    offset = _warm_up(core, warm)
    for n, batch in enumerate(batches):
        inputs = []
        for key, value, hdrs in batch:
            inputs.append(InputRecord("windows", offset % 2, offset, key, value, hdrs or None, 0))
            offset += 1
        prepared = core.prepare(inputs)
        scored = [r.offset for r in prepared.records]
        dead = [dl.record.offset for dl in prepared.dead_letters]
        assert sorted(scored + dead) == [r.offset for r in inputs]  # each exactly once
        assert prepared.batch.shape == (len(scored), WINDOW, 1)
        assert np.isfinite(prepared.batch).all()
        event(f"scored {min(len(scored), 3)}+" if len(scored) >= 3 else f"scored {len(scored)}")
        for dl in prepared.dead_letters:
            event(f"dead letter: {dl.reason}")
            assert dl.reason in REASONS, (dl.reason, dl.detail)
            key, value, hdrs = dead_letter_record(dl, 0, DEFAULT_MESSAGE_MAX_BYTES)
            assert record_size(key, value, hdrs) <= DEFAULT_MESSAGE_MAX_BYTES
        decisions = core.decide(prepared, level_scorer(prepared.batch), 10**12 + n * 1000)
        for alert in decisions.alerts:
            event(f"alert {alert.state.value}")
            alert.model_dump_json()
        core.state_records(decisions)

    state = _all_state(core)
    fresh = _core(method)
    for key, partition, data in state:
        if data is not None:
            assert fresh.restore(key, data, partition), key
    assert _all_state(fresh) == state


# -- the threshold state codec ------------------------------------------------------------

extreme_scores = st.one_of(
    st.floats(min_value=0, max_value=3e38),
    st.sampled_from([0.0, 5e-324, 1e-30, 1.0, 1e30, 3.4e38]),
)
SHAPES = ["uniform", "lognormal", "constant", "zeros", "huge", "tiny", "step up", "step down"]


def _stream(shape: str, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Scores of one kind: what a model gives on normal data, on drift, and degenerate cases."""
    if shape == "uniform":
        return rng.uniform(0.0, 1.0, n)
    if shape == "lognormal":
        return rng.lognormal(-1.0, 1.0, n)
    if shape == "constant":
        return np.full(n, 0.3)
    if shape == "zeros":
        return np.zeros(n)
    if shape == "huge":
        return rng.uniform(1e30, 3e38, n)
    if shape == "tiny":
        return rng.uniform(0.0, 1e-300, n)
    level = np.where(np.arange(n) < n // 2, 0.2, 2.0 if shape == "step up" else 0.02)
    return np.asarray(level * rng.uniform(0.5, 1.5, n))


@given(
    n=st.integers(min_value=0, max_value=600),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    shape=st.sampled_from(SHAPES),
    spikes=st.lists(st.tuples(st.integers(0, 599), extreme_scores), max_size=8),
    source_names=st.sampled_from([["a"], ["a", "b"], ["a", "é" * 256, "c"]]),
    start_ms=good_times,
    method=st.sampled_from(["quantile", "spot", "static"]),
)
def test_threshold_snapshots_restore_to_the_same_bank(
    n: int,
    seed: int,
    shape: str,
    spikes: list[tuple[int, float]],
    source_names: list[str],
    start_ms: int,
    method: str,
) -> None:
    """The codec, through ThresholdBank's public API only: snapshot -> restore gives a bank
    that snapshots to the same bytes, holds the same thresholds and goes on identically."""
    rng = np.random.default_rng(seed)
    stream = _stream(shape, n, rng)
    for at, score in spikes:
        if at < n:
            stream[at] = score
    manifest = make_manifest(window=WINDOW)
    config = ThresholdConfig(method=method, **SMALL)  # type: ignore[arg-type]
    bank = ThresholdBank(config, manifest.reference_errors.sample, manifest.threshold.value)
    open_until: dict[str, int] = {}
    for i, score in enumerate(stream.tolist()):
        source = source_names[i % len(source_names)]
        now = min(MAX_EVENT_TIME_MS, start_ms + 1000 * i)
        flagged = score > bank.value(source)
        if flagged:
            open_until[source] = i + 5 * len(source_names)
        episode_open = open_until.get(source, -1) >= i
        bank.update(source, score, now, flagged=flagged, episode_open=episode_open)
    event(
        "own threshold" if any(bank.get(s).scope == "source" for s in bank.sources()) else "global"
    )
    copy = ThresholdBank(config, manifest.reference_errors.sample, manifest.threshold.value)
    for source in bank.sources():
        copy.restore(source, bank.snapshot(source))
    for source in bank.sources():
        assert copy.snapshot(source) == bank.snapshot(source)
        assert copy.get(source) == bank.get(source)
    # The restored bank goes on exactly like the original.
    tail = _stream(shape, 50, np.random.default_rng(seed + 1)).tolist()
    for i, score in enumerate(tail):
        source = source_names[i % len(source_names)]
        now = min(MAX_EVENT_TIME_MS, start_ms + 1000 * (n + i))
        flagged = score > bank.value(source)
        a = bank.update(source, score, now, flagged=flagged, episode_open=flagged)
        b = copy.update(source, score, now, flagged=flagged, episode_open=flagged)
        assert a == b
    for source in bank.sources():
        assert copy.snapshot(source) == bank.snapshot(source)


def test_the_stdlib_writes_what_the_strategies_need() -> None:
    """The JSON strategy relies on the stdlib for integers beyond 64 bits and NaN tokens."""
    assert (
        json.dumps({"t": 10**20, "v": [float("nan")]}) == '{"t": 100000000000000000000, "v": [NaN]}'
    )
    assert datetime(9999, 12, 31, tzinfo=UTC).isoformat().startswith("9999")
