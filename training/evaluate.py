"""Evaluation: ranking and thresholded metrics, and ``training evaluate`` of a saved bundle.

A window is flagged when its score is strictly above the threshold, as in the detector.
Metrics that need a class that is absent (AUROC without anomalies, recall and precision
without anomalous windows) are ``None``, not a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.datafile import TimePolicy
from training.data import Dataset, Format, load_dataset, split_dataset

__all__ = ["Metrics", "evaluate_bundle", "metrics", "summary_row"]

Metrics = dict[str, float | int | None]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def metrics(
    scores: npt.NDArray[np.floating], anomalous: npt.NDArray[np.bool_], threshold: float
) -> Metrics:
    """AUROC, average precision, and at ``threshold``: FAR, recall, precision, F1, accuracy.

    Args:
        scores: (N,) anomaly scores.
        anomalous: (N,) ground truth, True = anomalous.
        threshold: flag when ``score > threshold``.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(anomalous, dtype=bool)
    flagged = s > threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    tn = int(np.sum(~flagged & ~y))
    # Without an anomalous window every flag is a false alarm: precision would be a made-up
    # 0 (the false-alarm rate already says it), as recall would be.
    precision = _ratio(tp, tp + fp) if tp + fn else None
    recall = _ratio(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    auroc = ap = None
    if 0 < y.sum() < y.size:
        from sklearn.metrics import average_precision_score, roc_auc_score

        auroc = float(roc_auc_score(y, s))
        ap = float(average_precision_score(y, s))
    return {
        "auroc": auroc,
        "average_precision": ap,
        "threshold": float(threshold),
        "false_alarm_rate": _ratio(fp, fp + tn),
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "accuracy": _ratio(tp + tn, y.size),
        "n_normal": fp + tn,
        "n_anomalous": tp + fn,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_row(
    name: str, m: Metrics, params: int | None = None, seconds: float | None = None
) -> str:
    """One aligned line of the run's summary table."""
    cells = [
        f"{name:<14}",
        f"{_fmt(m.get('auroc')):>7}",
        f"{_fmt(m.get('average_precision')):>7}",
        f"{_fmt(m.get('false_alarm_rate')):>7}",
        f"{_fmt(m.get('recall'), 3):>6}",
        f"{_fmt(m.get('precision'), 3):>9}",
        f"{_fmt(m.get('f1'), 3):>6}",
        f"{_fmt(m.get('accuracy'), 3):>6}",
        f"{params if params is not None else '':>8}",
        f"{'' if seconds is None else f'{seconds:.0f}':>7}",
    ]
    return " ".join(cells)


SUMMARY_HEADER = (
    f"{'':<14} {'AUROC':>7} {'AP':>7} {'FAR':>7} {'recall':>6} {'precision':>9} {'F1':>6} "
    f"{'acc':>6} {'params':>8} {'train s':>7}"
)


def evaluate_bundle(
    bundle: Path,
    data_path: Path,
    fmt: Format = "auto",
    window: int | None = None,
    stride: int | None = None,
    label_column: str | None = None,
    part: str = "test",
    test_fraction: float = 0.2,
    split_seed: int = 21,
    *,
    columns: Sequence[str] | None = None,
    time_column: str | None = None,
    source_column: str | None = None,
    rows: tuple[int | None, int | None] | None = None,
    time_policy: TimePolicy = "clamp",
) -> dict[str, Any]:
    """Score a data set with a saved bundle through the detector's loader.

    Args:
        bundle: the bundle directory.
        data_path: the data file (any format :func:`training.data.load_dataset` reads).
        fmt: its format.
        window: csv window length (default: the bundle's window size).
        stride: csv stride.
        label_column: csv label column.
        part: ``test`` (the same split ``fit`` held out) or ``all``.
        test_fraction: as in ``fit`` (0: no test set; use ``part="all"``).
        split_seed: as in ``fit``.
        columns: csv channel columns, as in ``fit``.
        time_column: csv time column, as in ``fit``.
        source_column: csv source column, as in ``fit``.
        rows: the data rows, as in ``fit``.
        time_policy: as in ``fit``.

    Raises:
        BundleError: the bundle does not verify or load.
        DataError: the data cannot be read or does not fit the bundle's window shape.
    """
    from detector.model import load_bundle
    from training.errors import DataError

    loaded = load_bundle(bundle)
    m = loaded.manifest
    data: Dataset = load_dataset(
        data_path,
        fmt,
        window or m.window_size,
        stride,
        label_column,
        columns=columns,
        time_column=time_column,
        source_column=source_column,
        rows=rows,
        time_policy=time_policy,
    )
    if (data.window_size, data.n_channels) != (m.window_size, m.n_channels):
        raise DataError(
            data_path,
            f"windows of shape ({data.window_size}, {data.n_channels}); the bundle scores "
            f"({m.window_size}, {m.n_channels})",
        )
    idx = np.arange(len(data.windows))
    if part == "test":
        idx = split_dataset(data, test_fraction, split_seed).test
        if not len(idx):
            raise DataError(data_path, "no test windows (test fraction 0): use --part all")
    scores = loaded.score(data.windows[idx]).scores
    result = metrics(scores, data.anomalous()[idx], m.threshold.value)
    return {
        "bundle": str(bundle),
        "model": m.model_id,
        "data": str(data_path),
        "part": part,
        "windows": len(idx),
        "threshold": m.threshold.model_dump(),
        "metrics": result,
    }
