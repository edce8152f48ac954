"""The entry point of :mod:`detector.datafile`: :func:`detect_format` tells the format of a
file and :func:`read_windows` reads any of them (csv, ecg5000, npz) as raw windows, through
the reader of that format. The file-format contract is the package docstring.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from detector.datafile.csv_series import read_series
from detector.datafile.ecg5000 import _read_ecg5000
from detector.datafile.npz import _read_npz
from detector.datafile.rows import RowRange, _is_number, _read_lines, sniff_delimiter
from detector.datafile.windowing import (
    DEFAULT_PERIOD_MS,
    FILE_FORMATS,
    FileFormat,
    TimePolicy,
    WindowSet,
    cut_windows,
)
from detector.errors import DataFileError


def detect_format(
    path: Path | str, delimiter: str | None = None
) -> Literal["csv", "ecg5000", "npz"]:
    """``npz`` by suffix; else ``ecg5000`` if the first non-blank line is all numbers; else
    ``csv``.

    Raises:
        DataFileError: the file cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return "npz"
    first = next(line for line in _read_lines(path) if line.strip())
    sep = delimiter or sniff_delimiter(first)
    cells = next(csv.reader([first], delimiter=sep))
    return "ecg5000" if all(_is_number(c.strip(), sep == ";") for c in cells) else "csv"


def read_windows(
    path: Path | str,
    *,
    fmt: FileFormat = "auto",
    window: int | None = None,
    stride: int | None = None,
    columns: Sequence[str] | None = None,
    label_column: str | None = None,
    time_column: str | None = None,
    source_column: str | None = None,
    rows: RowRange | None = None,
    time_policy: TimePolicy = "clamp",
    default_source: str | None = None,
    delimiter: str | None = None,
    period_ms: int = DEFAULT_PERIOD_MS,
) -> WindowSet:
    """Read ``path`` as raw windows (rules: the package docstring).

    Args:
        path: the data file.
        fmt: ``csv``, ``ecg5000``, ``npz`` or ``auto``.
        window: rows per window (csv; required there). ECG5000 and NPZ ignore it and
            ``stride``: each row or entry is one window.
        stride: rows between window starts (csv; default ``window``).
        columns: csv channel columns (default: every numeric non-special column).
        label_column: csv label column (1 = anomalous; default ``label``/``is_anomaly``/
            ``anomaly`` if present).
        time_column: csv time column (default: by name).
        source_column: csv column of source ids (windows are cut within each source).
        rows: ``(a, b)``: keep data rows ``a <= i < b`` (0-based; either end None).
        time_policy: ``clamp`` (default), ``drop`` or ``error``, for times that repeat or go
            back.
        default_source: the source of windows without a source column (the file's stem).
        delimiter: ``,``, ``;`` or a tab (default: sniffed).
        period_ms: row spacing of synthetic times (default 1000 ms).

    Raises:
        DataFileError: the file cannot be read or windowed, naming it (and the line).
    """
    path = Path(path)
    if fmt not in FILE_FORMATS:
        raise DataFileError(
            path, f"unknown format {fmt!r}; expected one of {', '.join(FILE_FORMATS)}"
        )
    if delimiter is not None and delimiter not in (",", ";", "\t"):
        raise DataFileError(path, f"the delimiter must be ',', ';' or a tab, got {delimiter!r}")
    if fmt == "auto":
        fmt = detect_format(path, delimiter)
    source = default_source or path.stem
    if fmt == "npz":
        return _read_npz(path, rows, source, period_ms, time_policy)
    if fmt == "ecg5000":
        return _read_ecg5000(path, rows, delimiter, source, period_ms, time_policy)
    if window is None:
        raise DataFileError(path, "a csv series needs a window length (--window N)")
    series = read_series(
        path,
        columns=columns,
        label_column=label_column,
        time_column=time_column,
        source_column=source_column,
        rows=rows,
        time_policy=time_policy,
        default_source=source,
        delimiter=delimiter,
        period_ms=period_ms,
    )
    return cut_windows(series, window, stride)
