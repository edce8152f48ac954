"""Training data: ECG5000, generic sensor CSVs and NPZ window arrays, as raw (N, T, C) windows.

Three formats, chosen with ``--format`` (``auto`` picks by suffix and first line):

``ecg5000``
    The TensorFlow autoencoder tutorial's layout: no header, comma-separated, one beat per
    row, the last column the label with **1 = normal, 0 = abnormal** (ECG5000 has 140 samples
    plus the label: 141 columns). Every row must have the first row's column count.

``csv``
    A timestamped multichannel series (see :mod:`training.sensor_csv`): a header row, a
    timestamp column, N numeric channels, an optional label column (**1 = anomalous,
    0 = normal**), comma- or semicolon-separated; cut into sliding windows.

``npz``
    Windows already cut, as written by ``numpy.savez``:

    * ``windows``: float array (N, T, C), or (N, T) for one channel. ``x`` is accepted as an
      alias.
    * ``labels`` (optional): int array (N,), **1 = anomalous, 0 = normal**. Alias ``y``.
      Without labels every window is taken as normal.
    * ``channel_names`` (optional): str array (C,).

    The producer's simulator writes this format for the offline demo::

        np.savez(path, windows=values.astype(np.float32), labels=labels.astype(np.int8),
                 channel_names=np.asarray(names))

Whatever the format, :class:`Dataset` holds ``labels`` as a boolean array with
**True = anomalous**, and the values raw (the bundle's normalisation is fitted later on the
normal training windows only). Every problem is a :class:`~training.errors.DataError` naming
the file and the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from training.errors import DataError
from training.sensor_csv import parse_float_row, read_lines, read_sensor_csv

__all__ = [
    "ECG5000_TEST_SIZE",
    "ECG5000_TUTORIAL_SEED",
    "Dataset",
    "Format",
    "Split",
    "load_dataset",
    "split_dataset",
]

Format = Literal["auto", "ecg5000", "csv", "npz"]
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
    """

    windows: npt.NDArray[np.float32]
    labels: npt.NDArray[np.bool_] | None
    channel_names: list[str]
    path: Path
    format: str
    window_stride: int = 0

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
) -> Dataset:
    """Load ``path`` in format ``fmt`` as raw windows.

    Args:
        path: the data file.
        fmt: ``ecg5000``, ``csv``, ``npz`` or ``auto``.
        window: window length (``csv`` only; required there).
        stride: step between window starts (``csv`` only; default: ``window``).
        label_column: the label column's name (``csv`` only; default: ``label`` if present).

    Raises:
        DataError: the file is missing, malformed, holds NaN/inf, or the format is unknown.
    """
    path = Path(path)
    if fmt not in get_args(Format):
        raise DataError(path, f"unknown format {fmt!r}; expected one of ecg5000, csv, npz, auto")
    if not path.is_file():
        raise DataError(path, "no such file")
    if fmt == "auto":
        fmt = _guess_format(path)
    if fmt == "npz":
        return _load_npz(path)
    if fmt == "ecg5000":
        return _load_ecg5000(path)
    if window is None:
        raise DataError(path, "a csv series needs a window length (--window N)")
    values, labels, names = read_sensor_csv(path, window, label_column)
    return _cut_windows(path, values, labels, names, window, stride or window)


def _guess_format(path: Path) -> Format:
    if path.suffix.lower() == ".npz":
        return "npz"
    for line in read_lines(path):
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            [float(f) for f in fields]
        except ValueError:
            return "csv"
        return "ecg5000" if len(fields) > 2 else "csv"
    raise DataError(path, "the file is empty")


def _load_ecg5000(path: Path) -> Dataset:
    rows: list[npt.NDArray[np.float64]] = []
    n_cols = 0
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if n_cols == 0:
            n_cols = len(fields)
            if n_cols < 3:
                raise DataError(
                    path, f"{n_cols} columns; ECG5000 rows hold samples then a label", lineno
                )
        elif len(fields) != n_cols:
            raise DataError(
                path, f"{len(fields)} columns, expected {n_cols} like the first row", lineno
            )
        rows.append(
            parse_float_row(path, lineno, fields, [f"column {i + 1}" for i in range(n_cols)])
        )
    if not rows:
        raise DataError(path, "the file is empty")
    data = np.stack(rows)
    label = data[:, -1]
    bad = np.flatnonzero((label != 0) & (label != 1))
    if bad.size:
        raise DataError(
            path,
            f"label (last column) is {label[bad[0]]:g}; ECG5000 labels are 1 (normal) "
            "or 0 (abnormal)",
            _line_of(path, int(bad[0])),
        )
    windows = data[:, :-1, None].astype(np.float32)
    return Dataset(windows, label == 0, ["ecg"], path, "ecg5000")


def _line_of(path: Path, index: int) -> int:
    """1-based line number of the ``index``-th non-blank line."""
    seen = -1
    for lineno, line in enumerate(read_lines(path), start=1):
        if line.strip():
            seen += 1
            if seen == index:
                return lineno
    return index + 1


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"not a readable .npz file of plain arrays: {exc}") from exc
    key = "windows" if "windows" in arrays else "x" if "x" in arrays else None
    if key is None:
        raise DataError(path, f"no 'windows' array (found: {', '.join(sorted(arrays)) or 'none'})")
    windows = arrays[key]
    if windows.ndim == 2:
        windows = windows[:, :, None]
    if windows.ndim != 3 or min(windows.shape) < 1:
        raise DataError(path, f"'{key}' has shape {windows.shape}; expected (N, T, C) or (N, T)")
    if not np.issubdtype(windows.dtype, np.number) or np.issubdtype(
        windows.dtype, np.complexfloating
    ):
        raise DataError(path, f"'{key}' has dtype {windows.dtype}; expected real numbers")
    finite = np.isfinite(windows).all(axis=(1, 2))
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise DataError(path, f"'{key}' holds NaN or inf", i, unit="window")
    labels: npt.NDArray[np.bool_] | None = None
    lkey = "labels" if "labels" in arrays else "y" if "y" in arrays else None
    if lkey is not None:
        raw = np.asarray(arrays[lkey])
        if raw.shape != (len(windows),):
            raise DataError(path, f"'{lkey}' has shape {raw.shape}; expected ({len(windows)},)")
        if not np.issubdtype(raw.dtype, np.number) and raw.dtype != np.bool_:
            raise DataError(path, f"'{lkey}' has dtype {raw.dtype}; expected 0/1 integers")
        bad = np.flatnonzero((raw != 0) & (raw != 1))
        if bad.size:
            raise DataError(
                path,
                f"label {raw[bad[0]].item()!r}; labels are 1 (anomalous) or 0 (normal)",
                int(bad[0]),
                unit="window",
            )
        labels = raw.astype(bool)
    n_channels = windows.shape[2]
    names = [f"ch{i}" for i in range(n_channels)]
    if "channel_names" in arrays:
        given = [str(n) for n in np.asarray(arrays["channel_names"]).reshape(-1)]
        if len(given) != n_channels:
            raise DataError(path, f"{len(given)} channel_names for {n_channels} channels")
        names = given
    return Dataset(windows.astype(np.float32), labels, names, path, "npz")


def _cut_windows(
    path: Path,
    values: npt.NDArray[np.float64],
    labels: npt.NDArray[np.bool_] | None,
    names: list[str],
    window: int,
    stride: int,
) -> Dataset:
    if window < 2 or stride < 1:
        raise DataError(path, f"window must be >= 2 and stride >= 1 (got {window}, {stride})")
    n = len(values)
    if n < window:
        raise DataError(path, f"the series has {n} rows, shorter than one window of {window}")
    starts = np.arange(0, n - window + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (n-w+1, C, w)
    windows = np.ascontiguousarray(view[starts].transpose(0, 2, 1), dtype=np.float32)
    win_labels = None
    if labels is not None:
        counts = np.concatenate([[0], np.cumsum(labels, dtype=np.int64)])
        win_labels = (counts[starts + window] - counts[starts]) > 0
    return Dataset(windows, win_labels, names, path, "csv", window_stride=stride)


def split_dataset(data: Dataset, test_fraction: float = 0.2, seed: int = 21) -> Split:
    """Train/test split of the windows.

    * ``ecg5000``: exactly the tutorial's ``train_test_split(test_size=0.2, random_state=21)``
      (whatever ``test_fraction`` and ``seed`` say), so figures compare with it.
    * ``csv``: chronological; the last ``test_fraction`` of the windows, after a gap so that
      no test window overlaps a training window.
    * ``npz``: a random split seeded by ``seed``.
    """
    n = len(data.windows)
    if data.format == "ecg5000":
        from sklearn.model_selection import train_test_split

        train, test = train_test_split(
            np.arange(n), test_size=ECG5000_TEST_SIZE, random_state=ECG5000_TUTORIAL_SEED
        )
        how = "train_test_split(test_size=0.2, random_state=21), as the TensorFlow tutorial"
        return Split(np.asarray(train), np.asarray(test), how)
    n_test = round(n * test_fraction)
    if data.format == "csv":
        stride = max(1, data.window_stride)
        gap = -(-data.window_size // stride) - 1  # windows that would overlap the first test one
        n_train = max(0, n - n_test - gap)
        how = f"chronological: last {n_test} windows for test, {gap} dropped between"
        return Split(np.arange(n_train), np.arange(n - n_test, n), how)
    order = np.random.default_rng(seed).permutation(n)
    how = f"random, {test_fraction:g} for test, seed {seed}"
    return Split(np.sort(order[n_test:]), np.sort(order[:n_test]), how)
