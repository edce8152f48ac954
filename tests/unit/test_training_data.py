"""Loading ECG5000, sensor CSVs and NPZ windows; windowing; splits; bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from training.data import load_dataset, split_dataset
from training.errors import DataError

REPO = Path(__file__).resolve().parents[2]
ECG5000 = Path(
    os.environ.get("ECG5000_PATH", REPO.parent / "shared" / "data" / "ecg5000" / "ecg5000.csv")
)


def _ecg_file(tmp_path: Path, rows: list[list[float]]) -> Path:
    path = tmp_path / "ecg.csv"
    path.write_text("\n".join(",".join(repr(v) for v in row) for row in rows) + "\n")
    return path


def _ecg_rows(n: int, t: int = 6, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[*rng.normal(size=t).tolist(), float(i % 3 != 0)] for i in range(n)]


# -- ECG5000 layout ---------------------------------------------------------------------------


def test_ecg_layout_last_column_is_label_one_normal(tmp_path: Path) -> None:
    rows = _ecg_rows(9)
    data = load_dataset(_ecg_file(tmp_path, rows), "ecg5000")
    assert data.windows.shape == (9, 6, 1)
    assert data.windows.dtype == np.float32
    np.testing.assert_allclose(data.windows[2, :, 0], rows[2][:6], rtol=1e-6)
    # 1 = normal in the file; the dataset says True = anomalous.
    assert data.labels is not None
    assert data.labels.tolist() == [row[-1] == 0.0 for row in rows]


def test_auto_format_detects_ecg_layout(tmp_path: Path) -> None:
    assert load_dataset(_ecg_file(tmp_path, _ecg_rows(4))).format == "ecg5000"


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("1.0,2.0,3.0", "line 3: 3 columns, expected 7"),
        ("1,2,3,4,5,nan,1", "line 3: column 6: 'nan' is not finite"),
        ("1,2,3,4,5,inf,1", "line 3: column 6: 'inf' is not finite"),
        ("1,2,x,4,5,6,1", "line 3: column 3: 'x' is not a number"),
        ("1,2,,4,5,6,1", "line 3: column 3: an empty cell (a missing value) is not a number"),
        ("1,2,3,4,5,6,0.5", "line 3: label (last column) 0.5 is not a class number"),
    ],
)
def test_ecg_bad_rows_name_file_and_line(tmp_path: Path, line: str, expect: str) -> None:
    path = _ecg_file(tmp_path, _ecg_rows(2))
    path.write_text(path.read_text() + line + "\n" + "1,2,3,4,5,6,1\n")
    with pytest.raises(DataError) as err:
        load_dataset(path, "ecg5000")
    assert str(path) in str(err.value)
    assert expect in str(err.value)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        load_dataset(empty, "ecg5000")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "absent.csv")


def test_unknown_format_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown format 'parquet'"):
        load_dataset(_ecg_file(tmp_path, _ecg_rows(3)), "parquet")  # type: ignore[arg-type]


def test_ecg_tutorial_split_is_the_tutorials(tmp_path: Path) -> None:
    from sklearn.model_selection import train_test_split

    rows = _ecg_rows(50)
    data = load_dataset(_ecg_file(tmp_path, rows), "ecg5000")
    split = split_dataset(data, test_fraction=0.5, seed=3)  # both ignored for ECG5000
    raw = np.asarray(rows)
    train, test, _, _ = train_test_split(raw[:, :-1], raw[:, -1], test_size=0.2, random_state=21)
    np.testing.assert_allclose(data.windows[split.train, :, 0], train, rtol=1e-6)
    np.testing.assert_allclose(data.windows[split.test, :, 0], test, rtol=1e-6)


@pytest.mark.skipif(not ECG5000.is_file(), reason=f"ECG5000 not found at {ECG5000} (ECG5000_PATH)")
def test_real_ecg5000_counts_and_split() -> None:
    data = load_dataset(ECG5000)
    assert data.format == "ecg5000"
    assert data.windows.shape == (4998, 140, 1)
    assert data.labels is not None
    assert int((~data.labels).sum()) == 2919
    split = split_dataset(data)
    assert (len(split.train), len(split.test)) == (3998, 1000)
    assert int((~data.labels[split.train]).sum()) == 2359
    assert int(data.labels[split.test].sum()) == 440


# -- sensor CSV ---------------------------------------------------------------------------------


def _sensor_csv(tmp_path: Path, n: int, sep: str = ",", label_at: tuple[int, ...] = ()) -> Path:
    path = tmp_path / "sensors.csv"
    lines = [sep.join(["timestamp", "temp", "pressure", "label"])]
    for i in range(n):
        temp = f"{20 + i * 0.5}".replace(".", "," if sep == ";" else ".")
        lines.append(
            sep.join([f"2024-05-01T00:00:{i:02d}Z", temp, str(i), str(int(i in label_at))])
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_sliding_windows_and_any_row_labels(tmp_path: Path) -> None:
    path = _sensor_csv(tmp_path, 10, label_at=(5,))
    data = load_dataset(path, "csv", window=4, stride=2)
    assert data.channel_names == ["temp", "pressure"]
    assert data.windows.shape == (4, 4, 2)  # starts 0, 2, 4, 6
    np.testing.assert_allclose(data.windows[1, :, 1], [2, 3, 4, 5])
    np.testing.assert_allclose(data.windows[3, :, 0], [23, 23.5, 24, 24.5])
    assert data.labels is not None
    # Row 5 is anomalous: windows [2..5] and [4..7] contain it, [0..3] and [6..9] do not.
    assert data.labels.tolist() == [False, True, True, False]


def test_csv_semicolon_with_decimal_commas(tmp_path: Path) -> None:
    data = load_dataset(_sensor_csv(tmp_path, 6, sep=";"), "csv", window=3)
    assert data.windows.shape == (2, 3, 2)
    np.testing.assert_allclose(data.windows[0, :, 0], [20.0, 20.5, 21.0])


def test_csv_without_labels_and_explicit_label_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("time,a,flag\n1,0.5,0\n2,0.6,1\n3,0.7,0\n")
    assert load_dataset(path, "csv", window=2, label_column="flag").labels is not None
    unlabelled = load_dataset(path, "csv", window=2)  # no column called "label"
    assert unlabelled.labels is None
    assert unlabelled.channel_names == ["a", "flag"]


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (
            "2024-05-01T00:00:00Z,1,2,0\n2024-05-01T00:00:01Z,1,0\n",
            "line 3: 3 columns, the header has 4",
        ),
        ("2024-05-01T00:00:00Z,1,nan,0\n", "line 2: column pressure: 'nan' is not finite"),
        (
            "2024-05-01T00:00:00Z,1,2,0\n2024-05-01T00:00:01Z,1,,0\n",
            "line 3: column pressure: an empty cell (a missing",
        ),
        ("yesterday,1,2,0\n", "line 2: timestamp: 'yesterday' is not an ISO 8601"),
        ("2024-05-01T00:00:00Z,1,2,nan\n", "line 2: label: 'nan' is not a label"),
    ],
)
def test_csv_bad_rows_name_file_and_line(tmp_path: Path, body: str, expect: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,temp,pressure,label\n" + body)
    with pytest.raises(DataError) as err:
        load_dataset(path, "csv", window=1 + 1)
    assert f"{path}: {expect}" in str(err.value) or expect in str(err.value)
    assert str(path) in str(err.value)


def test_csv_shorter_than_one_window(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has 5 rows, shorter than one window of 8"):
        load_dataset(_sensor_csv(tmp_path, 5), "csv", window=8)


def test_csv_needs_window_and_known_label_column(tmp_path: Path) -> None:
    path = _sensor_csv(tmp_path, 5)
    with pytest.raises(DataError, match="--window"):
        load_dataset(path, "csv")
    with pytest.raises(DataError, match="no label column 'status'"):
        load_dataset(path, "csv", window=2, label_column="status")


def test_csv_chronological_split_has_no_overlap(tmp_path: Path) -> None:
    data = load_dataset(_sensor_csv(tmp_path, 60), "csv", window=8, stride=2)
    split = split_dataset(data, test_fraction=0.25)
    last_train_row = split.train.max() * 2 + 8 - 1
    first_test_row = split.test.min() * 2
    assert last_train_row < first_test_row
    assert len(split.test) == round(len(data.windows) * 0.25)


# -- NPZ ------------------------------------------------------------------------------------------


def test_npz_windows_labels_and_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "w.npz"
    np.savez(
        path,
        windows=rng.normal(size=(20, 8, 3)).astype(np.float32),
        labels=(np.arange(20) % 5 == 0).astype(np.int8),
        channel_names=np.asarray(["a", "b", "c"]),
    )
    data = load_dataset(path)
    assert data.format == "npz"
    assert data.windows.shape == (20, 8, 3)
    assert data.channel_names == ["a", "b", "c"]
    assert data.labels is not None and int(data.labels.sum()) == 4


def test_npz_aliases_and_single_channel(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, x=np.zeros((5, 7)), y=np.zeros(5, dtype=np.int8))
    data = load_dataset(path, "npz")
    assert data.windows.shape == (5, 7, 1)
    assert data.channel_names == ["ch0"]


@pytest.mark.parametrize(
    ("arrays", "expect"),
    [
        ({"values": np.zeros((3, 4))}, "no 'windows' array"),
        ({"windows": np.zeros(4)}, "expected (N, T, C) or (N, T)"),
        ({"windows": np.array([[[0.0]], [[np.nan]]])}, "window 1: 'windows' holds NaN or inf"),
        ({"windows": np.zeros((3, 4)), "labels": np.array([0, 2, 0])}, "window 1: label 2"),
        ({"windows": np.zeros((3, 4)), "labels": np.zeros(2)}, "'labels' has shape (2,)"),
        ({"windows": np.zeros((3, 4, 2)), "channel_names": np.array(["a"])}, "1 channel_names"),
    ],
)
def test_npz_bad_content(tmp_path: Path, arrays: dict[str, np.ndarray], expect: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError) as err:
        load_dataset(path, "npz")
    assert str(path) in str(err.value)
    assert expect in str(err.value)


def test_npz_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "fake.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset(path)


def test_npz_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, windows=np.zeros((100, 4, 1)))
    data = load_dataset(path)
    a, b = split_dataset(data, 0.2, seed=1), split_dataset(data, 0.2, seed=1)
    assert a.test.tolist() == b.test.tolist()
    assert len(a.test) == 20
    assert not set(a.train) & set(a.test)
    assert split_dataset(data, 0.2, seed=2).test.tolist() != a.test.tolist()


# -- the one reader's options, through training's loader ----------------------------------------


def test_repeated_and_backward_times_are_clamped_by_default(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("timestamp,a\n10,1\n11,2\n11,3\n9,4\n12,5\n13,6\n")
    data = load_dataset(path, "csv", window=2)
    assert data.windows[:, :, 0].tolist() == [[1, 2], [3, 4], [5, 6]]  # every row kept
    assert data.policy_touched == 2
    assert any("time policy 'clamp'" in note for note in data.notes)
    with pytest.raises(DataError, match="line 4: timestamp '11' is not later than line 3") as err:
        load_dataset(path, "csv", window=2, time_policy="error")
    assert "--time-policy clamp" in str(err.value)
    dropped = load_dataset(path, "csv", window=2, time_policy="drop")
    assert dropped.windows[:, :, 0].tolist() == [[1, 2], [5, 6]]


def test_rows_columns_and_label_like_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    rows = [f"{i},{i},{10 * i},{int(i == 7)},{int(i == 3)}" for i in range(12)]
    path.write_text("time,a,b,is_anomaly,changepoint\n" + "\n".join(rows) + "\n")
    data = load_dataset(path, "csv", window=2)
    assert data.channel_names == ["a", "b"], "label-like columns are never channels"
    part = load_dataset(path, "csv", window=2, rows=(4, 10), columns=["b"])
    assert part.channel_names == ["b"]
    assert part.windows[:, :, 0].tolist() == [[40, 50], [60, 70], [80, 90]]
    assert part.labels is not None and part.labels.tolist() == [False, True, False]
    assert part.end_row is not None and part.end_row.tolist() == [5, 7, 9]


def test_test_fraction_zero_trains_on_every_window(tmp_path: Path) -> None:
    data = load_dataset(_sensor_csv(tmp_path, 20), "csv", window=4)
    split = split_dataset(data, test_fraction=0.0)
    assert split.train.tolist() == list(range(5)) and len(split.test) == 0
    ecg = load_dataset(_ecg_file(tmp_path, _ecg_rows(10)), "ecg5000")
    assert len(split_dataset(ecg, 0.0).train) == 10
