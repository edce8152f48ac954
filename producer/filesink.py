"""Windows to a file, for ``training fit`` (NPZ) or inspection (JSON lines).

NPZ layout (what :func:`training.data.load_dataset` reads): ``windows`` float32 (N, T, C),
``labels`` int8 (N,) 1 anomalous, ``channel_names``, ``anomaly_types``, ``source_ids``,
``seqs``, ``regimes``. Written without compression or timestamps, so the same seed gives the
same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson

from producer.windows import WindowBatch

__all__ = ["write_jsonl", "write_npz"]


def write_npz(path: Path, batch: WindowBatch) -> None:
    """Write ``batch`` as NPZ (deterministic bytes)."""
    buf = io.BytesIO()
    np.savez(
        buf,
        windows=batch.values.astype(np.float32, copy=False),
        labels=batch.labels.astype(np.int8, copy=False),
        channel_names=np.asarray(batch.channel_names, dtype=str),
        anomaly_types=np.asarray(batch.anomaly_types, dtype=str),
        source_ids=np.asarray(batch.source_ids, dtype=str),
        seqs=batch.seqs.astype(np.int64, copy=False),
        regimes=np.asarray(batch.regimes, dtype=str),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def write_jsonl(path: Path, batch: WindowBatch) -> None:
    """Write one JSON document per window, with its ground truth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for w in batch:
            fh.write(
                orjson.dumps(
                    {
                        "source_id": w.source_id,
                        "seq": w.seq,
                        "values": w.values,
                        "label": w.label,
                        "anomaly_type": w.anomaly_type,
                        "regime": w.regime,
                    },
                    option=orjson.OPT_SERIALIZE_NUMPY,
                )
            )
            fh.write(b"\n")
