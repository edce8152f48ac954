"""One reader for every data file: CSV series, the ECG5000 layout, NPZ windows; and windowing.

Producer replay, training and the backtest read files through this module only, so the same
file trains, replays and backtests to the same windows under one set of rules. Pure: numpy
and the standard library (no pandas, no clock, no environment).

Formats (``fmt="auto"``: ``npz`` by suffix; else ``ecg5000`` when the first non-blank line is
all numbers; else ``csv``):

``csv``: a timestamped multichannel series with a header row, cut into windows of ``window``
rows every ``stride`` rows (default: ``window``, non-overlapping).

* Delimiter: ``,``, ``;`` or a tab, whichever the header line holds most of (a tie is ``,``).
  With ``;``, decimal commas (``21,5``) are read as decimal points. Fields may be quoted.
* Time column: ``time_column``; else the first column named ``timestamp``, ``time``,
  ``datetime``, ``date``, ``ts`` or ``epoch`` (any case); else the first column if its first
  value is a date rather than a number; else none (synthetic times, below). Times are ISO
  8601 (a time without a zone is UTC) or numbers of epoch time whose unit follows the
  largest magnitude in the column: below 1e11 seconds, below 1e14 milliseconds, below 1e17
  microseconds, else nanoseconds. So a column of row numbers (0, 1, 2, ...) is read as
  seconds. Every time is rounded to the millisecond.
* Label column: ``label_column``; else the first of ``label``, ``is_anomaly``, ``anomaly``
  present (any case). **1 = anomalous, 0 = normal.** Also normal: an empty cell, ``normal``,
  ``false``, ``no``, ``none``, ``ok``; also anomalous: any other number, ``true``, ``yes``;
  any other text is anomalous and names the anomaly type (``valve_stuck``).
* Label-like columns (``label``, ``is_anomaly``, ``anomaly``, ``changepoint``, any case) are
  never channels unless ``columns`` names them.
* Source column (optional, ``source_column``): several sources interleaved in one file;
  windows are cut within each source, and times must increase within each source. Without it
  every row belongs to ``default_source`` (default: the file name without its suffix).
* Channels: ``columns`` in that order; else every other column whose first non-empty value
  (in the selected rows) is a number. Text columns, and columns empty in every selected row,
  are skipped (``skipped_columns``).
* A missing (empty), non-numeric, NaN or infinite channel value is a :class:`DataFileError`
  naming the file and the line.
* Times that repeat or go back (within a source) follow ``time_policy``:

  - ``"clamp"`` (default): the row is kept and its time becomes the previous row's time
    + 1 ms, so event times increase strictly and every row is windowed;
  - ``"drop"``: the row is dropped (windows then span the gap);
  - ``"error"``: refused with a :class:`DataFileError` naming the line and the flag
    (``--time-policy``) that changes the policy.

  ``policy_touched`` counts the rows the policy moved or dropped (for a warning line).

``ecg5000``: the TensorFlow tutorial's layout: no header, one window (beat) per row, the
samples then the label in the last column. **In this layout 1 = normal**; 0 (the tutorial's
file) or any other class number (the original 5-class file: 2 R-on-T PVC, 3 PVC, 4 SP/EB,
5 unclassified) is anomalous, and names the anomaly type.

``npz``: windows already cut, as ``numpy.savez`` writes them (producer.filesink's layout):
``windows`` (N, T, C) or (N, T) (alias ``x``), optional ``labels`` (N,) 1 = anomalous
(alias ``y``), ``channel_names`` (C,), ``anomaly_types`` (N,), ``source_ids`` (N,),
``event_time_ms`` (N,).

Rows: ``rows=(a, b)`` keeps the data rows ``a <= i < b`` (0-based, either end optional). A data
row is a non-blank line after the header (csv), a non-blank line (ecg5000) or an entry (npz);
blank lines are skipped and not counted. Only the selected rows are checked, and ``end_row``
stays the row's index in the whole file.

Synthetic times: without a time column (ecg5000, npz without ``event_time_ms``, a csv without
one), data row ``i`` is at ``i * period_ms`` ms after the Unix epoch (``period_ms`` = 1000 by
default), so ``event_time_ms == end_row * period_ms``.

Examples:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pump.csv"
    >>> _ = path.write_text("time;a;b;label\\n0;1;2;0\\n1;3;4;1\\n1;5;6;0\\n3;7;8;0\\n")
    >>> ws = read_windows(path, window=2)
    >>> ws.values.shape, ws.labels.tolist(), ws.end_row.tolist(), ws.policy_touched
    ((2, 2, 2), [True, False], [1, 3], 1)
    >>> ws.event_time_ms.tolist()  # row 2 repeated row 1's time: clamped to 1001 ms
    [1000, 3000]
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from detector.errors import DataFileError

__all__ = [
    "DEFAULT_PERIOD_MS",
    "ECG5000_CLASSES",
    "FILE_FORMATS",
    "LABEL_LIKE_COLUMNS",
    "NO_ANOMALY",
    "TIME_COLUMNS",
    "TIME_POLICIES",
    "DataFileError",
    "FileFormat",
    "Series",
    "TimePolicy",
    "WindowSet",
    "cut_windows",
    "detect_format",
    "parse_row_range",
    "read_series",
    "read_windows",
    "sniff_delimiter",
]

TimePolicy = Literal["clamp", "error", "drop"]
FileFormat = Literal["auto", "csv", "ecg5000", "npz"]
TIME_POLICIES: tuple[str, ...] = get_args(TimePolicy)
FILE_FORMATS: tuple[str, ...] = get_args(FileFormat)
DEFAULT_PERIOD_MS = 1000
NO_ANOMALY = "none"
TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "ts", "epoch")
LABEL_COLUMNS = ("label", "is_anomaly", "anomaly")  # default label column, first present
LABEL_LIKE_COLUMNS = (*LABEL_COLUMNS, "changepoint")
ECG5000_CLASSES = {0: "abnormal", 2: "r_on_t_pvc", 3: "pvc", 4: "sp_eb", 5: "unclassified"}
NORMAL_WORDS = frozenset({"", "0", "normal", "false", "no", "none", "ok"})
ANOMALOUS_WORDS = frozenset({"true", "yes"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Largest |epoch number| read in each unit: 1e11 s is the year 5138, 1e11 ms is 1973.
_EPOCH_UNITS_MS = ((1e11, 1000.0), (1e14, 1.0), (1e17, 1e-3), (math.inf, 1e-6))
_POLICY_HINT = (
    "--time-policy clamp (the default) moves such a row to the previous time + 1 ms, "
    "--time-policy drop drops it"
)

RowRange = tuple[int | None, int | None]
_Rows = list[tuple[int, int, str]]  # (data row, 1-based line, text) of the selected rows


@dataclass(frozen=True, slots=True)
class Series:
    """A csv series as a per-row table (after the row range and the time policy).

    Attributes:
        values: (N, C) float64 channel values.
        labels: (N,) True = anomalous; None when the file has no label column.
        anomaly_types: (N,) per row, ``"none"`` when normal; None without labels.
        time_ms: (N,) event times (ms), strictly increasing within each source.
        rows: (N,) 0-based data row in the file.
        lines: (N,) 1-based line in the file.
        source_ids: (N,) source of each row.
        channel_names: the C channel names.
        path: the file.
        time_column: the time column used; None: synthetic times.
        label_column: the label column used, if any.
        source_column: the source column used, if any.
        skipped_columns: text columns that were not taken as channels.
        time_policy: the policy applied.
        policy_touched: rows whose time the policy moved, or that it dropped.
    """

    values: npt.NDArray[np.float64]
    labels: npt.NDArray[np.bool_] | None
    anomaly_types: tuple[str, ...] | None
    time_ms: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    lines: npt.NDArray[np.int64]
    source_ids: tuple[str, ...]
    channel_names: tuple[str, ...]
    path: Path
    time_column: str | None
    label_column: str | None
    source_column: str | None
    skipped_columns: tuple[str, ...]
    time_policy: TimePolicy
    policy_touched: int

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True, slots=True)
class WindowSet:
    """Windows read from a file, raw (un-normalised), in file order of their last row.

    Attributes:
        values: (N, T, C) float32.
        labels: (N,) True = anomalous (a window is anomalous if any of its rows is); None
            when the file has no labels.
        end_row: (N,) 0-based data row of the window's last row in the file.
        event_time_ms: (N,) event time of the window's last row (ms; synthetic when the file
            has no times, see the module docstring).
        source_ids: (N,) source of each window.
        channel_names: the C channel names.
        path: the file.
        fmt: ``csv``, ``ecg5000`` or ``npz``.
        policy_touched: rows whose time the time policy moved, or that it dropped.
        start_row: (N,) data row of the window's first row; None when a window is one row
            of the file (ecg5000, npz).
        anomaly_types: (N,) ``"none"`` when normal, else the type (the first anomalous
            row's, ECG5000 classes, NPZ ``anomaly_types``); None without labels.
        window_stride: rows between window starts (csv), 0 otherwise.
        synthetic_time: True when event times are synthetic (the file has no times).
        time_policy: the policy applied.
        time_column: the csv time column used, if any.
        label_column: the csv label column used, if any.
        source_column: the csv source column used, if any.
        skipped_columns: csv text columns that were not taken as channels.
    """

    values: npt.NDArray[np.float32]
    labels: npt.NDArray[np.bool_] | None
    end_row: npt.NDArray[np.int64]
    event_time_ms: npt.NDArray[np.int64]
    source_ids: tuple[str, ...]
    channel_names: tuple[str, ...]
    path: Path
    fmt: str
    policy_touched: int
    start_row: npt.NDArray[np.int64] | None = None
    anomaly_types: tuple[str, ...] | None = None
    window_stride: int = 0
    synthetic_time: bool = False
    time_policy: TimePolicy = "clamp"
    time_column: str | None = None
    label_column: str | None = None
    source_column: str | None = None
    skipped_columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def window_size(self) -> int:
        """T, rows per window."""
        return int(self.values.shape[1])

    @property
    def n_channels(self) -> int:
        """C, channels per row."""
        return int(self.values.shape[2])

    @property
    def first_row(self) -> npt.NDArray[np.int64]:
        """(N,) data row of each window's first row (``end_row`` for one-row windows)."""
        return self.end_row if self.start_row is None else self.start_row

    def anomalous(self) -> npt.NDArray[np.bool_]:
        """(N,) True where labelled anomalous (all False without labels)."""
        if self.labels is None:
            return np.zeros(len(self), dtype=bool)
        return self.labels

    def notes(self) -> list[str]:
        """Lines worth a warning: the time policy changed rows, text columns were skipped, a
        csv without a time column got synthetic times."""
        out = [note] if (note := self.policy_note()) is not None else []
        if self.skipped_columns:
            out.append(
                f"{self.path}: text columns not used as channels: {', '.join(self.skipped_columns)}"
            )
        if self.fmt == "csv" and self.synthetic_time:
            out.append(
                f"{self.path}: no time column (none named {', '.join(TIME_COLUMNS)}; "
                "see --time-column): event times are synthetic, one row per second"
            )
        return out

    def policy_note(self) -> str | None:
        """One line for a warning when the time policy changed rows, else None."""
        if not self.policy_touched:
            return None
        did = "dropped" if self.time_policy == "drop" else "moved to the previous time + 1 ms"
        return (
            f"{self.path}: {self.policy_touched} rows had a time not later than the row "
            f"before (time policy {self.time_policy!r}: {did}; see --time-policy)"
        )


# -- helpers shared by the formats -----------------------------------------------------------


def sniff_delimiter(line: str) -> str:
    """``,``, ``;`` or a tab: whichever ``line`` holds most of (a tie is ``,``)."""
    counts = {sep: line.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=lambda sep: counts[sep])  # max keeps the first of equals


def parse_row_range(text: str) -> RowRange:
    """Parse ``"A:B"`` (0-based data rows, B excluded; ``"400:"``, ``":1000"``) as a range.

    Raises:
        ValueError: not of that form, negative, or B <= A.
    """
    start, sep, stop = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError
        a = int(start) if start.strip() else None
        b = int(stop) if stop.strip() else None
    except ValueError:
        raise ValueError(
            f"rows {text!r}: expected A:B (0-based data rows, B excluded, either side "
            "optional), e.g. 400: or 0:1000"
        ) from None
    return _check_range((a, b), text)


def _check_range(rows: RowRange, shown: object) -> RowRange:
    a, b = rows
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise ValueError(f"rows {shown}: row numbers are >= 0")
    if a is not None and b is not None and b <= a:
        raise ValueError(f"rows {shown}: the end ({b}) must be after the start ({a})")
    return rows


def _read_lines(path: Path) -> list[str]:
    if path.is_dir():
        raise DataFileError(path, "is a directory, not a data file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataFileError(path, "the file is empty")
    return lines


def _select(path: Path, numbered: _Rows, rows: RowRange | None, what: str) -> _Rows:
    """The data rows inside ``rows`` (an error when none is)."""
    if not numbered:
        raise DataFileError(path, f"no {what} rows")
    if rows is None:
        return numbered
    try:
        a, b = _check_range(rows, f"{rows[0]}:{rows[1]}")
    except ValueError as exc:
        raise DataFileError(path, str(exc)) from None
    chosen = numbered[a or 0 : b]
    if not chosen:
        raise DataFileError(
            path,
            f"rows {'' if a is None else a}:{'' if b is None else b} select no row; the file "
            f"has {len(numbered)} {what} rows (0 to {len(numbered) - 1})",
        )
    return chosen


def _numbers(
    path: Path,
    cells: Sequence[str],
    lines: Sequence[int],
    column: str,
    decimal_comma: bool,
) -> npt.NDArray[np.float64]:
    """One column of finite numbers; an error names the first bad cell's line."""
    texts = [c.replace(",", ".") for c in cells] if decimal_comma else list(cells)
    try:
        values = np.asarray(texts, dtype=np.float64)
    except ValueError:
        for text, line in zip(texts, lines, strict=True):
            try:
                float(text)
            except ValueError:
                what = "an empty cell (a missing value)" if not text else repr(text)
                raise DataFileError(
                    path, f"column {column}: {what} is not a number", line
                ) from None
        raise  # pragma: no cover - numpy and float() disagree
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(path, f"column {column}: {texts[i]!r} is not finite", lines[i])
    return values


def _is_number(text: str, decimal_comma: bool) -> bool:
    try:
        float(text.replace(",", ".") if decimal_comma else text)
    except ValueError:
        return False
    return True


# -- csv ---------------------------------------------------------------------------------------


def _find(path: Path, header: list[str], name: str, role: str, line: int) -> int:
    if name in header:
        return header.index(name)
    lowered = [h.lower() for h in header]
    if name.strip().lower() in lowered:
        return lowered.index(name.strip().lower())
    raise DataFileError(path, f"no {role}column {name!r} (columns: {', '.join(header)})", line)


def _epoch_ms(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    biggest = float(np.max(np.abs(values))) if values.size else 0.0
    factor = next(f for limit, f in _EPOCH_UNITS_MS if biggest < limit)
    return np.round(values * factor).astype(np.int64)


def _iso_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return (micros + 500) // 1000


def _times(
    path: Path, cells: Sequence[str], lines: Sequence[int], column: str, decimal_comma: bool
) -> npt.NDArray[np.int64]:
    texts = [c.replace(",", ".") for c in cells] if decimal_comma else list(cells)
    try:
        numbers = np.asarray(texts, dtype=np.float64)
    except ValueError:
        pass
    else:
        bad = ~np.isfinite(numbers)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFileError(path, f"{column}: {cells[i]!r} is not a finite time", lines[i])
        return _epoch_ms(numbers)
    numeric = _is_number(texts[0], False)
    out = np.empty(len(cells), dtype=np.int64)
    for i, (text, line) in enumerate(zip(cells, lines, strict=True)):
        if numeric:
            if not _is_number(texts[i], False):
                raise DataFileError(
                    path, f"{column}: {text!r} is not a number like the first row's time", line
                )
            continue
        ms = _iso_ms(text)
        if ms is None:
            like = "or a number" if i == 0 else "like the first row's time"
            raise DataFileError(path, f"{column}: {text!r} is not an ISO 8601 time {like}", line)
        out[i] = ms
    if numeric:  # numpy refused a text that float() reads: take float()'s reading
        return _epoch_ms(np.asarray([float(t) for t in texts], dtype=np.float64))
    return out


def _label(text: str) -> tuple[bool, str]:
    word = text.strip().lower()
    if word in NORMAL_WORDS:
        return False, NO_ANOMALY
    if word in ANOMALOUS_WORDS:
        return True, "labeled"
    try:
        number = float(word)
    except ValueError:
        return True, text.strip()
    if not math.isfinite(number):
        raise ValueError(word)
    return (False, NO_ANOMALY) if number == 0 else (True, "labeled")


def _apply_time_policy(
    path: Path,
    times: npt.NDArray[np.int64],
    groups: list[npt.NDArray[np.intp]],
    policy: TimePolicy,
    lines: Sequence[int],
    texts: Sequence[str],
    column: str,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], int]:
    """Times strictly increasing within each group: (times, rows kept, rows touched)."""
    out = times.copy()
    keep = np.ones(len(times), dtype=bool)
    touched = 0
    for idx in groups:
        t = times[idx]
        if len(t) < 2:
            continue
        late = t[1:] <= np.maximum.accumulate(t)[:-1]  # not after some earlier row
        if not late.any():
            continue
        if policy == "error":
            k = int(np.argmax(late)) + 1
            i, j = int(idx[k]), int(idx[int(np.argmax(t[:k]))])
            raise DataFileError(
                path,
                f"{column} {texts[i]!r} is not later than line {lines[j]}'s {texts[j]!r} "
                f"(a repeated or earlier time); {_POLICY_HINT}",
                lines[i],
            )
        if policy == "drop":
            keep[idx[1:][late]] = False
            touched += int(late.sum())
            continue
        step = np.arange(len(t), dtype=np.int64)
        clamped = np.maximum.accumulate(t - step) + step  # max(t[i], clamped[i-1] + 1)
        out[idx] = clamped
        touched += int(np.count_nonzero(clamped != t))
    return out, keep, touched


def _groups(source_ids: Sequence[str]) -> list[npt.NDArray[np.intp]]:
    """Row indices of each source, in order of first appearance, each in file order."""
    positions: dict[str, list[int]] = {}
    for i, source in enumerate(source_ids):
        positions.setdefault(source, []).append(i)
    return [np.asarray(v, dtype=np.intp) for v in positions.values()]


def read_series(
    path: Path | str,
    *,
    columns: Sequence[str] | None = None,
    label_column: str | None = None,
    time_column: str | None = None,
    source_column: str | None = None,
    rows: RowRange | None = None,
    time_policy: TimePolicy = "clamp",
    default_source: str | None = None,
    delimiter: str | None = None,
    period_ms: int = DEFAULT_PERIOD_MS,
) -> Series:
    """Read a csv series as a per-row table (rules: the module docstring).

    Args:
        path: the file.
        columns: channel columns, in this order; default: every numeric column except the
            time, label, source and label-like ones.
        label_column: the label column (1 = anomalous); default: ``label``, ``is_anomaly``
            or ``anomaly`` if present.
        time_column: the time column; default: by name (``timestamp``, ``time``, ...).
        source_column: a column of source ids, when several sources are interleaved.
        rows: ``(a, b)``: keep data rows ``a <= i < b`` (0-based; either end None).
        time_policy: ``clamp``, ``drop`` or ``error`` for times that repeat or go back.
        default_source: the source of every row without a source column (the file's stem).
        delimiter: ``,``, ``;`` or a tab; default: sniffed from the header.
        period_ms: row spacing of synthetic times, when there is no time column.

    Raises:
        DataFileError: the file cannot be read, naming it (and the line).
    """
    path = Path(path)
    if time_policy not in TIME_POLICIES:
        raise DataFileError(path, f"unknown time policy {time_policy!r}; use clamp, drop or error")
    lines = _read_lines(path)
    head = next(i for i, line in enumerate(lines) if line.strip())
    sep = delimiter or sniff_delimiter(lines[head])
    decimal_comma = sep == ";"
    header_line = head + 1
    header = [h.strip() for h in next(csv.reader([lines[head]], delimiter=sep))]
    if any(not h for h in header):
        raise DataFileError(path, "the header has an empty column name", header_line)
    if len(set(header)) != len(header):
        raise DataFileError(path, "the header repeats a column name", header_line)
    if all(_is_number(h, decimal_comma) for h in header):
        raise DataFileError(
            path,
            "the first line is numbers, not a header; a csv series needs a header row "
            "(rows of one window each: --format ecg5000)",
            header_line,
        )
    numbered = [
        (row, n, text)
        for row, (n, text) in enumerate(
            (n, text) for n, text in enumerate(lines[head + 1 :], start=head + 2) if text.strip()
        )
    ]
    chosen = _select(path, numbered, rows, "data")
    cells = list(csv.reader((text for _r, _n, text in chosen), delimiter=sep))
    line_of = [n for _r, n, _t in chosen]
    for fields, n in zip(cells, line_of, strict=True):
        if len(fields) != len(header):
            raise DataFileError(path, f"{len(fields)} columns, the header has {len(header)}", n)
    cells = [[f.strip() for f in fields] for fields in cells]
    first = cells[0]

    def pick(name: str | None, role: str) -> int | None:
        return None if name is None else _find(path, header, name, role, header_line)

    lowered = [h.lower() for h in header]
    t_idx = pick(time_column, "time ")
    if t_idx is None:
        t_idx = next((lowered.index(n) for n in TIME_COLUMNS if n in lowered), None)
    if t_idx is None and not _is_number(first[0], decimal_comma) and _iso_ms(first[0]) is not None:
        t_idx = 0
    s_idx = pick(source_column, "source ")
    named = {_find(path, header, c, "", header_line) for c in columns or ()}
    l_idx = pick(label_column, "label ")
    if l_idx is None:
        l_idx = next(
            (
                lowered.index(n)
                for n in LABEL_COLUMNS
                if n in lowered and lowered.index(n) not in named | {t_idx, s_idx}
            ),
            None,
        )
    special = {i for i in (t_idx, s_idx) if i is not None}
    skipped: list[str] = []
    if columns:
        c_idx = [_find(path, header, c, "", header_line) for c in columns]
        clash = [header[i] for i in c_idx if i in special]
        if clash:
            raise DataFileError(path, f"column {clash[0]!r} is the time or source column")
        if len(set(c_idx)) != len(c_idx):
            raise DataFileError(path, "columns names a column twice")
    else:
        c_idx = []
        for i, name in enumerate(header):
            if i in special or i == l_idx or name.lower() in LABEL_LIKE_COLUMNS:
                continue
            sample = next((f[i] for f in cells if f[i]), "")  # first value that is there
            if not _is_number(sample, decimal_comma):
                skipped.append(name)  # text, or empty in every selected row
                continue
            c_idx.append(i)
    if not c_idx:
        raise DataFileError(
            path,
            "no numeric channel column besides the time, label and source columns "
            f"(columns: {', '.join(header)})",
            header_line,
        )
    values = np.stack(
        [_numbers(path, [f[i] for f in cells], line_of, header[i], decimal_comma) for i in c_idx],
        axis=1,
    )
    labels: npt.NDArray[np.bool_] | None = None
    types: list[str] | None = None
    if l_idx is not None:
        parsed: list[tuple[bool, str]] = []
        for fields, n in zip(cells, line_of, strict=True):
            try:
                parsed.append(_label(fields[l_idx]))
            except ValueError:
                raise DataFileError(
                    path,
                    f"{header[l_idx]}: {fields[l_idx]!r} is not a label (1 = anomalous, "
                    "0 = normal)",
                    n,
                ) from None
        labels = np.fromiter((a for a, _t in parsed), dtype=bool, count=len(parsed))
        types = [t for _a, t in parsed]
    if s_idx is not None:
        sources = [f[s_idx] for f in cells]
        empty = next((n for s, n in zip(sources, line_of, strict=True) if not s), None)
        if empty is not None:
            raise DataFileError(path, f"{header[s_idx]}: an empty source id", empty)
    else:
        sources = [default_source or path.stem] * len(cells)
    data_rows = np.asarray([r for r, _n, _t in chosen], dtype=np.int64)
    keep = np.ones(len(cells), dtype=bool)
    touched = 0
    if t_idx is None:
        times = data_rows * int(period_ms)
    else:
        texts = [f[t_idx] for f in cells]
        times = _times(path, texts, line_of, header[t_idx], decimal_comma)
        times, keep, touched = _apply_time_policy(
            path, times, _groups(sources), time_policy, line_of, texts, header[t_idx]
        )
    kept = np.flatnonzero(keep)
    return Series(
        values=values[kept],
        labels=None if labels is None else labels[kept],
        anomaly_types=None if types is None else tuple(types[i] for i in kept),
        time_ms=times[kept].astype(np.int64, copy=False),
        rows=data_rows[kept],
        lines=np.asarray(line_of, dtype=np.int64)[kept],
        source_ids=tuple(sources[i] for i in kept),
        channel_names=tuple(header[i] for i in c_idx),
        path=path,
        time_column=None if t_idx is None else header[t_idx],
        label_column=None if l_idx is None else header[l_idx],
        source_column=None if s_idx is None else header[s_idx],
        skipped_columns=tuple(skipped),
        time_policy=time_policy,
        policy_touched=touched,
    )


def cut_windows(series: Series, window: int, stride: int | None = None) -> WindowSet:
    """Cut ``series`` into windows of ``window`` rows, one every ``stride`` rows (``window``),
    within each source; windows come in file order of their last row.

    Raises:
        DataFileError: sizes below 1, or no source has a window's worth of rows.
    """
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise DataFileError(series.path, f"window and stride must be >= 1 (got {window}, {stride})")
    groups = _groups(series.source_ids)
    parts: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = []  # (first, last) rows
    for idx in groups:
        if len(idx) >= window:
            starts = np.arange(0, len(idx) - window + 1, stride)
            parts.append((idx[starts], idx[starts + window - 1]))
    if not parts:
        longest = max(len(idx) for idx in groups)
        if len(groups) == 1:
            detail = f"the series has {longest} rows, shorter than one window of {window}"
        else:
            detail = f"no source has a window of {window} rows (the longest has {longest})"
        raise DataFileError(series.path, detail)
    first = np.concatenate([p[0] for p in parts])
    last = np.concatenate([p[1] for p in parts])
    order = np.argsort(series.rows[last], kind="stable")
    first, last = first[order], last[order]
    # Rows of one source are not adjacent when sources interleave: gather each window's rows.
    member = np.concatenate([idx for idx in groups])
    position = np.empty(len(series), dtype=np.intp)
    position[member] = np.arange(len(member))
    rows_of = member[position[first][:, None] + np.arange(window)[None, :]]  # (N, T)
    values = series.values.astype(np.float32)[rows_of]
    labels = types = None
    if series.labels is not None and series.anomaly_types is not None:
        row_labels = series.labels[rows_of]
        labels = row_labels.any(axis=1)
        kinds = series.anomaly_types
        types = tuple(
            kinds[int(rows_of[i, int(np.argmax(row_labels[i]))])] if labels[i] else NO_ANOMALY
            for i in range(len(labels))
        )
    return WindowSet(
        values=values,
        labels=labels,
        end_row=series.rows[last],
        event_time_ms=series.time_ms[last],
        source_ids=tuple(series.source_ids[i] for i in last.tolist()),
        channel_names=series.channel_names,
        path=series.path,
        fmt="csv",
        policy_touched=series.policy_touched,
        start_row=series.rows[first],
        anomaly_types=types,
        window_stride=stride,
        synthetic_time=series.time_column is None,
        time_policy=series.time_policy,
        time_column=series.time_column,
        label_column=series.label_column,
        source_column=series.source_column,
        skipped_columns=series.skipped_columns,
    )


# -- ecg5000 and npz ----------------------------------------------------------------------------


def _read_ecg5000(
    path: Path,
    rows: RowRange | None,
    delimiter: str | None,
    source: str,
    period_ms: int,
    time_policy: TimePolicy,
) -> WindowSet:
    lines = _read_lines(path)
    numbered = [
        (i, n, t) for i, (n, t) in enumerate((n, t) for n, t in enumerate(lines, 1) if t.strip())
    ]
    chosen = _select(path, numbered, rows, "data")
    sep = delimiter or sniff_delimiter(chosen[0][2])
    decimal_comma = sep == ";"
    split = [[c.strip() for c in text.split(sep)] for _r, _n, text in chosen]
    width = len(split[0])
    if width < 3:
        raise DataFileError(
            path,
            f"{width} columns; an ECG5000-layout row holds samples then a label (at least 3 "
            "columns)",
            chosen[0][1],
        )
    for fields, (_r, n, _t) in zip(split, chosen, strict=True):
        if len(fields) != width:
            raise DataFileError(
                path, f"{len(fields)} columns, expected {width} like the first row", n
            )
    line_of = [n for _r, n, _t in chosen]
    data = np.stack(
        [
            _numbers(path, [f[j] for f in split], line_of, str(j + 1), decimal_comma)
            for j in range(width)
        ],
        axis=1,
    )
    raw = data[:, -1]
    bad = (raw != np.round(raw)) | (raw < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(
            path,
            f"label (last column) {raw[i]:g} is not a class number; in the ECG5000 layout "
            "1 = normal, 0 or another class number = anomalous",
            line_of[i],
        )
    classes = raw.astype(np.int64)
    end_row = np.asarray([r for r, _n, _t in chosen], dtype=np.int64)
    return WindowSet(
        values=data[:, :-1, None].astype(np.float32),
        labels=classes != 1,
        end_row=end_row,
        event_time_ms=end_row * int(period_ms),
        source_ids=(source,) * len(end_row),
        channel_names=("ecg",),
        path=path,
        fmt="ecg5000",
        policy_touched=0,
        anomaly_types=tuple(
            NO_ANOMALY if c == 1 else ECG5000_CLASSES.get(c, f"class_{c}") for c in classes.tolist()
        ),
        synthetic_time=True,
        time_policy=time_policy,
    )


def _npz_strings(arrays: dict[str, npt.NDArray[np.generic]], key: str, n: int) -> list[str] | None:
    if key not in arrays:
        return None
    raw = np.asarray(arrays[key])
    return [str(x) for x in raw.tolist()] if raw.shape == (n,) else None


def _read_npz(
    path: Path,
    rows: RowRange | None,
    source: str,
    period_ms: int,
    time_policy: TimePolicy,
) -> WindowSet:
    if path.is_dir():
        raise DataFileError(path, "is a directory, not a data file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(path, f"not a readable .npz file of plain arrays: {exc}") from exc
    key = "windows" if "windows" in arrays else "x" if "x" in arrays else None
    if key is None:
        raise DataFileError(
            path, f"no 'windows' array (found: {', '.join(sorted(arrays)) or 'none'})"
        )
    windows = arrays[key]
    if windows.ndim == 2:
        windows = windows[:, :, None]
    if windows.ndim != 3 or min(windows.shape) < 1:
        raise DataFileError(
            path, f"'{key}' has shape {windows.shape}; expected (N, T, C) or (N, T)"
        )
    if windows.dtype != np.bool_ and (
        not np.issubdtype(windows.dtype, np.number)
        or np.issubdtype(windows.dtype, np.complexfloating)
    ):
        raise DataFileError(path, f"'{key}' has dtype {windows.dtype}; expected real numbers")
    n = len(windows)
    picked = _select(path, [(i, i, "") for i in range(n)], rows, "window")
    index = np.asarray([i for i, _n, _t in picked], dtype=np.int64)
    windows = windows[index]
    finite = np.isfinite(windows).all(axis=(1, 2))
    if not finite.all():
        i = int(index[int(np.argmax(~finite))])
        raise DataFileError(path, f"'{key}' holds NaN or inf", i, unit="window")
    labels: npt.NDArray[np.bool_] | None = None
    lkey = "labels" if "labels" in arrays else "y" if "y" in arrays else None
    if lkey is not None:
        raw = np.asarray(arrays[lkey])
        if raw.shape != (n,):
            raise DataFileError(path, f"'{lkey}' has shape {raw.shape}; expected ({n},)")
        if not np.issubdtype(raw.dtype, np.number) and raw.dtype != np.bool_:
            raise DataFileError(path, f"'{lkey}' has dtype {raw.dtype}; expected 0/1 integers")
        raw = raw[index]
        bad = (raw != 0) & (raw != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFileError(
                path,
                f"label {raw[i].item()!r}; labels are 1 (anomalous) or 0 (normal)",
                int(index[i]),
                unit="window",
            )
        labels = raw.astype(bool)
    channels = windows.shape[2]
    names = tuple(f"ch{i}" for i in range(channels))
    if "channel_names" in arrays:
        names = tuple(str(x) for x in np.asarray(arrays["channel_names"]).reshape(-1).tolist())
        if len(names) != channels:
            raise DataFileError(path, f"{len(names)} channel_names for {channels} channels")
    types: tuple[str, ...] | None = None
    if labels is not None:
        given = _npz_strings(arrays, "anomaly_types", n)
        types = (
            tuple(given[i] for i in index.tolist())
            if given is not None
            else tuple("labeled" if a else NO_ANOMALY for a in labels.tolist())
        )
    sources = _npz_strings(arrays, "source_ids", n)
    times = np.asarray(arrays.get("event_time_ms", np.empty(0)))
    has_times = times.shape == (n,) and np.issubdtype(times.dtype, np.integer)
    return WindowSet(
        values=windows.astype(np.float32),
        labels=labels,
        end_row=index,
        event_time_ms=times[index].astype(np.int64) if has_times else index * int(period_ms),
        source_ids=(
            tuple(sources[i] for i in index.tolist()) if sources else (source,) * len(index)
        ),
        channel_names=names,
        path=path,
        fmt="npz",
        policy_touched=0,
        anomaly_types=types,
        synthetic_time=not has_times,
        time_policy=time_policy,
    )


# -- the entry point ---------------------------------------------------------------------------


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
    """Read ``path`` as raw windows (rules: the module docstring).

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
