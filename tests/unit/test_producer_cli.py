"""Producer: pacing, reproducible files, replay, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from producer.__main__ import main
from producer.pacing import Pacer
from producer.replay import load_replay
from producer.simulate import make_arrays


def test_steady_pacer_spaces_windows_evenly() -> None:
    p = Pacer(200.0)
    assert [p.due(i) for i in (0, 1, 200, 1000)] == [0.0, 0.005, 1.0, 5.0]


def test_bursty_pacer_keeps_the_average_rate_but_varies_it() -> None:
    p = Pacer(100.0, bursty=True)
    due = np.array([p.due(i) for i in range(1000)])
    assert np.all(np.diff(due) > 0)
    assert due[-1] == pytest.approx(10.0, abs=0.5)  # 1000 windows at 100/s on average
    gaps = np.diff(due)
    assert gaps.max() / gaps.min() == pytest.approx(9.0, rel=0.01)  # 1.8x vs 0.2x


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    args = [
        "simulate",
        "--kind",
        "sensor",
        "--count",
        "500",
        "--anomaly-rate",
        "0.1",
        "--drift",
        "gradual",
        "--sources",
        "3",
    ]
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main([*args, "--seed", seed, "--out", str(tmp_path / f"{name}.npz")]) == 0
    a, b, c = ((tmp_path / f"{n}.npz").read_bytes() for n in "abc")
    assert a == b
    assert a != c
    data = np.load(tmp_path / "a.npz")
    assert data["windows"].shape == (500, 64, 4)
    assert 0.05 < data["labels"].mean() < 0.16


def test_anomaly_rate_and_types_are_as_asked() -> None:
    batch = make_arrays(
        "ecg",
        4000,
        seed=3,
        anomaly_rate=0.05,
        n_sources=4,
        anomaly_types=["st_elevation", "noise_burst"],
    )
    assert 0.04 < batch.labels.mean() < 0.06
    kinds = {t for t, lbl in zip(batch.anomaly_types, batch.labels, strict=True) if lbl}
    assert kinds == {"st_elevation", "noise_burst"}
    for source in {*batch.source_ids}:
        seqs = [s for s, src in zip(batch.seqs, batch.source_ids, strict=True) if src == source]
        assert seqs == sorted(seqs) and seqs[0] == 0


def test_replay_cuts_sensor_csv_into_labelled_windows(tmp_path: Path) -> None:
    rows = ["timestamp;temp;pressure;label"]
    for i in range(100):
        label = 1 if i == 57 else 0
        rows.append(f"{1_700_000_000 + i};{20 + 0.1 * i:.2f};{1.0 + 0.01 * i:.3f};{label}")
    path = tmp_path / "plant.csv"
    path.write_text("\n".join(rows) + "\n")
    batch = load_replay(path, "csv", window=20, stride=10)
    assert batch.values.shape == (9, 20, 2)
    assert batch.channel_names == ("temp", "pressure")
    # Row 57 lies in the windows starting at rows 40 and 50.
    assert batch.labels.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert set(batch.source_ids) == {"plant"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--rate", "-5", "--count", "1"], "--rate must be >= 0"),
        (
            ["simulate", "--anomaly-types", "gremlins", "--count", "1", "--out", "x.npz"],
            "unknown ecg anomaly type",
        ),
        (["simulate", "--sources", "0", "--count", "1", "--out", "x.npz"], "at least one source"),
        (["simulate", "--count", "5", "--out", "x.txt"], ".npz or .jsonl"),
        (["replay", "--file", "missing.csv", "--out", "x.npz"], "no such file"),
    ],
)
def test_bad_input_is_a_clear_error_without_traceback(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_malformed_replay_file_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("timestamp,a,b\n1,2,3\n2,oops,4\n")
    assert (
        main(
            [
                "replay",
                "--file",
                str(path),
                "--format",
                "csv",
                "--window",
                "2",
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "broken.csv" in err and "Traceback" not in err
