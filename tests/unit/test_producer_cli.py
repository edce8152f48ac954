"""The producer CLI offline: reproducible files, settings, and clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from pydantic import SecretStr

from detector.messages import H_ANOMALY_TYPE, H_LABEL, H_REGIME, decode_window
from producer.__main__ import main
from producer.settings import ProducerSettings

pytestmark = pytest.mark.usefixtures("fresh_structlog")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PRODUCER_* variables or .env file of the developer's leak into these tests."""
    for name in [k for k in __import__("os").environ if k.startswith("PRODUCER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_same_seed_same_bytes_other_seed_other_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["simulate", "--kind", "sensor", "--count", "500", "--anomaly-rate", "0.1"]
    args += ["--drift", "gradual", "--sources", "3"]
    real_time = time.time
    for i, (name, seed) in enumerate((("a", "1"), ("b", "1"), ("c", "2"))):
        # Write each file "on another day": nothing in the bytes may depend on the clock.
        monkeypatch.setattr(time, "time", lambda i=i: real_time() + 86_400 * i)
        assert main([*args, "--seed", seed, "--out", str(tmp_path / f"{name}.npz")]) == 0
    a, b, c = ((tmp_path / f"{n}.npz").read_bytes() for n in "abc")
    assert a == b
    assert a != c
    data = np.load(tmp_path / "a.npz")
    assert data["windows"].shape == (500, 64, 4)
    assert 0.05 < data["labels"].mean() < 0.16


def test_demo_training_file_holds_normal_windows_in_the_agreed_layout(tmp_path: Path) -> None:
    out = tmp_path / "normal.npz"
    argv = ["simulate", "--kind", "ecg", "--sources", "4", "--count", "300"]
    assert main([*argv, "--anomaly-rate", "0", "--seed", "0", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as npz:
        assert npz["windows"].dtype == np.float32 and npz["windows"].shape == (300, 140, 1)
        assert npz["labels"].dtype == np.int8 and not npz["labels"].any()
        assert npz["channel_names"].tolist() == ["ecg"]
        assert set(npz["anomaly_types"].tolist()) == {"none"}
        assert npz["source_ids"][:5].tolist() == ["ecg-0", "ecg-1", "ecg-2", "ecg-3", "ecg-0"]
    from training import data

    dataset = data.load_dataset(out, "npz")
    assert dataset.windows.shape == (300, 140, 1)


def test_jsonl_output_is_the_window_contract_with_truth_in_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "w.jsonl"
    argv = ["simulate", "--kind", "sensor", "--channels", "3", "--window", "16", "--count", "40"]
    argv += ["--anomaly-rate", "0.5", "--rate", "100", "--out", str(out)]
    assert main(argv) == 0
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = out.read_bytes().splitlines()
    assert len(lines) == 40 == summary["windows"]
    windows = [decode_window(None, line, None) for line in lines]
    assert windows[0].values.shape == (16, 3)
    assert [w.event_time_ms - windows[0].event_time_ms for w in windows[:3]] == [0, 10, 20]
    labels = [int(w.metadata[H_LABEL]) for w in windows]
    assert sum(labels) == summary["anomalous"] > 0
    for w, label in zip(windows, labels, strict=True):
        assert (w.metadata[H_ANOMALY_TYPE] != "none") == bool(label)
        assert w.metadata[H_REGIME] == "baseline"


def test_replay_csv_to_file_keeps_labels_and_file_times(tmp_path: Path) -> None:
    rows = ["timestamp;temp;pressure;label"]
    rows += [f"{1_700_000_000 + i};{i};{2 * i};{int(i == 57)}" for i in range(100)]
    src = tmp_path / "plant.csv"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "plant.npz"
    argv = ["replay", "--file", str(src), "--window", "20", "--stride", "10"]
    assert main([*argv, "--event-time", "file", "--sources", "2", "--out", str(out)]) == 0
    with np.load(out) as npz:
        assert npz["windows"].shape == (9, 20, 2)
        assert npz["labels"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0]
        assert npz["event_time_ms"][0] == (1_700_000_000 + 19) * 1000
        assert npz["source_ids"][:3].tolist() == ["plant-0", "plant-1", "plant-0"]
        assert set(npz["regimes"].tolist()) == {"replay"}


def test_settings_come_from_the_environment_and_flags_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODUCER_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9093")
    monkeypatch.setenv("PRODUCER_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("PRODUCER_KAFKA__EXTRA", '{"linger.ms": "20"}')
    monkeypatch.setenv("PRODUCER_SOURCES", "3")
    s = ProducerSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.kafka.bootstrap_servers == "kafka-1:9093"
    assert isinstance(s.kafka.sasl_password, SecretStr) and "hunter2" not in repr(s)
    assert s.kafka.client_config()["linger.ms"] == "20"
    out = tmp_path / "s.npz"
    assert main(["simulate", "--kind", "sensor", "--count", "6", "--out", str(out)]) == 0
    assert len(set(np.load(out)["source_ids"].tolist())) == 3
    assert (
        main(["simulate", "--kind", "sensor", "--count", "6", "--sources", "2", "--out", str(out)])
        == 0
    )
    assert len(set(np.load(out)["source_ids"].tolist())) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--rate", "-5", "--count", "1"], "--rate must be >= 0"),
        (["simulate", "--rate", "inf", "--count", "1"], "--rate must be a finite number"),
        (
            ["simulate", "--anomaly-types", "gremlins", "--count", "1", "--out", "x.npz"],
            "unknown ecg anomaly type",
        ),
        (
            ["simulate", "--kind", "sensor", "--anomaly-types", "st_elevation", "--count", "1"],
            "unknown sensor anomaly type 'st_elevation'",
        ),
        (["simulate", "--anomaly-rate", "2", "--count", "1"], "--anomaly-rate must be within"),
        (["simulate", "--sources", "0", "--count", "1", "--out", "x.npz"], "at least one source"),
        (["simulate", "--count", "-1", "--out", "x.npz"], "--count must be >= 0"),
        (["simulate", "--count", "0", "--out", "x.npz"], "nothing to write"),
        (["simulate", "--duration", "0"], "--duration must be > 0"),
        (["simulate", "--count", "5", "--out", "x.txt"], ".npz or .jsonl"),
        (["simulate", "--out", "x.npz"], "--out needs --count"),
        (["simulate", "--count", "5", "--duration", "1", "--out", "x.npz"], "use --count"),
        (
            ["simulate", "--kind", "sensor", "--window", "2", "--count", "1", "--out", "x.npz"],
            "at least 4",
        ),
        (["simulate", "--drift", "gradual", "--drift-length", "0", "--count", "5"], "length >= 1"),
        (["simulate", "--count", "1", "-X", "linger.ms"], "KEY=VALUE"),
        (["simulate", "--count", "1", "--out", "a-file/x.npz"], "cannot write a-file/x.npz"),
        (["replay", "--file", "missing.csv", "--out", "x.npz"], "no such file"),
        (["replay", "--file", ".", "--format", "csv", "--window", "2"], "is a directory"),
    ],
)
def test_bad_input_is_a_clear_error_without_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "producer: error: " in err and message in err
    assert "Traceback" not in err


def test_a_bad_environment_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRODUCER_RATE", "-3")
    assert main(["simulate", "--count", "1", "--out", "x.npz"]) == 2
    assert (
        "invalid settings: rate: Input should be greater than or equal to 0"
        in capsys.readouterr().err
    )


def test_malformed_replay_file_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("timestamp,a,b\n1,2,3\n2,oops,4\n")
    argv = ["replay", "--file", str(path), "--format", "csv", "--window", "2"]
    assert main([*argv, "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "broken.csv: line 3: column a: 'oops' is not a number" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_the_installed_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "ecg.csv"
    bad.write_text("0.1,0.2,1\n0.3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "producer", "replay", "--file", str(bad), "--rate", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"producer: error: {bad}: line 2: 1 columns, expected 3 like the first row"
    ]


def test_replay_flags_pick_rows_columns_sources_and_the_time_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["time,unit,flow,temp,changepoint,label"]
    for i in range(40):
        stamp = 1_700_000_000 + i - (3 if i == 21 else 0)  # line 23 goes back in time
        rows.append(f"{stamp},u{i % 2},{i},{-i},{int(i == 10)},{int(i == 30)}")
    src = tmp_path / "rig.csv"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "rig.npz"
    argv = ["replay", "--file", str(src), "--window", "4", "--rows", "8:", "--columns", "temp"]
    argv += ["--source-column", "unit", "--event-time", "file"]
    assert main([*argv, "--out", str(out)]) == 0
    with np.load(out) as npz:
        assert npz["windows"].shape == (8, 4, 1), "32 rows, 16 per unit: 4 windows each"
        assert npz["channel_names"].tolist() == ["temp"]
        assert npz["source_ids"].tolist() == ["u0", "u1"] * 4
        assert npz["seqs"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert npz["windows"][0, :, 0].tolist() == [-8, -10, -12, -14]
        assert npz["labels"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]  # row 30: u0, rows 24-30
        times = npz["event_time_ms"]
        assert times[0] == (1_700_000_000 + 14) * 1000
    assert main([*argv, "--time-policy", "error", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert f"producer: error: {src}: line 23: time " in err
    assert "--time-policy clamp" in err and "Traceback" not in err
    assert main([*argv[:-2], "--rows", "9", "--out", str(tmp_path / "y.npz")]) == 2
    assert "--rows: rows '9': expected A:B" in capsys.readouterr().err


def test_a_messy_file_replays_to_the_windows_it_trains_on(tmp_path: Path) -> None:
    data = pytest.importorskip("training.data")
    rows = ["timestamp;a;b;label"]
    for i in range(50):
        second = i - (2 if i % 9 == 4 else 0) - (1 if i % 13 == 6 else 0)  # back and repeats
        rows.append(f"2024-05-01T00:{second // 60:02d}:{second % 60:02d};{i},25;{i % 4};0")
    src = tmp_path / "messy.csv"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "messy.npz"
    argv = ["replay", "--file", str(src), "--window", "6", "--stride", "3", "--rows", "5:45"]
    assert main([*argv, "--event-time", "file", "--out", str(out)]) == 0
    trained = data.load_dataset(src, "csv", window=6, stride=3, rows=(5, 45))
    assert trained.policy_touched > 0
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["windows"], trained.windows)
        assert npz["channel_names"].tolist() == trained.channel_names == ["a", "b"]
        assert np.all(np.diff(npz["event_time_ms"]) > 0)
