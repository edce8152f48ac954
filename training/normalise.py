"""Per-channel normalisation, fitted on normal training windows only.

The result is the manifest's :class:`~detector.bundle.Normalisation`, which the detector
applies identically (``(x - offset) / scale``):

* ``minmax`` (ECG5000, as the TensorFlow tutorial): offset = min, scale = max - min of each
  channel over all normal training windows. With one channel this is the tutorial's global
  min/max (fitted here on the normal rows only, never on abnormal ones).
* ``standard`` (sensors): offset = mean, scale = standard deviation of each channel.

A constant channel gets scale 1 so it never divides by zero.

Examples:
    >>> import numpy as np
    >>> x = np.array([[[0.0, 10.0], [2.0, 30.0]]], dtype=np.float32)
    >>> fit_normalisation(x, "minmax").scale
    [2.0, 20.0]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from detector.bundle import Normalisation

__all__ = ["NormMethod", "default_method", "fit_normalisation"]

NormMethod = Literal["minmax", "standard", "none"]
MIN_SCALE = 1e-12


def default_method(data_format: str) -> NormMethod:
    """``minmax`` for ECG5000 (the tutorial's scaling), ``standard`` otherwise."""
    return "minmax" if data_format == "ecg5000" else "standard"


def fit_normalisation(
    normal: npt.NDArray[np.floating], method: NormMethod, centre: bool = False
) -> Normalisation:
    """Fit per-channel offset and scale on ``normal`` windows of shape (N, T, C).

    With ``centre`` each window's own per-channel mean is subtracted first (the manifest
    records it, and the detector does the same before the offset and scale).

    Raises:
        ValueError: ``normal`` is empty or not (N, T, C).
    """
    if normal.ndim != 3 or normal.shape[0] == 0:
        raise ValueError(f"need (N, T, C) normal windows with N >= 1, got {normal.shape}")
    x = normal.astype(np.float64)
    if centre:
        x = x - x.astype(np.float32).mean(axis=1, keepdims=True, dtype=np.float32)
    n_channels = x.shape[2]
    if method == "minmax":
        offset = x.min(axis=(0, 1))
        scale = x.max(axis=(0, 1)) - offset
    elif method == "standard":
        offset = x.mean(axis=(0, 1))
        scale = x.std(axis=(0, 1))
    else:
        offset = np.zeros(n_channels)
        scale = np.ones(n_channels)
    scale = np.where(scale > MIN_SCALE, scale, 1.0)
    # Round-trip through float32: the detector computes in float32, so the manifest holds
    # exactly the values both sides use.
    return Normalisation(
        method=method,
        centre=centre,
        offset=[float(v) for v in offset.astype(np.float32)],
        scale=[float(v) for v in scale.astype(np.float32)],
    )
