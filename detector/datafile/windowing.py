"""The shared types and windowing of :mod:`detector.datafile`: the format and time-policy
names, the constants every reader uses, :class:`Series` (a csv series per row),
:class:`WindowSet` (what every reader returns) and :func:`cut_windows` (a series to windows,
within each source). The file-format contract is the package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from detector.errors import DataFileError

TimePolicy = Literal["clamp", "error", "drop"]
FileFormat = Literal["auto", "csv", "ecg5000", "npz"]
TIME_POLICIES: tuple[str, ...] = get_args(TimePolicy)
FILE_FORMATS: tuple[str, ...] = get_args(FileFormat)
DEFAULT_PERIOD_MS = 1000
NO_ANOMALY = "none"
TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "ts", "epoch")


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
            has no times, see the package docstring).
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


def _groups(source_ids: Sequence[str]) -> list[npt.NDArray[np.intp]]:
    """Row indices of each source, in order of first appearance, each in file order."""
    positions: dict[str, list[int]] = {}
    for i, source in enumerate(source_ids):
        positions.setdefault(source, []).append(i)
    return [np.asarray(v, dtype=np.intp) for v in positions.values()]


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
