"""Windows for the benchmarks: the simulator's streams and the ECG5000 test split, as records.

Simulated windows come from the producer's Python API (:func:`producer.simulate.make_batches`)
and go on the wire as the producer writes them (:func:`producer.kafka_io.encode_window`,
ground truth in the ``label`` / ``anomaly-type`` / ``regime`` headers). Event times are
synthetic: ``BASE_TIME_MS + seq * PERIOD_MS`` per source, from the start of yesterday (UTC):
the producer stamps records with event time, and a broker deletes records older than its
retention (7 days by default) and refuses records too far in the future (1 hour in Kafka 4).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from producer.scenarios import DriftScenario
from producer.simulate import make_batches
from producer.windows import WindowBatch

__all__ = [
    "BASE_TIME_MS",
    "ECG5000_DEFAULT",
    "PERIOD_MS",
    "SIM_SEED",
    "SIM_SOURCES",
    "Ecg5000Split",
    "Encoding",
    "ecg5000_path",
    "event_time_ms",
    "load_ecg5000_test",
    "sim_batches",
    "train_rounds",
]

Encoding = Literal["binary", "json"]
DAY_MS = 86_400_000
BASE_TIME_MS = (time.time_ns() // 1_000_000 // DAY_MS - 1) * DAY_MS
PERIOD_MS = 1000  # one window per second per source, in event time
SIM_SEED = 101  # the simulated patients: the bundle is trained on them and streams use them
SIM_SOURCES = 16
ECG5000_DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ecg5000" / "ecg5000.csv"
)


def sim_batches(
    n: int,
    *,
    skip_rounds: int = 0,
    anomaly_rate: float = 0.0,
    anomaly_types: list[str] | None = None,
    drift: DriftScenario | None = None,
) -> Iterator[WindowBatch]:
    """``n`` simulated ECG windows (140 x 1) of the :data:`SIM_SOURCES` patients.

    The sources and seed are those the simulated-ECG bundle is trained on (its first
    ``train_rounds`` windows per source), so the model knows these patients, as a deployed
    one would; ``skip_rounds`` drops that many leading rounds (pass the training rounds to
    score only beats the model never saw). ``seq`` keeps counting from the stream's start.
    """
    stream = make_batches(
        "ecg",
        n + skip_rounds * SIM_SOURCES,
        seed=SIM_SEED,
        anomaly_rate=anomaly_rate,
        anomaly_types=anomaly_types,
        drift=drift,
        n_sources=SIM_SOURCES,
    )
    to_skip = skip_rounds * SIM_SOURCES
    for batch in stream:
        if to_skip >= len(batch):
            to_skip -= len(batch)
            continue
        yield _tail(batch, to_skip) if to_skip else batch
        to_skip = 0


def train_rounds(train_windows: int) -> int:
    """Rounds (windows per source) of the simulated-ECG bundle's training data."""
    return -(-train_windows // SIM_SOURCES)


def _tail(batch: WindowBatch, start: int) -> WindowBatch:
    times = batch.file_time_ms
    return WindowBatch(
        list(batch.source_ids[start:]),
        batch.seqs[start:],
        batch.values[start:],
        batch.labels[start:],
        list(batch.anomaly_types[start:]),
        list(batch.regimes[start:]),
        batch.channel_names,
        None if times is None else times[start:],
    )


def event_time_ms(seq: int, period_ms: int = PERIOD_MS, base_ms: int = BASE_TIME_MS) -> int:
    """Synthetic event time of a source's window ``seq``."""
    return base_ms + seq * period_ms


def ecg5000_path() -> Path:
    """``$ECG5000_PATH`` or the shared copy beside the repository."""
    env = os.environ.get("ECG5000_PATH")
    return Path(env) if env else ECG5000_DEFAULT


@dataclass(frozen=True, slots=True)
class Ecg5000Split:
    """The tutorial's test split of ECG5000.

    Attributes:
        values: (N, 140, 1) float32 beats, raw (the bundle normalises).
        labels: (N,) 1 anomalous, 0 normal (the file's last column is 1 for normal).
        rows: (N,) row index of each beat in the file.
        how: the split, as training describes it.
    """

    values: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    rows: npt.NDArray[np.int64]
    how: str


def load_ecg5000_test(path: Path) -> Ecg5000Split:
    """The tutorial's test split, through training's own loader (the split the report used)."""
    from training.data import load_dataset, split_dataset

    data = load_dataset(path, "ecg5000")
    split = split_dataset(data)
    if data.labels is None:
        raise ValueError(f"{path}: ECG5000 without labels")
    rows = np.asarray(split.test, dtype=np.int64)
    return Ecg5000Split(
        np.asarray(data.windows[rows], dtype=np.float32),
        data.labels[rows].astype(np.int8),
        rows,
        split.how,
    )
