"""Replay files as window streams: ECG5000 layout, timestamped sensor CSVs, NPZ windows.

Parsing and windowing are :func:`training.data.load_dataset` (pure numpy), so the replayer and
the trainer read a file the same way; its errors become :class:`ProducerInputError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from producer.errors import ProducerInputError
from producer.windows import NO_ANOMALY, WindowBatch

__all__ = ["load_replay"]


def load_replay(
    path: Path,
    fmt: str = "auto",
    window: int | None = None,
    stride: int | None = None,
    label_column: str | None = None,
    source_id: str | None = None,
) -> WindowBatch:
    """The windows of ``path`` in file order, with labels (1 anomalous) where the file has them.

    Raises:
        ProducerInputError: the file is missing, malformed or the parameters impossible.
    """
    from training.data import load_dataset
    from training.errors import DataError

    try:
        data = load_dataset(path, fmt, window, stride, label_column)  # type: ignore[arg-type]
    except DataError as exc:
        raise ProducerInputError(str(exc)) from exc
    n = len(data.windows)
    if n == 0:
        raise ProducerInputError(f"{path}: no complete window")
    labels = data.anomalous().astype(np.int8)
    source = source_id or path.stem
    return WindowBatch(
        source_ids=[source] * n,
        seqs=np.arange(n, dtype=np.int64),
        values=data.windows.astype(np.float32, copy=False),
        labels=labels,
        anomaly_types=["labelled" if lbl else NO_ANOMALY for lbl in labels.tolist()],
        regimes=["replay"] * n,
        channel_names=tuple(data.channel_names),
    )
