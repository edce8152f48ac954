"""Replay's reading (through detector.datafile): ECG5000 layout, sensor CSVs (sliding windows,
labels), NPZ; bad files as ProducerInputError; windows as a stream."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from producer.errors import ProducerInputError
from producer.filesink import write_npz
from producer.replay import detect_format, load_replay, read_windows, replay_batches
from producer.simulate import make_arrays
from producer.windows import concat_batches


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("sep", [",", ";"])
def test_sensor_csv_cuts_sliding_windows_with_labels(tmp_path: Path, sep: str) -> None:
    rows = [sep.join(["timestamp", "temp", "pressure", "label"])]
    for i in range(100):
        rows.append(
            sep.join(
                [str(1_700_000_000 + i), f"{20 + 0.1 * i:.2f}", f"{i}", "1" if i == 57 else "0"]
            )
        )
    windows = read_windows(_csv(tmp_path / "plant.csv", rows), window=20, step=10)
    assert windows.channel_names == ("temp", "pressure")
    assert windows.values.shape == (9, 20, 2)  # (100 - 20) // 10 + 1
    # Row 57 lies in the windows starting at rows 40 and 50.
    assert windows.labels.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert windows.values[1, 0, 1] == 10.0 and windows.values[1, -1, 1] == 29.0
    assert windows.time_ms is not None and windows.time_ms[0] == (1_700_000_000 + 19) * 1000
    assert windows.time_ms[1] - windows.time_ms[0] == 10_000, "epoch seconds become ms"


def test_text_labels_become_anomaly_types_and_iso_times_parse(tmp_path: Path) -> None:
    rows = ["time,a,b,state"]
    kinds = ["normal"] * 6 + ["valve_stuck"] * 2 + ["normal"] * 4
    for i, kind in enumerate(kinds):
        rows.append(f"2024-05-01T10:00:{i:02d}Z,{i},{-i},{kind}")
    windows = read_windows(_csv(tmp_path / "v.csv", rows), label_column="state", window=4)
    assert windows.labels.tolist() == [0, 1, 0]
    assert windows.anomaly_types == ["none", "valve_stuck", "none"]
    assert windows.time_ms is not None
    assert windows.time_ms[0] == 1_714_557_603_000  # 2024-05-01T10:00:03Z


def test_columns_can_be_chosen(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", ["ts,a,b,c", "1,1,2,3", "2,4,5,6"])
    windows = read_windows(path, columns=["c", "a"], window=1)
    assert windows.channel_names == ("c", "a")
    assert windows.values[:, 0].tolist() == [[3.0, 1.0], [6.0, 4.0]]


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        (["t,a", "1,2", "2,oops"], {}, r"line 3: column a: 'oops' is not a number"),
        (["t,a", "1,2", "2,3,4"], {}, "line 3: 3 columns, the header has 2"),
        (["t,a", "1,2", "0,3"], {"time_policy": "error"}, "line 3: t '0' is not later than"),
        (["time,a", "yesterday,2"], {}, "line 2: time: 'yesterday' is not an ISO 8601"),
        (["t,a", "1,2", "2,"], {}, r"line 3: column a: an empty cell \(a missing value\)"),
        (["t,a"], {}, "no data rows"),
        (["t,a", "1,2"], {"label_column": "label"}, "no label column 'label'"),
        (["time", "1"], {}, "no numeric channel column"),
    ],
)
def test_malformed_sensor_csv_names_file_and_line(
    tmp_path: Path, rows: list[str], kwargs: dict[str, str], message: str
) -> None:
    path = _csv(tmp_path / "bad.csv", rows)
    kwargs = {"time_column": "t", **kwargs} if rows[0].startswith("t,") else kwargs
    with pytest.raises(ProducerInputError, match=message) as info:
        read_windows(path, window=1, **kwargs)  # type: ignore[arg-type]
    assert "bad.csv" in str(info.value)


def test_window_longer_than_the_series_is_an_error(tmp_path: Path) -> None:
    path = _csv(tmp_path / "s.csv", ["t,a", "1,1", "2,2", "3,3"])
    with pytest.raises(ProducerInputError, match="has 3 rows, shorter than one window of 5"):
        read_windows(path, window=5)
    with pytest.raises(ProducerInputError, match="must be >= 1"):
        read_windows(path, window=2, step=0)


def test_missing_empty_and_directory_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ProducerInputError, match="no such file"):
        read_windows(tmp_path / "absent.csv", "ecg5000")
    with pytest.raises(ProducerInputError, match="the file is empty"):
        read_windows(_csv(tmp_path / "empty.csv", [""]), "ecg5000")
    with pytest.raises(ProducerInputError, match="is a directory"):
        read_windows(tmp_path, "csv", window=2)
    with pytest.raises(ProducerInputError, match=r"not a readable \.npz"):
        read_windows(_csv(tmp_path / "fake.npz", ["hello"]), "npz")


def test_ecg5000_layout_labels_one_as_normal(tmp_path: Path) -> None:
    rows = [
        ",".join([*(f"{0.01 * j:.2f}" for j in range(6)), label]) for label in ("1.0", "0.0", "1.0")
    ]
    windows = read_windows(_csv(tmp_path / "e.csv", rows), "ecg5000")
    assert windows.values.shape == (3, 6, 1)
    assert windows.labels.tolist() == [0, 1, 0], "1 = normal in ECG5000, 1 = anomalous on the wire"
    assert windows.anomaly_types == ["none", "abnormal", "none"]


def test_ecg5000_five_class_labels_become_types(tmp_path: Path) -> None:
    rows = [f"0.1,0.2,0.3,{c}" for c in (1, 2, 3, 4, 5)]
    windows = read_windows(_csv(tmp_path / "e5.csv", rows), "ecg5000")
    assert windows.anomaly_types == ["none", "r_on_t_pvc", "pvc", "sp_eb", "unclassified"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["0.1,0.2,1", "0.1,1"], "line 2: 2 columns, expected 3"),
        (["0.1,x,1"], "line 1: column 2: 'x' is not a number"),
        (["0.1,0.2,0.5"], r"label \(last column\) 0.5 is not a class number"),
        (["0.1,1"], "at least 3 columns"),
    ],
)
def test_malformed_ecg5000_rows(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(ProducerInputError, match=message):
        read_windows(_csv(tmp_path / "e.csv", rows), "ecg5000")


def test_real_ecg5000_file(ecg5000_path: Path) -> None:
    windows = read_windows(ecg5000_path, "ecg5000")
    assert windows.values.shape == (4998, 140, 1)
    assert Counter(windows.labels.tolist()) == {0: 2919, 1: 2079}
    five = ecg5000_path.with_name("ecg5000_5class.csv")
    if five.is_file():
        types = Counter(read_windows(five, "ecg5000").anomaly_types)
        assert types == {
            "none": 2919,
            "r_on_t_pvc": 1765,
            "sp_eb": 194,
            "pvc": 96,
            "unclassified": 24,
        }


def test_npz_round_trip_keeps_values_labels_and_types(tmp_path: Path) -> None:
    batch = make_arrays("sensor", 50, seed=1, anomaly_rate=0.3, channels=3, window=8)
    write_npz(tmp_path / "w.npz", batch)
    windows = read_windows(tmp_path / "w.npz", "npz")
    np.testing.assert_array_equal(windows.values, batch.values)
    assert windows.labels.tolist() == batch.labels.tolist()
    assert windows.anomaly_types == list(batch.anomaly_types)
    assert windows.channel_names == ("ch0", "ch1", "ch2")


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(_csv(tmp_path / "a.csv", ["1.0,2.0,1"])) == "ecg5000"
    assert detect_format(_csv(tmp_path / "b.csv", ["time;x", "1;2"])) == "csv"
    assert detect_format(tmp_path / "c.npz") == "npz"
    with pytest.raises(ProducerInputError, match="needs a window length"):
        read_windows(tmp_path / "b.csv")


def test_replay_spreads_windows_over_sources_and_can_loop(tmp_path: Path) -> None:
    rows = [f"{0.1 * i},{0.2 * i},{1 if i % 3 else 0}" for i in range(7)]
    windows = read_windows(_csv(tmp_path / "e.csv", rows), "ecg5000")
    one = concat_batches(list(replay_batches(windows, source_prefix="e")))
    assert set(one.source_ids) == {"e"} and one.seqs.tolist() == list(range(7))
    looped = replay_batches(windows, n_sources=2, source_prefix="e", loop=True, batch_size=3)
    first = concat_batches([next(looped) for _ in range(6)])  # 3 + 3 + 1 + 3 + 3 + 1 windows
    assert len(first) == 14
    np.testing.assert_array_equal(first.values[7:], first.values[:7])
    assert list(first.source_ids[:3]) == ["e-0", "e-1", "e-0"]
    seq0 = first.seqs[np.asarray(first.source_ids) == "e-0"].tolist()
    assert seq0 == list(range(7)), "seq keeps increasing across passes"
    assert set(first.regimes) == {"replay"}


def test_load_replay_gives_one_batch_from_the_file_name(tmp_path: Path) -> None:
    rows = ["timestamp;temp;label"] + [f"{i};{i};{int(i == 5)}" for i in range(12)]
    batch = load_replay(_csv(tmp_path / "plant.csv", rows), "csv", window=4, stride=4)
    assert set(batch.source_ids) == {"plant"}
    assert batch.labels.tolist() == [0, 1, 0]
