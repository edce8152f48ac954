"""Training data: a file read by :mod:`detector.datafile` as a :class:`Dataset`, and its split.

Files are parsed and windowed by :func:`detector.datafile.read_windows` only (the rules that
producer replay and the backtest apply too): ``ecg5000`` (no header, one beat per row, the
label last with **1 = normal**), ``csv`` (a timestamped multichannel series with a header
row, cut into windows) and ``npz`` (windows already cut). See that module for delimiters,
the label, time and source columns, row ranges and the time policy for times that repeat or
go back (``clamp`` by default).

The producer's simulator writes the npz layout for the offline demo::

    np.savez(path, windows=values.astype(np.float32), labels=labels.astype(np.int8),
             channel_names=np.asarray(names))

Whatever the format, :class:`Dataset` holds ``labels`` as a boolean array with
**True = anomalous**, and the values raw (the bundle's normalisation is fitted later on the
normal training windows only). Every problem is a :class:`~training.errors.DataError` naming
the file and the line (the same message as the reader's
:class:`~detector.errors.DataFileError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.datafile import FileFormat, TimePolicy, read_windows
from detector.errors import DataFileError
from training.errors import DataError

__all__ = [
    "ECG5000_TEST_SIZE",
    "ECG5000_TUTORIAL_SEED",
    "Dataset",
    "Format",
    "Split",
    "load_dataset",
    "split_dataset",
]

Format = FileFormat
ECG5000_TEST_SIZE = 0.2
ECG5000_TUTORIAL_SEED = 21  # train_test_split(..., test_size=0.2, random_state=21)


@dataclass(frozen=True, slots=True)
class Dataset:
    """Raw windows with optional ground truth.

    Attributes:
        windows: (N, T, C) float32, un-normalised.
        labels: (N,) bool, True = anomalous; None when the file has no labels.
        channel_names: C names.
        path: where the data came from.
        format: ``ecg5000``, ``csv`` or ``npz``.
        window_stride: the stride used to cut a CSV series (0 for the other formats).
        first_row: (N,) 0-based data row of each window's first row in the file.
        end_row: (N,) 0-based data row of each window's last row in the file.
        policy_touched: rows the time policy moved or dropped.
        notes: warnings about the reading (:meth:`detector.datafile.WindowSet.notes`).
    """

    windows: npt.NDArray[np.float32]
    labels: npt.NDArray[np.bool_] | None
    channel_names: list[str]
    path: Path
    format: str
    window_stride: int = 0
    first_row: npt.NDArray[np.int64] | None = None
    end_row: npt.NDArray[np.int64] | None = None
    policy_touched: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def window_size(self) -> int:
        """T, steps per window."""
        return int(self.windows.shape[1])

    @property
    def n_channels(self) -> int:
        """C, channels per step."""
        return int(self.windows.shape[2])

    def anomalous(self) -> npt.NDArray[np.bool_]:
        """(N,) True where the window is labelled anomalous (all False without labels)."""
        if self.labels is None:
            return np.zeros(len(self.windows), dtype=bool)
        return self.labels


@dataclass(frozen=True, slots=True)
class Split:
    """Indices of the training and test windows, and how they were chosen."""

    train: npt.NDArray[np.intp]
    test: npt.NDArray[np.intp]
    how: str


def load_dataset(
    path: Path | str,
    fmt: Format = "auto",
    window: int | None = None,
    stride: int | None = None,
    label_column: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    time_column: str | None = None,
    source_column: str | None = None,
    rows: tuple[int | None, int | None] | None = None,
    time_policy: TimePolicy = "clamp",
) -> Dataset:
    """Load ``path`` in format ``fmt`` as raw windows (see :func:`detector.datafile.read_windows`).

    Args:
        path: the data file.
        fmt: ``ecg5000``, ``csv``, ``npz`` or ``auto``.
        window: window length (``csv`` only; required there).
        stride: step between window starts (``csv`` only; default: ``window``).
        label_column: the label column (``csv``; default ``label``/``is_anomaly`` if present).
        columns: the channel columns (``csv``; default: every numeric non-special column).
        time_column: the time column (``csv``; default: by name).
        source_column: a column of source ids (``csv``; windows are cut within each source).
        rows: ``(a, b)``: only data rows ``a <= i < b`` (0-based; either end None).
        time_policy: ``clamp``, ``drop`` or ``error`` for times that repeat or go back.

    Raises:
        DataError: the file is missing, malformed, holds NaN/inf, or the format is unknown.
    """
    try:
        ws = read_windows(
            path,
            fmt=fmt,
            window=window,
            stride=stride,
            columns=columns,
            label_column=label_column,
            time_column=time_column,
            source_column=source_column,
            rows=rows,
            time_policy=time_policy,
        )
    except DataFileError as exc:
        raise DataError(exc.path, exc.detail, exc.line, unit=exc.unit) from exc
    return Dataset(
        windows=ws.values,
        labels=ws.labels,
        channel_names=list(ws.channel_names),
        path=ws.path,
        format=ws.fmt,
        window_stride=ws.window_stride,
        first_row=ws.first_row,
        end_row=ws.end_row,
        policy_touched=ws.policy_touched,
        notes=tuple(ws.notes()),
    )


def split_dataset(data: Dataset, test_fraction: float = 0.2, seed: int = 21) -> Split:
    """Train/test split of the windows.

    * ``test_fraction == 0``: every window is for training; there is no test set.
    * ``ecg5000``: exactly the tutorial's ``train_test_split(test_size=0.2, random_state=21)``
      (whatever a non-zero ``test_fraction`` and ``seed`` say), so figures compare with it.
    * ``csv``: chronological; the last ``test_fraction`` of the windows for test, and for
      training only the windows that end before the first test window starts, so that no
      test row is in a training window.
    * ``npz``: a random split seeded by ``seed``.
    """
    n = len(data.windows)
    if test_fraction == 0:
        how = f"all {n} windows for training (test fraction 0: no test set)"
        return Split(np.arange(n), np.arange(0), how)
    if data.format == "ecg5000":
        from sklearn.model_selection import train_test_split

        train, test = train_test_split(
            np.arange(n), test_size=ECG5000_TEST_SIZE, random_state=ECG5000_TUTORIAL_SEED
        )
        how = "train_test_split(test_size=0.2, random_state=21), as the TensorFlow tutorial"
        return Split(np.asarray(train), np.asarray(test), how)
    n_test = round(n * test_fraction)
    if data.format == "csv":
        test = np.arange(n - n_test, n)
        first = data.first_row if data.first_row is not None else np.arange(n)
        last = data.end_row if data.end_row is not None else np.arange(n)
        cut = int(first[test].min()) if n_test else int(last.max()) + 1
        train = np.flatnonzero(last[: n - n_test] < cut)
        gap = n - n_test - len(train)
        how = f"chronological: last {n_test} windows for test, {gap} dropped between"
        return Split(train, test, how)
    order = np.random.default_rng(seed).permutation(n)
    how = f"random, {test_fraction:g} for test, seed {seed}"
    return Split(np.sort(order[n_test:]), np.sort(order[:n_test]), how)
