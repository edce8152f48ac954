"""The csv series reader of :mod:`detector.datafile`: :func:`read_series` turns a timestamped
multichannel csv into a per-row :class:`~detector.datafile.windowing.Series` (columns found
by name or given, labels, times in ISO 8601 or epoch numbers, the time policy). The rules it
follows are the package docstring's ``csv`` section.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.datafile.rows import (
    RowRange,
    _is_number,
    _numbers,
    _read_lines,
    _select,
    sniff_delimiter,
)
from detector.datafile.windowing import (
    DEFAULT_PERIOD_MS,
    NO_ANOMALY,
    TIME_COLUMNS,
    TIME_POLICIES,
    Series,
    TimePolicy,
    _groups,
)
from detector.errors import DataFileError

LABEL_COLUMNS = ("label", "is_anomaly", "anomaly")  # default label column, first present
LABEL_LIKE_COLUMNS = (*LABEL_COLUMNS, "changepoint")
NORMAL_WORDS = frozenset({"", "0", "normal", "false", "no", "none", "ok"})
ANOMALOUS_WORDS = frozenset({"true", "yes"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Largest |epoch number| read in each unit: 1e11 s is the year 5138, 1e11 ms is 1973.
_EPOCH_UNITS_MS = ((1e11, 1000.0), (1e14, 1.0), (1e17, 1e-3), (math.inf, 1e-6))
_POLICY_HINT = (
    "--time-policy clamp (the default) moves such a row to the previous time + 1 ms, "
    "--time-policy drop drops it"
)


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
    """Read a csv series as a per-row table (rules: the package docstring).

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
