"""Replay: files of windows with known truth, turned into streams.

Formats (``auto`` picks by suffix, ``.npz``, or by the first line: all numbers is the ECG5000
layout, otherwise a header row, a sensor CSV):

* **ECG5000 layout**: no header, one beat per row, the samples then the label in the last
  column. The label follows the data set's convention, ``1`` = normal: in the TensorFlow
  tutorial's file the other value is ``0`` (abnormal); in the 5-class file it is the UCR class
  (2 R-on-T PVC, 3 PVC, 4 SP/EB, 5 unclassified), which becomes the anomaly type.
* **Sensor CSV**: a timestamped multichannel series with an optional label column, cut into
  sliding windows (see :mod:`producer.sensor_csv`).
* **NPZ**: windows already cut, as :mod:`producer.filesink` writes them (``windows``,
  optional ``labels``, ``channel_names``, ``anomaly_types``).

The replayer parses files itself (numpy and the standard library only), so the producer does
not depend on the training package. Every problem with a file is a
:class:`~producer.errors.ProducerInputError` naming the file (and the line, for text).

Examples:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "beats.csv"
    >>> _ = path.write_text("0.1,0.5,-0.2,1.0\\n0.3,0.9,0.0,0.0\\n")
    >>> windows = read_windows(path)
    >>> windows.values.shape, windows.labels.tolist(), windows.anomaly_types
    ((2, 3, 1), [0, 1], ['none', 'abnormal'])
    >>> [(w.source_id, w.seq) for w in next(replay_batches(windows, source_prefix="p"))]
    [('p', 0), ('p', 1)]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from producer.errors import ProducerInputError
from producer.sensor_csv import (
    parse_number,
    read_lines,
    read_sensor_csv,
    sliding_windows,
    sniff_delimiter,
)
from producer.windows import NO_ANOMALY, LabeledWindows, WindowBatch, concat_batches

__all__ = [
    "ECG5000_CLASSES",
    "REPLAY_FORMATS",
    "REPLAY_REGIME",
    "ReplayFormat",
    "detect_format",
    "load_replay",
    "read_ecg5000",
    "read_npz",
    "read_windows",
    "replay_batches",
]

ReplayFormat = Literal["auto", "ecg5000", "csv", "npz"]
REPLAY_FORMATS: tuple[str, ...] = get_args(ReplayFormat)
REPLAY_REGIME = "replay"
ECG5000_CLASSES = {2: "r_on_t_pvc", 3: "pvc", 4: "sp_eb", 5: "unclassified"}


def read_ecg5000(path: Path) -> LabeledWindows:
    """Read an ECG5000-layout CSV: one beat per row, the label last (1 = normal).

    Raises:
        ProducerInputError: the file is missing, unreadable or malformed.
    """
    lines = read_lines(path)
    delimiter = sniff_delimiter(lines[0])
    rows: list[list[float]] = []
    line_nos: list[int] = []
    width: int | None = None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        line_nos.append(line_no)
        cells = line.split(delimiter)
        if width is None:
            width = len(cells)
            if width < 3:
                raise ProducerInputError(
                    f"{path}: line {line_no} has {width} columns; an ECG5000-layout row "
                    "needs samples and a label (at least 3 columns)"
                )
        elif len(cells) != width:
            raise ProducerInputError(
                f"{path}: line {line_no} has {len(cells)} columns, expected {width}"
            )
        rows.append([parse_number(c, path, line_no, str(i + 1)) for i, c in enumerate(cells)])
    data = np.asarray(rows, dtype=np.float64)
    raw = data[:, -1]
    if not np.all(raw == np.round(raw)) or raw.min() < 0:
        bad = int(np.argmax((raw != np.round(raw)) | (raw < 0)))
        raise ProducerInputError(
            f"{path}: line {line_nos[bad]}: label {float(raw[bad]):g} is not a class number "
            "(1 = normal)"
        )
    classes = raw.astype(np.int64)
    five_class = bool(classes.max() > 1)
    types = [
        NO_ANOMALY
        if c == 1
        else (ECG5000_CLASSES.get(int(c), f"class_{c}") if five_class else "abnormal")
        for c in classes.tolist()
    ]
    return LabeledWindows(
        values=data[:, :-1, None].astype(np.float32),
        labels=(classes != 1).astype(np.int8),
        anomaly_types=types,
        channel_names=("ecg",),
    )


def replay_batches(
    windows: LabeledWindows,
    *,
    n_sources: int = 1,
    source_prefix: str = "replay",
    loop: bool = False,
    batch_size: int = 1024,
) -> Iterator[WindowBatch]:
    """The file's windows as a stream: sources round-robin, ``seq`` per source from 0.

    Args:
        windows: what a reader returned.
        n_sources: sources to spread the windows over: ``source_prefix`` itself when there is
            one, else ``f"{source_prefix}-{i}"``.
        source_prefix: the source id, or its prefix.
        loop: start again at the first window after the last, forever.
        batch_size: windows per batch.
    """
    if n_sources < 1:
        raise ProducerInputError(f"need at least one source, got {n_sources}")
    ids = [source_prefix] if n_sources == 1 else [f"{source_prefix}-{i}" for i in range(n_sources)]
    total = len(windows.labels)
    if total == 0:
        raise ProducerInputError("the file holds no complete window")
    passes = itertools.count() if loop else range(1)
    position = 0  # windows emitted so far, over every pass
    for _ in passes:
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            index = np.arange(position, position + stop - start, dtype=np.int64)
            position += stop - start
            yield WindowBatch(
                source_ids=[ids[i] for i in (index % n_sources).tolist()],
                seqs=index // n_sources,
                values=windows.values[start:stop],
                labels=windows.labels[start:stop],
                anomaly_types=windows.anomaly_types[start:stop],
                regimes=[REPLAY_REGIME] * (stop - start),
                channel_names=windows.channel_names,
                file_time_ms=None if windows.time_ms is None else windows.time_ms[start:stop],
            )


def read_npz(path: Path) -> LabeledWindows:
    """Read windows already cut: ``windows`` (N, T, C) or (N, T), optional ``labels`` (1 =
    anomalous), ``channel_names`` and ``anomaly_types``.

    Raises:
        ProducerInputError: the file is missing, unreadable or not of that layout.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise ProducerInputError(f"{path}: no such file") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise ProducerInputError(
            f"{path}: not a readable .npz file of plain arrays: {exc}"
        ) from exc
    if "windows" not in arrays:
        found = ", ".join(sorted(arrays)) or "none"
        raise ProducerInputError(f"{path}: no 'windows' array (found: {found})")
    values = arrays["windows"]
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or not np.issubdtype(values.dtype, np.number):
        raise ProducerInputError(
            f"{path}: 'windows' is {values.dtype} of shape {values.shape}; expected numbers of "
            "shape (N, T, C)"
        )
    if not np.isfinite(values).all():
        raise ProducerInputError(f"{path}: 'windows' holds NaN or inf")
    n, _, channels = values.shape
    labels = np.zeros(n, dtype=np.int8)
    if "labels" in arrays:
        raw = np.asarray(arrays["labels"])
        if raw.shape != (n,) or not np.isin(raw, (0, 1)).all():
            raise ProducerInputError(f"{path}: 'labels' must be {n} values of 0 or 1")
        labels = raw.astype(np.int8)
    names = tuple(f"ch{i}" for i in range(channels))
    if "channel_names" in arrays:
        names = tuple(str(x) for x in np.asarray(arrays["channel_names"]).reshape(-1))
        if len(names) != channels:
            raise ProducerInputError(f"{path}: {len(names)} channel_names for {channels} channels")
    if "anomaly_types" in arrays and np.asarray(arrays["anomaly_types"]).shape == (n,):
        types = [str(t) for t in arrays["anomaly_types"]]
    else:
        types = ["labeled" if lbl else NO_ANOMALY for lbl in labels.tolist()]
    return LabeledWindows(values.astype(np.float32), labels, types, names)


def detect_format(path: Path) -> ReplayFormat:
    """``npz`` by suffix; else ``ecg5000`` if the first line is all numbers, else ``csv``.

    Raises:
        ProducerInputError: the file cannot be read.
    """
    if path.suffix.lower() == ".npz":
        return "npz"
    first = next((line for line in read_lines(path) if line.strip()), "")
    cells = first.split(sniff_delimiter(first))
    try:
        [float(c) for c in cells]
    except ValueError:
        return "csv"
    return "ecg5000"


def read_windows(
    path: Path,
    fmt: ReplayFormat = "auto",
    *,
    window: int | None = None,
    step: int | None = None,
    time_column: str | None = None,
    label_column: str | None = None,
    columns: Sequence[str] | None = None,
    delimiter: str | None = None,
) -> LabeledWindows:
    """Read ``path`` in format ``fmt`` as labelled windows (CSVs need ``window``).

    Raises:
        ProducerInputError: a bad file or impossible parameters.
    """
    if fmt not in REPLAY_FORMATS:
        raise ProducerInputError(
            f"unknown format {fmt!r}; choose one of {', '.join(REPLAY_FORMATS)}"
        )
    if delimiter is not None and delimiter not in (",", ";"):
        raise ProducerInputError(f"the separator must be ',' or ';', got {delimiter!r}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "npz":
        return read_npz(path)
    if fmt == "ecg5000":
        return read_ecg5000(path)
    if window is None:
        raise ProducerInputError("a sensor CSV needs --window (rows per window)")
    series = read_sensor_csv(
        path,
        time_column=time_column,
        label_column=label_column,
        columns=columns,
        delimiter=delimiter,
    )
    return sliding_windows(series, window, step)


def load_replay(
    path: Path,
    fmt: ReplayFormat = "auto",
    window: int | None = None,
    stride: int | None = None,
    label_column: str | None = None,
    source_id: str | None = None,
) -> WindowBatch:
    """All the windows of ``path`` as one batch, from one source (the file name by default).

    Raises:
        ProducerInputError: a bad file or impossible parameters.
    """
    windows = read_windows(path, fmt, window=window, step=stride, label_column=label_column)
    batches = list(replay_batches(windows, source_prefix=source_id or path.stem))
    return concat_batches(batches)
