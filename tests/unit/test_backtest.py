"""``detector.backtest`` without Kafka: the summary's figures on a hand-made run, AUROC against
a pairwise count, the output files, the replay against the service's batch decisions, and the
``detector backtest`` command (a tiny real bundle; exit codes and one-line errors)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from detector import backtest
from detector.alerts import Alert, AlertState, InputRef, ModelRef, ThresholdRef, alert_id
from detector.backtest import (
    SCORE_BATCH,
    BacktestRun,
    auroc,
    episode_spans,
    replay_records,
    summarise,
    window_records,
    write_outputs,
)
from detector.core import InputRecord, build_decider
from detector.events import ShiftAccepted, ThresholdRecalibrated, parse_event
from detector.messages import decode_window
from detector.settings import LifecycleSettings
from detector.threshold import ThresholdConfig
from tests.unit.helpers import MeanScorer, make_manifest

REPO = Path(__file__).resolve().parents[2]
SHA = "ab" * 32

# -- a hand-made run --------------------------------------------------------------------------
#
# 20 decided windows of one source; record position 3 was a dead letter, so decided window j
# is record index[j]. The first 5 are judged by the bundle's (global) threshold: warm-up.
#
#   j      0 1 2 3 4 | 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
#   label  0 0 1 0 0 | 0 0 0 0 0 0  0  1  1  1  0  0  0  0  0
#   flag   0 1 1 0 0 | 0 0 1 0 0 0  0  0  1  1  0  0  0  1  0
#   opens    ^       |     ^                 ^              ^
#
# After warm-up: 15 windows, 12 normal (2 flagged: j 7, 18), 3 anomalous (2 flagged).
# All windows: 20, 16 normal (3 flagged: j 1, 7, 18), 4 anomalous (3 flagged).

LABELS = np.zeros(20, dtype=bool)
LABELS[[2, 12, 13, 14]] = True
FLAGS = np.zeros(20, dtype=bool)
FLAGS[[1, 2, 7, 13, 14, 18]] = True
SCOPES = ["global"] * 5 + ["source"] * 15
INDEX = [0, 1, 2, *range(4, 21)]
TIMES = np.asarray(INDEX, dtype=np.int64) * 1000 + 1_700_000_000_000
# Small scores for unflagged normal windows, 2.0 for flagged normal ones, and anomalous ones
# at 1.5 (j 2), 0.95 (j 12, missed), 3.0 and 4.0: AUROC after warm-up (10 + 12 + 12) / 36,
# over all windows (13 + 13 + 16 + 16) / 64.
SCORES = np.linspace(0.1, 0.5, 20)
SCORES[[1, 7, 18]] = 2.0
SCORES[[2, 12, 13, 14]] = [1.5, 0.95, 3.0, 4.0]
EPISODES = {  # opening window j -> (last window j, resolved?)
    1: (4, True),
    7: (9, True),
    13: (17, True),
    18: (19, False),
}


def _alert(j: int, state: AlertState, episode: str) -> Alert:
    offset = INDEX[j]
    return Alert(
        alert_id=alert_id("t", 0, offset, state.value, SHA),
        episode_id=episode,
        state=state,
        source_id="s",
        severity="major",
        input=InputRef(topic="t", partition=0, offset=offset, seq=offset),
        event_time_ms=int(TIMES[j]),
        detected_at_ms=int(TIMES[j]),
        score=float(SCORES[j]),
        peak_score=float(SCORES[j]),
        threshold=ThresholdRef(
            value=1.0,
            method="adaptive",
            target_far=0.01,
            samples_used=100,
            set_at_ms=None,
            scope=SCOPES[j],
        ),
        model=ModelRef(name="m", version="1", sha256=SHA),
        anomalous_windows=1,
        episode_started_ms=int(TIMES[j]),
        resolved_reason="5 consecutive normal windows" if state is AlertState.RESOLVED else None,
    )


def _hand_made_run() -> BacktestRun:
    run = BacktestRun(
        scores=SCORES.tolist(),
        thresholds=[1.0] * 20,
        flags=FLAGS.tolist(),
        scopes=list(SCOPES),
        episode_ids=[""] * 20,
        index=list(INDEX),
        dead_letters=[(3, "undecodable", "not JSON")],
    )
    for start, (end, resolved) in EPISODES.items():
        episode = f"ep-{start}"
        run.episode_ids[start : end + 1] = [episode] * (end - start + 1)
        run.alerts.append(_alert(start, AlertState.OPENED, episode))
        if start == 13:
            run.alerts.append(_alert(14, AlertState.ONGOING, episode))
        if resolved:
            run.alerts.append(_alert(end, AlertState.RESOLVED, episode))
    run.events = [
        ThresholdRecalibrated(
            source_id="s", at_ms=int(TIMES[5]), old=1.0, new=1.1, method="adaptive",
            target_far=0.01, samples_used=50, reason="first",
        ),
        ThresholdRecalibrated(
            source_id="s", at_ms=int(TIMES[15]), old=1.1, new=1.0, method="adaptive",
            target_far=0.01, samples_used=60, reason="scheduled",
        ),
        ShiftAccepted(
            source_id="s", at_ms=int(TIMES[17]), episode_id="ep-13", windows=5,
            anomalous_windows=2, started_ms=int(TIMES[13]), peak_score=4.0, threshold=1.0,
            shift_after_windows=5,
        ),
    ]  # fmt: skip
    return run


def test_summary_separates_warm_up_and_counts_rates_episodes_and_detection_times() -> None:
    s = summarise(_hand_made_run(), LABELS, ["s"] * 20, TIMES, target_far=0.01)
    after, every = s["after_warmup"], s["all_windows"]
    assert s["warmup_windows"] == 5 and s["labelled"] is True and s["target_far"] == 0.01
    assert (after["windows"], after["normal_windows"], after["anomalous_windows"]) == (15, 12, 3)
    assert (every["windows"], every["normal_windows"], every["anomalous_windows"]) == (20, 16, 4)
    assert (after["flagged"], every["flagged"]) == (4, 6)
    # False-alarm rate: flagged normal windows over normal windows, and against the target.
    assert after["far"] == pytest.approx(2 / 12)
    assert after["far_vs_target"] == pytest.approx(2 / 12 / 0.01)
    assert every["far"] == pytest.approx(3 / 16)
    assert after["recall"] == pytest.approx(2 / 3) and every["recall"] == pytest.approx(3 / 4)
    assert after["precision"] == pytest.approx(2 / 4) and every["precision"] == pytest.approx(3 / 6)
    assert after["f1"] == pytest.approx(4 / 7) and every["f1"] == pytest.approx(0.6)
    assert after["auroc"] == pytest.approx(34 / 36) and every["auroc"] == pytest.approx(58 / 64)
    # Episodes are counted where they open; an episode opened on a normal window is false.
    assert (after["episodes"], after["false_episodes"]) == (3, 2)
    assert (every["episodes"], every["false_episodes"]) == (4, 3)
    assert after["false_episodes_per_1000_normal"] == pytest.approx(1000 * 2 / 12)
    assert every["false_episodes_per_1000_normal"] == pytest.approx(1000 * 3 / 16)
    # Labelled spans [2] and [12, 13, 14]: detected at once, and one window (1 s) late.
    assert (s["anomaly_spans"], s["spans_detected"]) == (2, 2)
    assert s["median_windows_to_detect"] == pytest.approx(0.5)
    assert s["median_ms_to_detect"] == pytest.approx(500.0)
    assert s["threshold_states_due"] == 2
    assert s["events"] == {"threshold_recalibrated": 2, "shift_accepted": 1}
    assert s["alerts"] == {"opened": 4, "ongoing": 1, "resolved": 3}
    assert s["dead_letters"] == {"undecodable": 1}
    orjson.dumps(s)  # JSON-ready as it is


def test_summary_of_a_missed_span_and_of_an_unlabelled_run() -> None:
    run = _hand_made_run()
    labels = LABELS.copy()
    labels[10] = True  # a one-window span nothing flagged
    s = summarise(run, labels, ["s"] * 20, TIMES, target_far=0.01)
    assert (s["anomaly_spans"], s["spans_detected"]) == (3, 2)
    assert s["median_windows_to_detect"] == pytest.approx(0.5)  # over the detected spans only

    u = summarise(run, None, ["s"] * 20, TIMES, target_far=0.01)
    assert u["labelled"] is False and u["anomaly_spans"] == 0 and u["spans_detected"] == 0
    assert u["median_windows_to_detect"] is None and u["median_ms_to_detect"] is None
    for part, n, flagged in ((u["after_warmup"], 15, 4), (u["all_windows"], 20, 6)):
        assert part["normal_windows"] == n and part["anomalous_windows"] == 0
        assert part["far"] == pytest.approx(flagged / n)
        assert part["recall"] is None and part["auroc"] is None and part["f1"] is None
        assert part["false_episodes"] == part["episodes"]


def test_warm_up_is_per_source() -> None:
    """A source is calibrated from its own first 'source'-scoped window, not another's."""
    run = BacktestRun(
        scores=[0.1] * 8,
        thresholds=[1.0] * 8,
        flags=[False, True, False, False, False, True, False, False],
        scopes=["global", "global", "source", "global", "source", "global", "global", "source"],
        episode_ids=[""] * 8,
        index=list(range(8)),
    )
    sources = ["a", "b"] * 4
    s = summarise(run, None, sources, np.arange(8) * 1000, target_far=0.05)
    # a: warm-up j 0; b: warm-up j 1, 3, 5 (its own threshold arrives at j 7).
    assert s["warmup_windows"] == 4
    assert s["after_warmup"]["windows"] == 4 and s["after_warmup"]["flagged"] == 0
    assert s["all_windows"]["flagged"] == 2


def test_episode_spans_are_runs_within_one_source() -> None:
    labels = np.asarray([1, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    sources = ["a", "b", "a", "a", "b", "a", "b", "b"]
    assert episode_spans(labels, sources) == [[0], [1, 4], [3, 5], [7]]


# -- AUROC ------------------------------------------------------------------------------------


def _pairwise_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.mark.parametrize("n", [2, 7, 60, 501])
def test_auroc_is_the_pairwise_win_rate_with_ties_half(n: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        positive = rng.random(n) < rng.uniform(0.05, 0.95)
        positive[0], positive[-1] = True, False  # both classes
        scores = np.round(rng.normal(size=n) + 0.7 * positive, 1)  # some signal, many ties
        assert auroc(scores, positive) == pytest.approx(_pairwise_auroc(scores, positive))


def test_auroc_edges() -> None:
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auroc([1.0, 2.0, 3.0], [True, True, True]) is None
    assert auroc([1.0, 2.0], [False, False]) is None
    assert auroc([], []) is None
    assert auroc([1.0, 1.0, 1.0], [True, False, False]) == 0.5
    assert auroc([0.0, 1.0], [False, True]) == 1.0
    assert auroc([0.0, 1.0], [True, False]) == 0.0


# -- output files -----------------------------------------------------------------------------


def _docstring_columns() -> list[str]:
    """The windows.csv columns as the module docstring names them."""
    doc = backtest.__doc__ or ""
    match = re.search(r"``windows.csv``: one row per window: (.*?);\n", doc, re.S)
    assert match, "the module docstring names the windows.csv columns"
    return re.findall(r"``(\w+)``", match.group(1))


def test_write_outputs_writes_one_row_per_decided_window_and_the_documented_header(
    tmp_path: Path,
) -> None:
    run = _hand_made_run()
    s = summarise(run, LABELS, ["s"] * 20, TIMES, target_far=0.01)
    end_row = np.asarray(INDEX) * 4 + 3
    written = write_outputs(
        tmp_path / "out",
        run,
        end_row=end_row,
        event_time_ms=TIMES,
        sources=["s"] * 20,
        labels=LABELS,
        summary=s,
        plot=False,
    )
    out = tmp_path / "out"
    assert [p.name for p in written] == [
        "windows.csv",
        "summary.json",
        "alerts.jsonl",
        "events.jsonl",
    ]
    assert not (out / "timeline.png").exists()
    with (out / "windows.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header = [
        "end_row", "event_time_ms", "source_id", "score", "threshold", "scope", "flagged",
        "episode_id", "label",
    ]  # fmt: skip
    assert rows[0] == header == _docstring_columns()
    body = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert len(body) == 20, "one row per decided window (the dead letter has none)"
    assert [int(r["end_row"]) for r in body] == end_row.tolist()
    assert [int(r["event_time_ms"]) for r in body] == TIMES.tolist()
    assert [float(r["score"]) for r in body] == pytest.approx(SCORES.tolist(), rel=1e-8)
    assert [r["flagged"] for r in body] == [str(int(f)) for f in FLAGS]
    assert [r["label"] for r in body] == [str(int(v)) for v in LABELS]
    assert [r["scope"] for r in body] == SCOPES
    assert [r["episode_id"] for r in body] == run.episode_ids
    assert orjson.loads((out / "summary.json").read_bytes()) == orjson.loads(orjson.dumps(s))
    alerts = (out / "alerts.jsonl").read_bytes().splitlines()
    assert [Alert.model_validate_json(line) for line in alerts] == run.alerts
    events = (out / "events.jsonl").read_bytes().splitlines()
    assert [parse_event(line) for line in events] == run.events


def test_write_outputs_without_labels_leaves_the_label_column_empty(tmp_path: Path) -> None:
    run = _hand_made_run()
    s = summarise(run, None, ["s"] * 20, TIMES, target_far=0.01)
    write_outputs(
        tmp_path,
        run,
        end_row=np.asarray(INDEX),
        event_time_ms=TIMES,
        sources=["s"] * 20,
        labels=None,
        summary=s,
        plot=False,
    )
    with (tmp_path / "windows.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and {r["label"] for r in rows} == {""}


def test_timeline_is_drawn(tmp_path: Path) -> None:
    run = _hand_made_run()
    s = summarise(run, LABELS, ["s"] * 20, TIMES, target_far=0.01)
    written = write_outputs(
        tmp_path,
        run,
        end_row=np.asarray(INDEX),
        event_time_ms=TIMES,
        sources=["s"] * 20,
        labels=LABELS,
        summary=s,
    )
    png = tmp_path / "timeline.png"
    assert written[-1] == png and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- records and replay (the real core, a plain scorer) ---------------------------------------


def test_window_records_are_one_partitions_offsets_with_per_source_seqs() -> None:
    values = np.arange(5 * 8, dtype=np.float32).reshape(5, 8, 1)
    records = window_records(values, ["a", "b", "a", "a", "b"], np.arange(5) * 10, topic="w")
    assert [(r.topic, r.partition, r.offset) for r in records] == [("w", 0, i) for i in range(5)]
    decoded = [decode_window(r.key, r.value, r.headers) for r in records]
    assert [(w.source_id, w.seq, w.event_time_ms) for w in decoded] == [
        ("a", 0, 0), ("b", 0, 10), ("a", 1, 20), ("a", 2, 30), ("b", 1, 40),
    ]  # fmt: skip
    assert [r.key for r in records] == [b"a", b"b", b"a", b"a", b"b"]
    for w, v in zip(decoded, values, strict=True):
        np.testing.assert_array_equal(w.values, v)


def _levels_to_records(levels: list[float], source: str = "s") -> list[InputRecord]:
    values = np.repeat(np.asarray(levels, dtype=np.float32)[:, None, None], 8, axis=1)
    return window_records(values, [source] * len(levels), np.arange(len(levels)) * 1000)


def test_replay_records_decides_each_window_and_skips_dead_letters() -> None:
    levels = [0.1, 0.2, 3.0, 2.5, 0.1, 0.1, 0.1, 0.2, 0.3]
    records = _levels_to_records(levels)
    bad = InputRecord("backtest", 0, 99, b"s", b"{not json", None, 0)
    records.insert(4, bad)  # between the last anomalous window and the normal ones
    records = [r._replace(offset=i) for i, r in enumerate(records)]  # as on a topic
    core = build_decider(
        make_manifest(),
        ThresholdConfig(method="static"),
        LifecycleSettings(resolve_after_windows=3),
    )
    progress: list[tuple[int, int]] = []
    run = replay_records(
        core, MeanScorer().score, records, progress=lambda d, t: progress.append((d, t))
    )
    assert progress == [(10, 10)]
    assert run.index == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [(p, r) for p, r, _ in run.dead_letters] == [(4, "undecodable")]
    assert run.scores == pytest.approx(levels)
    assert run.flags == [lvl > 1.0 for lvl in levels]
    assert run.thresholds == [1.0] * 9 and set(run.scopes) == {"global"}
    states = [(a.state, a.input.offset) for a in run.alerts]
    assert states == [(AlertState.OPENED, 2), (AlertState.RESOLVED, 7)]
    episode = run.alerts[0].episode_id
    # The opening window through the resolving one carry the episode; the rest none.
    assert run.episode_ids == ["", "", episode, episode, episode, episode, episode, "", ""]


def test_replay_records_decides_as_the_service_does_in_batches() -> None:
    """Per-window replay (in scoring batches of SCORE_BATCH) gives the alerts and events of
    one core deciding the same records in the service's batches, on the adaptive method."""
    rng = np.random.default_rng(0)
    n = SCORE_BATCH + 700
    levels = rng.uniform(0.0, 0.9, size=n)
    for start in (300, 900, SCORE_BATCH - 3, 1500):  # one across a scoring batch boundary
        levels[start : start + 6] = 2.0 + rng.uniform(0, 1, size=6)
    levels[1600:] += 2.0  # a shift to the end
    records = _levels_to_records(levels.tolist())
    lifecycle = LifecycleSettings(resolve_after_windows=3, shift_after_windows=40)
    config = ThresholdConfig()
    assert config.method == "adaptive"
    run = replay_records(
        build_decider(make_manifest(), config, lifecycle), MeanScorer().score, records
    )

    service_core = build_decider(make_manifest(), config, lifecycle)
    scorer = MeanScorer()
    alerts: list[Alert] = []
    events = []
    start = 0
    for size in (1, 37, 500, 2048):  # uneven batches, as a consumer hands them over
        prepared = service_core.prepare(records[start : start + size])
        decisions = service_core.decide(prepared, scorer.score(prepared.batch), now_ms=0)
        alerts += decisions.alerts
        events += decisions.events
        start += size
    assert start >= n
    assert [(a.alert_id, a.state) for a in run.alerts] == [(a.alert_id, a.state) for a in alerts]
    assert run.events == events
    assert any((a.resolved_reason or "").startswith("sustained shift") for a in alerts)
    assert len(run.flags) == n and sum(run.flags) >= 24


# -- the command --------------------------------------------------------------------------------

WINDOW = 8


def _sine(rng: np.random.Generator, rows: int) -> np.ndarray:
    i = np.arange(rows)
    return np.sin(2 * np.pi * i / WINDOW) + rng.normal(0, 0.05, rows)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 8-step, 1-channel bundle fitted in a few seconds."""
    from tests.bundle_factory import build_bundle

    x = _sine(np.random.default_rng(1), 400 * WINDOW).astype(np.float32)
    return build_bundle(
        tmp_path_factory.mktemp("bundle") / "bundle", x.reshape(-1, WINDOW, 1), epochs=5
    )


def _csv(path: Path, channels: int = 1, rows: int = 60 * WINDOW) -> Path:
    rng = np.random.default_rng(2)
    cols = [_sine(rng, rows) for _ in range(channels)]
    label = np.zeros(rows, dtype=int)
    cols[0][300:304] += 4.0
    label[300:304] = 1
    names = ["x", "y", "z"][:channels]
    lines = ["time," + ",".join(names) + ",label"]
    for i in range(rows):
        lines.append(
            f"{1_700_000_000 + i}," + ",".join(f"{c[i]:.5f}" for c in cols) + f",{label[i]}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """No DETECTOR_* variables and no .env: the command's defaults; the env for children."""
    for key in list(os.environ):
        if key.startswith("DETECTOR_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detector", "backtest", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


# TensorFlow's C++ runtime writes these to stderr when it loads (absl, before its logging is
# initialised, so TF_CPP_MIN_LOG_LEVEL does not hold them back).
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} )")


def _own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]


def test_backtest_command_writes_the_outputs_and_exits_0(
    tiny_bundle: Path, tmp_path: Path, clean_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from detector.__main__ import main

    data = _csv(tmp_path / "pump.csv")
    out = tmp_path / "out"
    argv = ["backtest", "--bundle", str(tiny_bundle), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("backtest: ") and f"wrote {out}/" in captured.out
    assert "60 windows of pump.csv" in captured.err  # progress lines (no --quiet)
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["all_windows"]["windows"] == 60 and summary["labelled"] is True
    assert summary["anomaly_spans"] == 1
    assert summary["settings"]["window"] == WINDOW and summary["settings"]["stride"] == WINDOW
    assert summary["settings"]["threshold"]["method"] == "adaptive"
    assert len((out / "windows.csv").read_text().splitlines()) == 1 + 60
    assert {p.name for p in out.iterdir()} == {
        "windows.csv",
        "summary.json",
        "alerts.jsonl",
        "events.jsonl",
    }

    # The channels of a wider file can be chosen, as the mismatch error advises.
    wide = _csv(tmp_path / "wide.csv", channels=2)
    argv = ["backtest", "--bundle", str(tiny_bundle), "--data", str(wide), "--out", str(out)]
    assert main([*argv, "--columns", "y", "--no-plot", "--quiet", "--target-far", "0.05"]) == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["target_far"] == 0.05 and summary["anomaly_spans"] == 1
    assert capsys.readouterr().err == ""


def test_a_missing_file_exits_2_with_one_error_line(
    tiny_bundle: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    missing = tmp_path / "nowhere.csv"
    done = _run(
        clean_env, tmp_path, "--bundle", str(tiny_bundle), "--data", str(missing), "--out", "o"
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert _own_lines(done.stderr) == [f"detector: error: {missing}: no such file"]
    assert not (tmp_path / "o").exists()


def test_a_file_whose_channels_do_not_fit_the_bundle_exits_2_with_one_error_line(
    tiny_bundle: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    wide = _csv(tmp_path / "wide.csv", channels=2)
    done = _run(
        clean_env, tmp_path, "--bundle", str(tiny_bundle), "--data", str(wide), "--out", "o"
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = _own_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"detector: error: {wide}: windows of 8 steps x 2 channels (x, y)")
    assert "the bundle expects 8 x 1 (ch0)" in lines[0] and "--columns" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("which", ["missing", "mismatch"])
def test_file_errors_are_found_before_the_model_is_loaded(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    from detector import model
    from detector.errors import ConfigError, DataFileError

    def load_bundle(_path: Path) -> None:
        raise AssertionError("the model was loaded before the file was checked")

    monkeypatch.setattr(model, "load_bundle", load_bundle)
    data = tmp_path / "nowhere.csv" if which == "missing" else _csv(tmp_path / "w.csv", 2)
    with pytest.raises(DataFileError if which == "missing" else ConfigError):
        backtest.backtest_file(
            tiny_bundle,
            data,
            tmp_path / "out",
            threshold=ThresholdConfig(),
            lifecycle=LifecycleSettings(),
            plot=False,
        )
