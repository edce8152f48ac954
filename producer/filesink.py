"""Windows to a file: NPZ for ``training fit``, JSON lines for inspection or other tools.

NPZ layout (agreed with training; :func:`training.data.load_dataset` reads it):
``windows`` float32 (N, T, C), ``labels`` int8 (N,) 1 anomalous / 0 normal,
``channel_names`` str (C,), and ``anomaly_types``, ``regimes``, ``source_ids`` str (N,),
``seqs`` int64 (N,), ``event_time_ms`` int64 (N,). Strings are fixed-width unicode arrays,
so ``np.load`` needs no pickle.

JSON lines: one window per line in the detector's JSON contract (:func:`encode_json`), the
ground truth in ``metadata`` (``label``, ``anomaly-type``, ``regime``).

Both are byte-for-byte reproducible: the NPZ archive is written with fixed member timestamps
(``numpy.savez`` stamps the current time), and event times come from a synthetic clock
(:func:`synthetic_event_times`) rather than the wall clock.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from detector.messages import H_ANOMALY_TYPE, H_LABEL, H_REGIME, encode_json
from producer.errors import ProducerInputError
from producer.windows import WindowBatch

__all__ = [
    "FILE_SUFFIXES",
    "SYNTHETIC_EPOCH_MS",
    "synthetic_event_times",
    "write_file",
    "write_jsonl",
    "write_npz",
]

SYNTHETIC_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
FILE_SUFFIXES = (".npz", ".jsonl", ".ndjson")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry


def synthetic_event_times(n: int, rate: float) -> npt.NDArray[np.int64]:
    """Deterministic event times (ms): window ``i`` at ``i / rate`` s after 2024-01-01 UTC.

    With ``rate <= 0`` windows are 1 ms apart.
    """
    step_ms = 1000.0 / rate if rate > 0 else 1.0
    return SYNTHETIC_EPOCH_MS + np.round(np.arange(n) * step_ms).astype(np.int64)


def _write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL in the path
        with contextlib.suppress(OSError, ValueError):
            tmp.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ProducerInputError(f"cannot write {path}: {reason}") from exc


def _npz_bytes(arrays: Mapping[str, npt.NDArray[np.generic]], fh: BinaryIO) -> None:
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as member:
                # typed in numpy >= 2.4 only: go through Any so both type-check alike
                npy_format: Any = np.lib.format
                npy_format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def write_npz(
    path: Path, batch: WindowBatch, event_time_ms: npt.NDArray[np.int64] | None = None
) -> None:
    """Write ``batch`` as NPZ (deterministic bytes; replaces ``path`` atomically).

    Args:
        path: the ``.npz`` file.
        batch: the windows.
        event_time_ms: (N,) event times; :func:`synthetic_event_times` at 1 kHz when None.

    Raises:
        ProducerInputError: the file cannot be written.
    """
    times = synthetic_event_times(len(batch), 0) if event_time_ms is None else event_time_ms
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "windows": np.ascontiguousarray(batch.values, dtype=np.float32),
        "labels": np.asarray(batch.labels, dtype=np.int8),
        "channel_names": np.asarray(batch.channel_names, dtype=str),
        "anomaly_types": np.asarray(list(batch.anomaly_types), dtype=str),
        "regimes": np.asarray(list(batch.regimes), dtype=str),
        "source_ids": np.asarray(list(batch.source_ids), dtype=str),
        "seqs": np.asarray(batch.seqs, dtype=np.int64),
        "event_time_ms": np.asarray(times, dtype=np.int64),
    }
    _write_atomically(path, lambda fh: _npz_bytes(arrays, fh))


def write_jsonl(
    path: Path, batch: WindowBatch, event_time_ms: npt.NDArray[np.int64] | None = None
) -> None:
    """Write one JSON window per line (the detector's contract), truth in ``metadata``.

    Raises:
        ProducerInputError: the file cannot be written.
    """
    times = synthetic_event_times(len(batch), 0) if event_time_ms is None else event_time_ms

    def write(fh: BinaryIO) -> None:
        lines = []
        for w, t in zip(batch, times.tolist(), strict=True):
            truth = {H_LABEL: str(w.label), H_ANOMALY_TYPE: w.anomaly_type, H_REGIME: w.regime}
            lines.append(encode_json(w.source_id, w.seq, int(t), w.values, truth))
        fh.write(b"\n".join(lines) + (b"\n" if lines else b""))

    _write_atomically(path, write)


def write_file(
    path: Path, batch: WindowBatch, event_time_ms: npt.NDArray[np.int64] | None = None
) -> None:
    """Write ``batch`` in the format the suffix names (``.npz``, ``.jsonl`` or ``.ndjson``).

    Raises:
        ProducerInputError: another suffix, or the file cannot be written.
    """
    suffix = path.suffix.lower()
    if suffix == ".npz":
        write_npz(path, batch, event_time_ms)
    elif suffix in (".jsonl", ".ndjson"):
        write_jsonl(path, batch, event_time_ms)
    else:
        raise ProducerInputError(f"--out {path}: use a .npz or .jsonl file name")
