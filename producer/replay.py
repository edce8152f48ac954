"""Replay: files of windows with known truth, turned into streams.

Files are parsed and windowed by :mod:`detector.datafile` only, the one reader that training
and the backtest use too, so a file replays to the same windows it trains and backtests to
(see that module for the formats, delimiters, label/time/source columns, row ranges and the
time policy for times that repeat or go back: ``clamp`` by default):

* **ECG5000 layout**: no header, one beat per row, the samples then the label in the last
  column, ``1`` = normal; ``0`` (the tutorial's file) or the UCR class (2 R-on-T PVC, 3 PVC,
  4 SP/EB, 5 unclassified: the 5-class file) is anomalous and becomes the anomaly type.
* **Sensor CSV**: a timestamped multichannel series with an optional label column, cut into
  windows of ``--window`` rows every ``--stride`` rows; text labels become anomaly types.
* **NPZ**: windows already cut, as :mod:`producer.filesink` writes them.

Every problem with a file is a :class:`~producer.errors.ProducerInputError` naming the file
(and the line, for text).

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
import numpy.typing as npt

from detector import datafile
from detector.datafile import ECG5000_CLASSES, TimePolicy
from detector.errors import DataFileError
from producer.errors import ProducerInputError
from producer.windows import NO_ANOMALY, LabeledWindows, WindowBatch, concat_batches

__all__ = [
    "ECG5000_CLASSES",
    "REPLAY_FORMATS",
    "REPLAY_REGIME",
    "ReplayFormat",
    "detect_format",
    "load_replay",
    "read_windows",
    "replay_batches",
]

ReplayFormat = Literal["auto", "ecg5000", "csv", "npz"]
REPLAY_FORMATS: tuple[str, ...] = get_args(ReplayFormat)
REPLAY_REGIME = "replay"


def replay_batches(
    windows: LabeledWindows,
    *,
    n_sources: int = 1,
    source_prefix: str = "replay",
    loop: bool = False,
    batch_size: int = 1024,
) -> Iterator[WindowBatch]:
    """The file's windows as a stream: sources round-robin (or the file's own sources, when
    it was read with a source column), ``seq`` per source from 0.

    Args:
        windows: what a reader returned.
        n_sources: sources to spread the windows over: ``source_prefix`` itself when there is
            one, else ``f"{source_prefix}-{i}"``. Must be 1 when the windows carry their own
            sources.
        source_prefix: the source id, or its prefix.
        loop: start again at the first window after the last, forever (``seq`` goes on).
        batch_size: windows per batch.
    """
    if n_sources < 1:
        raise ProducerInputError(f"need at least one source, got {n_sources}")
    if windows.source_ids is not None and n_sources != 1:
        raise ProducerInputError("--sources does not apply when the file names its sources")
    ids = [source_prefix] if n_sources == 1 else [f"{source_prefix}-{i}" for i in range(n_sources)]
    total = len(windows.labels)
    if total == 0:
        raise ProducerInputError("the file holds no complete window")
    passes = itertools.count() if loop else range(1)
    position = 0  # windows emitted so far, over every pass
    next_seq: dict[str, int] = {}  # per file source
    for _ in passes:
        for start in range(0, total, batch_size):
            stop = min(total, start + batch_size)
            index = np.arange(position, position + stop - start, dtype=np.int64)
            position += stop - start
            if windows.source_ids is None:
                sources = [ids[i] for i in (index % n_sources).tolist()]
                seqs = index // n_sources
            else:
                sources = list(windows.source_ids[start:stop])
                seqs = _per_source_seqs(sources, next_seq)
            yield WindowBatch(
                source_ids=sources,
                seqs=seqs,
                values=windows.values[start:stop],
                labels=windows.labels[start:stop],
                anomaly_types=windows.anomaly_types[start:stop],
                regimes=[REPLAY_REGIME] * (stop - start),
                channel_names=windows.channel_names,
                file_time_ms=None if windows.time_ms is None else windows.time_ms[start:stop],
            )


def _per_source_seqs(sources: Sequence[str], next_seq: dict[str, int]) -> npt.NDArray[np.int64]:
    out = np.empty(len(sources), dtype=np.int64)
    for i, source in enumerate(sources):
        out[i] = seq = next_seq.get(source, 0)
        next_seq[source] = seq + 1
    return out


def detect_format(path: Path) -> ReplayFormat:
    """``npz`` by suffix; else ``ecg5000`` if the first line is all numbers, else ``csv``.

    Raises:
        ProducerInputError: the file cannot be read.
    """
    try:
        return datafile.detect_format(path)
    except DataFileError as exc:
        raise ProducerInputError(str(exc)) from exc


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
    source_column: str | None = None,
    rows: tuple[int | None, int | None] | None = None,
    time_policy: TimePolicy = "clamp",
) -> LabeledWindows:
    """Read ``path`` in format ``fmt`` as labelled windows (CSVs need ``window``), through
    :func:`detector.datafile.read_windows`.

    Each window carries its event time (the file's time of its last row; synthetic,
    ``row * 1000 ms``, for files without times) and, with ``source_column``, its source.

    Raises:
        ProducerInputError: a bad file or impossible parameters.
    """
    if fmt not in REPLAY_FORMATS:
        raise ProducerInputError(
            f"unknown format {fmt!r}; choose one of {', '.join(REPLAY_FORMATS)}"
        )
    try:
        ws = datafile.read_windows(
            path,
            fmt=fmt,
            window=window,
            stride=step,
            columns=columns,
            label_column=label_column,
            time_column=time_column,
            source_column=source_column,
            rows=rows,
            time_policy=time_policy,
            delimiter=delimiter,
        )
    except DataFileError as exc:
        raise ProducerInputError(str(exc)) from exc
    labels = ws.anomalous().astype(np.int8)
    types = list(ws.anomaly_types) if ws.anomaly_types is not None else [NO_ANOMALY] * len(ws)
    return LabeledWindows(
        values=ws.values,
        labels=labels,
        anomaly_types=types,
        channel_names=ws.channel_names,
        time_ms=ws.event_time_ms,
        source_ids=ws.source_ids if ws.source_column is not None else None,
        notes=tuple(ws.notes()),
    )


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
