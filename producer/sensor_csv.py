"""Generic timestamped sensor CSVs: parsing, labels, and sliding windows.

A header row, a timestamp column (ISO 8601, or epoch seconds or milliseconds), numeric
channel columns, optionally a label column (``0``/``normal``/``false``/empty = normal, any
other number = anomalous, any other text = anomalous with that text as the anomaly type).
Comma or semicolon separated (detected from the header). A column named ``label`` (any case)
is the label column unless another is named. :func:`sliding_windows` cuts windows of
``window`` rows every ``step`` rows; a window is anomalous if any of its rows is, and carries
its last row's timestamp.

Every problem (missing file, malformed line, window longer than the series) is a
:class:`~producer.errors.ProducerInputError` naming the file and the line.

Examples:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pump.csv"
    >>> _ = path.write_text("time;a;b\\n0;1;2\\n1;3;4\\n2;5;6\\n")
    >>> series = read_sensor_csv(path)
    >>> series.values.shape, series.channel_names
    ((3, 2), ('a', 'b'))
    >>> sliding_windows(series, window=2, step=1).values.shape
    (2, 2, 2)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from producer.errors import ProducerInputError
from producer.windows import NO_ANOMALY, LabeledWindows

__all__ = [
    "SensorSeries",
    "parse_number",
    "read_lines",
    "read_sensor_csv",
    "sliding_windows",
    "sniff_delimiter",
]

TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "ts")
LABEL_COLUMN = "label"
NORMAL_LABELS = {"", "0", "0.0", "normal", "false", "no", "none"}
MAX_EPOCH_SECONDS = 1e11  # larger numbers are epoch milliseconds


@dataclass(frozen=True, slots=True)
class SensorSeries:
    """A timestamped multichannel series read from a CSV."""

    time_ms: npt.NDArray[np.int64]  # (N,)
    values: npt.NDArray[np.float32]  # (N, C)
    labels: npt.NDArray[np.int8]  # (N,)
    label_types: list[str]  # (N,) "none" when normal
    channel_names: tuple[str, ...]


def sniff_delimiter(line: str) -> str:
    """``";"`` if the line has more semicolons than commas, else ``","``."""
    return ";" if line.count(";") > line.count(",") else ","


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (BOM dropped).

    Raises:
        ProducerInputError: missing, a directory, unreadable, or empty.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ProducerInputError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ProducerInputError(f"{path}: is a directory, not a CSV file") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProducerInputError(f"{path}: cannot read: {exc}") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ProducerInputError(f"{path}: the file is empty")
    return lines


def parse_number(text: str, path: Path, line_no: int, column: str) -> float:
    """A finite float, or an error naming the file, line and column."""
    try:
        value = float(text)
    except ValueError:
        raise ProducerInputError(
            f"{path}: line {line_no}, column {column}: {text.strip()!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise ProducerInputError(f"{path}: line {line_no}, column {column}: {text!r} is not finite")
    return value


def _parse_time(text: str, path: Path, line_no: int) -> int:
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ProducerInputError(f"{path}: line {line_no}: timestamp {text!r} is not finite")
        return int(number if abs(number) >= MAX_EPOCH_SECONDS else number * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ProducerInputError(
            f"{path}: line {line_no}: timestamp {text!r} is neither ISO 8601 nor epoch time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _parse_label(text: str) -> tuple[int, str]:
    token = text.strip().lower()
    if token in NORMAL_LABELS:
        return 0, NO_ANOMALY
    try:
        number = float(token)
    except ValueError:
        return 1, token
    return (0, NO_ANOMALY) if number == 0 else (1, "labeled")


def _pick_column(header: list[str], name: str, path: Path, role: str) -> int:
    lowered = [h.strip().lower() for h in header]
    if name.strip().lower() not in lowered:
        raise ProducerInputError(
            f"{path}: no {role} column {name!r}; the columns are {', '.join(header)}"
        )
    return lowered.index(name.strip().lower())


def read_sensor_csv(
    path: Path,
    *,
    time_column: str | None = None,
    label_column: str | None = None,
    columns: Sequence[str] | None = None,
    delimiter: str | None = None,
) -> SensorSeries:
    """Read a timestamped multichannel CSV with a header row.

    Args:
        path: the file.
        time_column: the timestamp column; the first of ``timestamp``, ``time``, ``datetime``,
            ``date``, ``ts`` (any case), else the first column, when None.
        label_column: the ground-truth column; a column named ``label`` (any case) if there is
            one, else none, when None.
        columns: the channel columns; every other column when None.
        delimiter: ``","`` or ``";"``; detected from the header when None.

    Raises:
        ProducerInputError: the file is missing, unreadable or malformed.
    """
    lines = read_lines(path)
    sep = delimiter or sniff_delimiter(lines[0])
    reader = csv.reader(lines, delimiter=sep)
    header = [h.strip() for h in next(reader)]
    if len(header) < 2:
        raise ProducerInputError(
            f"{path}: the header has {len(header)} column; need a timestamp and at least one "
            f"channel (is the separator {sep!r} right?)"
        )
    if time_column is not None:
        t_idx = _pick_column(header, time_column, path, "timestamp")
    else:
        lowered = [h.lower() for h in header]
        t_idx = next((lowered.index(c) for c in TIME_COLUMNS if c in lowered), 0)
    if label_column is not None:
        l_idx: int | None = _pick_column(header, label_column, path, "label")
    else:
        lowered = [h.lower() for h in header]
        l_idx = lowered.index(LABEL_COLUMN) if LABEL_COLUMN in lowered else None
        if l_idx == t_idx:
            l_idx = None
    if columns:
        c_idx = [_pick_column(header, c, path, "channel") for c in columns]
    else:
        c_idx = [i for i in range(len(header)) if i not in (t_idx, l_idx)]
    if not c_idx:
        raise ProducerInputError(f"{path}: no channel columns besides the timestamp and label")
    times: list[int] = []
    rows: list[list[float]] = []
    labels: list[int] = []
    kinds: list[str] = []
    for line_no, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise ProducerInputError(
                f"{path}: line {line_no} has {len(cells)} fields, the header has {len(header)}"
            )
        stamp = _parse_time(cells[t_idx], path, line_no)
        if times and stamp < times[-1]:
            raise ProducerInputError(
                f"{path}: line {line_no}: timestamp {cells[t_idx].strip()!r} goes back in time"
            )
        times.append(stamp)
        rows.append([parse_number(cells[i], path, line_no, header[i]) for i in c_idx])
        label, kind = (0, NO_ANOMALY) if l_idx is None else _parse_label(cells[l_idx])
        labels.append(label)
        kinds.append(kind)
    if not rows:
        raise ProducerInputError(f"{path}: no data rows after the header")
    return SensorSeries(
        time_ms=np.asarray(times, dtype=np.int64),
        values=np.asarray(rows, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int8),
        label_types=kinds,
        channel_names=tuple(header[i] for i in c_idx),
    )


def sliding_windows(series: SensorSeries, window: int, step: int | None = None) -> LabeledWindows:
    """Cut a series into windows of ``window`` rows, one every ``step`` rows (``window``).

    Raises:
        ProducerInputError: the window is longer than the series, or a size is below 1.
    """
    step = window if step is None else step
    if window < 1 or step < 1:
        raise ProducerInputError(f"window and step must be >= 1, got {window} and {step}")
    n_rows = len(series.time_ms)
    if window > n_rows:
        raise ProducerInputError(
            f"window of {window} rows is longer than the series ({n_rows} rows)"
        )
    starts = np.arange(0, n_rows - window + 1, step)
    view = np.lib.stride_tricks.sliding_window_view(series.values, window, axis=0)
    values = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
    label_view = np.lib.stride_tricks.sliding_window_view(series.labels, window)[starts]
    labels = label_view.max(axis=1).astype(np.int8)
    types: list[str] = []
    for start, label in zip(starts.tolist(), labels.tolist(), strict=True):
        if not label:
            types.append(NO_ANOMALY)
            continue
        chunk = series.label_types[start : start + window]
        types.append(next(t for t in chunk if t != NO_ANOMALY))
    return LabeledWindows(
        values=values,
        labels=labels,
        anomaly_types=types,
        channel_names=series.channel_names,
        time_ms=series.time_ms[starts + window - 1],
    )
