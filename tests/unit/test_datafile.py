"""detector.datafile: the one reader of CSV series, the ECG5000 layout and NPZ windows.

The last tests check what the module is for: training's loader and producer replay read the
same file (repeated and backward timestamps included) to the same windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.datafile import (
    DataFileError,
    cut_windows,
    detect_format,
    parse_row_range,
    read_series,
    read_windows,
    sniff_delimiter,
)
from detector.errors import DetectorError


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# -- delimiters, columns, labels, times ---------------------------------------------------------


def test_sniffing_picks_the_header_s_delimiter() -> None:
    assert sniff_delimiter("time,a,b") == ","
    assert sniff_delimiter("time;a;b") == ";"
    assert sniff_delimiter("time\ta\tb") == "\t"
    assert sniff_delimiter("value") == ","


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_the_same_series_in_any_delimiter(tmp_path: Path, sep: str) -> None:
    lines = [sep.join(["timestamp", "a", "b", "label"])]
    for i in range(6):
        a = f"{i}.5".replace(".", ",") if sep == ";" else f"{i}.5"  # ';' allows decimal commas
        lines.append(sep.join([str(1_700_000_000 + i), a, str(-i), str(int(i == 4))]))
    ws = read_windows(_write(tmp_path / "s.csv", lines), window=3)
    assert ws.fmt == "csv" and ws.channel_names == ("a", "b")
    assert ws.values[:, :, 0].tolist() == [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]]
    assert ws.labels is not None and ws.labels.tolist() == [False, True]
    assert ws.event_time_ms.tolist() == [1_700_000_002_000, 1_700_000_005_000]
    assert ws.end_row.tolist() == [2, 5] and ws.first_row.tolist() == [0, 3]


def test_columns_pick_and_order_channels_and_label_like_columns_are_never_channels(
    tmp_path: Path,
) -> None:
    lines = ["time,a,b,changepoint,anomaly,status,c"]
    lines += [f"{i},{i},{10 * i},{int(i == 2)},0,ok,{100 * i}" for i in range(4)]
    path = _write(tmp_path / "s.csv", lines)
    ws = read_windows(path, window=2)
    assert ws.channel_names == ("a", "b", "c"), "changepoint/anomaly/status are not channels"
    assert ws.label_column == "anomaly" and ws.skipped_columns == ("status",)
    chosen = read_windows(path, window=2, columns=["c", "a", "changepoint"])
    assert chosen.channel_names == ("c", "a", "changepoint")
    assert chosen.values[0].tolist() == [[0, 0, 0], [100, 1, 0]]
    with pytest.raises(DataFileError, match="no column 'd'"):
        read_windows(path, window=2, columns=["d"])
    with pytest.raises(DataFileError, match="is the time or source column"):
        read_windows(path, window=2, columns=["time"])


def test_label_column_default_explicit_and_text_types(tmp_path: Path) -> None:
    lines = ["timestamp,x,is_anomaly,state"]
    states = ["", "normal", "valve_stuck", "0", "1", "true"]
    lines += [f"{i},{i},{int(i >= 4)},{s}" for i, s in enumerate(states)]
    path = _write(tmp_path / "s.csv", lines)
    default = read_series(path)
    assert default.label_column == "is_anomaly" and default.channel_names == ("x",)
    assert default.labels is not None and default.labels.tolist() == [0, 0, 0, 0, 1, 1]
    state = read_series(path, label_column="state")
    assert state.labels is not None and state.labels.tolist() == [0, 0, 1, 0, 1, 1]
    assert state.anomaly_types == ("none", "none", "valve_stuck", "none", "labeled", "labeled")
    ws = read_windows(path, label_column="state", window=3)
    assert ws.anomaly_types == ("valve_stuck", "labeled")
    assert ws.channel_names == ("x",), "is_anomaly stays out of the channels"


def test_times_iso_and_epoch_units(tmp_path: Path) -> None:
    def times(values: list[str]) -> list[int]:
        path = _write(tmp_path / "t.csv", ["time,a", *(f"{v},1" for v in values)])
        return [int(t) for t in read_series(path).time_ms]

    assert times(["0", "1", "2.5"]) == [0, 1000, 2500], "small numbers are seconds"
    assert times(["1700000000", "1700000001"]) == [1_700_000_000_000, 1_700_000_001_000]
    assert times(["1700000000000", "1700000000500"]) == [1_700_000_000_000, 1_700_000_000_500]
    assert times(["1700000000000000", "1700000000001000"]) == [1_700_000_000_000, 1_700_000_000_001]
    assert times(["2024-05-01T00:00:00Z", "2024-05-01 00:00:01.0155"]) == [
        1_714_521_600_000,
        1_714_521_601_016,
    ], "a time without a zone is UTC; rounded to the millisecond"
    assert times(["2024-05-01T02:00:00+02:00"]) == [1_714_521_600_000]


def test_without_a_time_column_times_are_synthetic(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", ["value", *map(str, range(6))])
    ws = read_windows(path, window=2, rows=(1, None))
    assert ws.synthetic_time and ws.time_column is None
    assert ws.end_row.tolist() == [2, 4]
    assert ws.event_time_ms.tolist() == [2000, 4000], "row * 1000 ms"
    assert any("no time column" in note for note in ws.notes())
    custom = read_windows(path, window=2, period_ms=10)
    assert custom.event_time_ms.tolist() == [10, 30, 50]


def test_a_first_column_of_dates_is_the_time_column_whatever_its_name(tmp_path: Path) -> None:
    lines = ["when,a", "2024-05-01T00:00:00,1", "2024-05-01T00:00:02,2"]
    series = read_series(_write(tmp_path / "s.csv", lines))
    assert series.time_column == "when" and series.channel_names == ("a",)


# -- row ranges ------------------------------------------------------------------------------


def test_row_ranges_keep_file_row_numbers(tmp_path: Path) -> None:
    lines = ["time,a", *(f"{i},{i}" for i in range(10))]
    lines.insert(4, "")  # a blank line is not a row
    path = _write(tmp_path / "s.csv", lines)
    assert read_windows(path, window=2, rows=(4, 8)).values[:, :, 0].tolist() == [[4, 5], [6, 7]]
    assert read_windows(path, window=2, rows=(4, 8)).end_row.tolist() == [5, 7]
    assert read_windows(path, window=3, rows=(None, 3)).end_row.tolist() == [2]
    assert read_windows(path, window=5, rows=(5, None)).end_row.tolist() == [9]
    with pytest.raises(DataFileError, match="select no row; the file has 10 data rows"):
        read_windows(path, window=2, rows=(10, None))


def test_only_the_selected_rows_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", ["time,a", "0,1", "1,oops", "2,3", "3,4"])
    with pytest.raises(DataFileError, match="line 3: column a: 'oops' is not a number"):
        read_windows(path, window=2)
    assert read_windows(path, window=2, rows=(2, None)).values[:, :, 0].tolist() == [[3, 4]]


def test_parse_row_range() -> None:
    assert parse_row_range("400:") == (400, None)
    assert parse_row_range(":1000") == (None, 1000)
    assert parse_row_range("10:20") == (10, 20)
    assert parse_row_range(":") == (None, None)
    for bad in ("10", "a:b", "-1:5", "20:10", "5:5"):
        with pytest.raises(ValueError, match="rows"):
            parse_row_range(bad)


def test_rows_apply_to_ecg5000_and_npz(tmp_path: Path) -> None:
    ecg = _write(tmp_path / "e.csv", [f"{i},{i},{i},{int(i != 2)}" for i in range(5)])
    ws = read_windows(ecg, rows=(1, 4))
    assert ws.fmt == "ecg5000" and ws.end_row.tolist() == [1, 2, 3]
    assert ws.labels is not None and ws.labels.tolist() == [False, True, False]
    npz = tmp_path / "w.npz"
    np.savez(npz, windows=np.arange(20, dtype=np.float32).reshape(5, 4), labels=[0, 1, 0, 0, 1])
    part = read_windows(npz, rows=(3, None))
    assert part.values[:, 0, 0].tolist() == [12, 16] and part.end_row.tolist() == [3, 4]
    assert part.labels is not None and part.labels.tolist() == [False, True]


# -- sources ------------------------------------------------------------------------------------


def test_windows_are_cut_within_each_source(tmp_path: Path) -> None:
    lines = ["time,unit,v"]
    for i in range(6):  # two units interleaved; unit b's clock is behind unit a's
        lines += [f"{100 + i},a,{i}", f"{50 + i},b,{10 + i}"]
    path = _write(tmp_path / "s.csv", lines)
    ws = read_windows(path, window=3, source_column="unit", time_policy="error")
    assert ws.source_ids == ("a", "b", "a", "b")
    assert ws.values[:, :, 0].tolist() == [[0, 1, 2], [10, 11, 12], [3, 4, 5], [13, 14, 15]]
    assert ws.end_row.tolist() == [4, 5, 10, 11], "file order of the last row"
    assert ws.event_time_ms.tolist() == [102_000, 52_000, 105_000, 55_000]
    assert ws.policy_touched == 0, "times only need to increase within a source"
    with pytest.raises(DataFileError, match="line 3: time '50' is not later than line 2"):
        read_windows(path, window=3, time_policy="error")


# -- the time policy ------------------------------------------------------------------------------

REPEATS = ["timestamp,a,label", "10,0,0", "11,1,0", "11,2,0", "9,3,1", "12,4,0", "13,5,0"]


def test_clamp_keeps_every_row_with_strictly_increasing_times(tmp_path: Path) -> None:
    series = read_series(_write(tmp_path / "r.csv", REPEATS))
    assert series.time_ms.tolist() == [10_000, 11_000, 11_001, 11_002, 12_000, 13_000]
    assert series.policy_touched == 2 and series.rows.tolist() == list(range(6))


def test_drop_drops_the_rows_that_repeat_or_go_back(tmp_path: Path) -> None:
    series = read_series(_write(tmp_path / "r.csv", REPEATS), time_policy="drop")
    assert series.values[:, 0].tolist() == [0, 1, 4, 5]
    assert series.rows.tolist() == [0, 1, 4, 5] and series.policy_touched == 2
    ws = read_windows(tmp_path / "r.csv", window=2, time_policy="drop")
    assert ws.end_row.tolist() == [1, 5]
    assert ws.policy_note() is not None and "dropped" in str(ws.policy_note())


def test_error_names_the_file_the_line_and_the_flag(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", REPEATS)
    with pytest.raises(DataFileError) as info:
        read_windows(path, window=2, time_policy="error")
    message = str(info.value)
    assert message.startswith(f"{path}: line 4: timestamp '11' is not later than line 3's '11'")
    assert "--time-policy clamp" in message and "--time-policy drop" in message
    assert info.value.line == 4 and isinstance(info.value, DetectorError)


# -- bad files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["time,a,b", "1,2,3", "2,,4"], "line 3: column a: an empty cell (a missing value)"),
        (["time,a,b", "1,2,3", "2,x,4"], "line 3: column a: 'x' is not a number"),
        (["time,a,b", "1,2,inf"], "line 2: column b: 'inf' is not finite"),
        (["time,a,b", "1,2,3", "2,3"], "line 3: 2 columns, the header has 3"),
        (["time,a,b", "soon,2,3"], "line 2: time: 'soon' is not an ISO 8601 time or a number"),
        (["time,a,b", "1,2,3", "later,2,3"], "line 3: time: 'later' is not a number like"),
        (["time,a,a", "1,2,3"], "line 1: the header repeats a column name"),
        (["1,2,3", "1,2,3"], "line 1: the first line is numbers, not a header"),
        (["time,a,label", "1,2,nan"], "line 2: label: 'nan' is not a label"),
        (["time,u,a", "1,,3"], "line 2: u: an empty source id"),
    ],
)
def test_bad_csv_names_the_file_and_the_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = _write(tmp_path / "bad.csv", lines)
    source = "u" if lines[0] == "time,u,a" else None
    with pytest.raises(DataFileError) as info:
        read_windows(path, fmt="csv", window=1, source_column=source)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_empty_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_windows(tmp_path / "absent.csv")
    with pytest.raises(DataFileError, match="is a directory"):
        read_windows(tmp_path, fmt="csv", window=2)
    with pytest.raises(DataFileError, match="the file is empty"):
        read_windows(_write(tmp_path / "e.csv", ["", " "]))
    with pytest.raises(DataFileError, match="unknown format 'xls'"):
        read_windows(tmp_path / "e.csv", fmt="xls")  # type: ignore[arg-type]
    with pytest.raises(DataFileError, match="needs a window length"):
        read_windows(_write(tmp_path / "s.csv", ["time,a", "1,2"]))
    with pytest.raises(DataFileError, match="has 1 rows, shorter than one window of 2"):
        read_windows(tmp_path / "s.csv", window=2)


# -- ECG5000 and NPZ ------------------------------------------------------------------------------


def test_ecg5000_layout_one_is_normal_and_classes_name_types(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", [f"0.1,0.2,0.3,{c}" for c in (1, 0, 2, 3, 4, 5, 1)])
    assert detect_format(path) == "ecg5000"
    ws = read_windows(path)
    assert ws.values.shape == (7, 3, 1) and ws.channel_names == ("ecg",)
    assert ws.labels is not None and ws.labels.tolist() == [0, 1, 1, 1, 1, 1, 0]
    assert ws.anomaly_types == (
        "none", "abnormal", "r_on_t_pvc", "pvc", "sp_eb", "unclassified", "none",
    )  # fmt: skip
    assert ws.event_time_ms.tolist() == [i * 1000 for i in range(7)] and ws.synthetic_time
    with pytest.raises(DataFileError, match=r"line 2: label \(last column\) 1.5"):
        read_windows(_write(tmp_path / "b.csv", ["0,0,1", "0,0,1.5"]))


def test_npz_keeps_its_times_sources_and_types(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(
        path,
        windows=np.zeros((3, 4, 2), np.float32),
        labels=np.array([0, 1, 0], np.int8),
        channel_names=np.array(["p", "q"]),
        anomaly_types=np.array(["none", "spike", "none"]),
        source_ids=np.array(["s-0", "s-1", "s-0"]),
        event_time_ms=np.array([5, 6, 7], np.int64),
    )
    ws = read_windows(path)
    assert (ws.fmt, ws.channel_names, ws.synthetic_time) == ("npz", ("p", "q"), False)
    assert ws.source_ids == ("s-0", "s-1", "s-0") and ws.event_time_ms.tolist() == [5, 6, 7]
    assert ws.anomaly_types == ("none", "spike", "none")
    with pytest.raises(DataFileError, match="window 1: 'windows' holds NaN"):
        np.savez(path, windows=np.array([[[0.0]], [[np.nan]]]))
        read_windows(path)


def test_cut_windows_strides_over_a_series(tmp_path: Path) -> None:
    series = read_series(_write(tmp_path / "s.csv", ["t,v", *(f"{i},{i}" for i in range(10))]))
    assert cut_windows(series, 4, 3).values[:, :, 1].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [
        6, 7, 8, 9]]  # fmt: skip
    assert series.channel_names == ("t", "v"), "'t' is not a time name: a channel"


# -- one file, one set of rules: training and replay agree ----------------------------------------


def _messy_file(tmp_path: Path) -> Path:
    """Repeated and backward timestamps, a label-like column, a label."""
    lines = ["datetime;flow;temp;changepoint;label"]
    second = 0
    for i in range(60):
        second += 0 if i % 7 == 3 else (-2 if i % 11 == 5 else 1)  # repeats and steps back
        stamp = f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}"
        lines.append(f"{stamp};{i},5;{20 + i % 3};{int(i == 30)};{int(i in (40, 41))}")
    return _write(tmp_path / "messy.csv", lines)


def test_training_and_replay_read_a_messy_file_to_the_same_windows(tmp_path: Path) -> None:
    from producer.replay import read_windows as replay_windows
    from training.data import load_dataset

    path = _messy_file(tmp_path)
    reference = read_windows(path, window=8, stride=4)
    assert reference.policy_touched > 0, "the file repeats and goes back in time"
    trained = load_dataset(path, "auto", window=8, stride=4)
    replayed = replay_windows(path, "auto", window=8, step=4)
    np.testing.assert_array_equal(trained.windows, reference.values)
    np.testing.assert_array_equal(replayed.values, reference.values)
    assert trained.channel_names == list(reference.channel_names) == ["flow", "temp"]
    assert replayed.channel_names == reference.channel_names
    assert trained.labels is not None and reference.labels is not None
    assert trained.labels.tolist() == reference.labels.tolist()
    assert replayed.labels.tolist() == reference.labels.astype(int).tolist()
    assert replayed.time_ms is not None
    assert replayed.time_ms.tolist() == reference.event_time_ms.tolist()
    assert np.all(np.diff(reference.event_time_ms) > 0), "event times strictly increase"
    assert trained.policy_touched == reference.policy_touched


def test_training_and_replay_refuse_a_messy_file_alike_under_the_error_policy(
    tmp_path: Path,
) -> None:
    from producer.errors import ProducerInputError
    from producer.replay import read_windows as replay_windows
    from training.data import load_dataset
    from training.errors import DataError

    path = _messy_file(tmp_path)
    with pytest.raises(DataFileError) as one:
        read_windows(path, window=8, time_policy="error")
    with pytest.raises(DataError) as trained:
        load_dataset(path, window=8, time_policy="error")
    with pytest.raises(ProducerInputError) as replayed:
        replay_windows(path, window=8, time_policy="error")
    assert str(trained.value) == str(replayed.value) == str(one.value)
    assert f"line {one.value.line}:" in str(one.value) and "--time-policy" in str(one.value)
