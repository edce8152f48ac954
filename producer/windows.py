"""Labelled windows as the simulator and the replayer hand them to a sink.

A :class:`WindowBatch` holds many windows as arrays (generation is vectorised); iterating it
yields one :class:`LabeledWindow` per window, in stream order.

Examples:
    >>> import numpy as np
    >>> b = WindowBatch(["a", "b"], np.array([0, 0]), np.zeros((2, 3, 1), np.float32),
    ...                 np.array([0, 1], np.int8), ["none", "spike"], ["baseline"] * 2, ("x",))
    >>> [(w.source_id, w.label, w.anomaly_type) for w in b]
    [('a', 0, 'none'), ('b', 1, 'spike')]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["NO_ANOMALY", "LabeledWindow", "LabeledWindows", "WindowBatch", "concat_batches"]

NO_ANOMALY = "none"


class LabeledWindow(NamedTuple):
    """One window with its ground truth.

    Attributes:
        source_id: the sensor or patient (the Kafka record key).
        seq: per-source sequence number, from 0.
        values: float32 samples of shape (time, channels).
        label: 1 anomalous (an anomaly was injected or the file says so), 0 normal.
        anomaly_type: e.g. ``"st_elevation"``, or ``"none"``.
        regime: the drift regime, e.g. ``"baseline"`` or ``"drift:gradual:0.42"``.
        file_time_ms: the window's own timestamp (replayed CSVs), else None.
    """

    source_id: str
    seq: int
    values: npt.NDArray[np.float32]
    label: int
    anomaly_type: str
    regime: str
    file_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class WindowBatch:
    """Consecutive windows of a stream, as arrays.

    Attributes:
        source_ids: (N,) source of each window.
        seqs: (N,) int64 per-source sequence numbers.
        values: (N, T, C) float32 samples.
        labels: (N,) int8, 1 anomalous, 0 normal.
        anomaly_types: (N,) anomaly type of each window (``"none"`` when normal).
        regimes: (N,) drift regime of each window.
        channel_names: the C channel names.
        file_time_ms: (N,) int64 timestamps from a replayed file, or None.
    """

    source_ids: Sequence[str]
    seqs: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    anomaly_types: Sequence[str]
    regimes: Sequence[str]
    channel_names: tuple[str, ...]
    file_time_ms: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __iter__(self) -> Iterator[LabeledWindow]:
        times = self.file_time_ms
        for i in range(len(self)):
            yield LabeledWindow(
                self.source_ids[i],
                int(self.seqs[i]),
                self.values[i],
                int(self.labels[i]),
                self.anomaly_types[i],
                self.regimes[i],
                None if times is None else int(times[i]),
            )

    def head(self, n: int) -> WindowBatch:
        """The first ``n`` windows."""
        return WindowBatch(
            list(self.source_ids[:n]),
            self.seqs[:n],
            self.values[:n],
            self.labels[:n],
            list(self.anomaly_types[:n]),
            list(self.regimes[:n]),
            self.channel_names,
            None if self.file_time_ms is None else self.file_time_ms[:n],
        )


def concat_batches(batches: Sequence[WindowBatch]) -> WindowBatch:
    """One batch holding ``batches`` in order (they must share a window shape).

    Raises:
        ValueError: no batches, or batches of different shapes or channels.
    """
    if not batches:
        raise ValueError("no batches to concatenate")
    first = batches[0]
    if any(b.channel_names != first.channel_names for b in batches):
        raise ValueError("batches have different channels")
    times = None
    if all(b.file_time_ms is not None for b in batches):
        times = np.concatenate([b.file_time_ms for b in batches if b.file_time_ms is not None])
    return WindowBatch(
        [s for b in batches for s in b.source_ids],
        np.concatenate([b.seqs for b in batches]).astype(np.int64, copy=False),
        np.concatenate([b.values for b in batches]).astype(np.float32, copy=False),
        np.concatenate([b.labels for b in batches]).astype(np.int8, copy=False),
        [t for b in batches for t in b.anomaly_types],
        [r for b in batches for r in b.regimes],
        first.channel_names,
        times,
    )


@dataclass(frozen=True, slots=True)
class LabeledWindows:
    """Windows read from a file, before they are given sources and sequence numbers.

    Attributes:
        values: (N, T, C) float32 samples.
        labels: (N,) int8, 1 anomalous.
        anomaly_types: (N,) ``"none"`` when normal.
        channel_names: the C channel names.
        time_ms: (N,) each window's event time (its last row's time), when known.
        source_ids: (N,) each window's source, when the file names them (a source column).
        notes: warnings about the reading (time policy applied, text columns skipped).
    """

    values: npt.NDArray[np.float32]  # (N, T, C)
    labels: npt.NDArray[np.int8]  # (N,)
    anomaly_types: list[str]
    channel_names: tuple[str, ...]
    time_ms: npt.NDArray[np.int64] | None = None  # (N,) the window's last timestamp
    source_ids: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()
