"""The anomaly catalogue and the choice of which windows get one.

ECG anomalies change how a beat is generated (see :mod:`producer.ecg`); sensor anomalies that
need the generator's internals (``frequency_change``, ``broken_correlation``) are made in
:mod:`producer.sensors`, the others are applied here to a finished window.

ECG types:
    ``premature_beat`` (ectopic-like: early, no P wave, wide QRS, inverted T),
    ``st_elevation``, ``st_depression``, ``missing_p_wave``, ``noise_burst``.
Sensor types:
    ``spike``, ``level_shift``, ``stuck_value``, ``noise_burst``, ``broken_correlation``,
    ``frequency_change``.

Examples:
    >>> import numpy as np
    >>> kinds = choose_anomalies(np.random.default_rng(0), 1000, 0.1, ("spike", "stuck_value"))
    >>> 60 < sum(k != "none" for k in kinds) < 140
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from producer.errors import ProducerInputError
from producer.windows import NO_ANOMALY

__all__ = [
    "ECG_ANOMALIES",
    "SENSOR_ANOMALIES",
    "StreamKind",
    "apply_sensor_anomaly",
    "choose_anomalies",
    "validate_anomaly_types",
]

StreamKind = Literal["ecg", "sensor"]

ECG_ANOMALIES: tuple[str, ...] = (
    "premature_beat",
    "st_elevation",
    "st_depression",
    "missing_p_wave",
    "noise_burst",
)
SENSOR_ANOMALIES: tuple[str, ...] = (
    "spike",
    "level_shift",
    "stuck_value",
    "noise_burst",
    "broken_correlation",
    "frequency_change",
)


def validate_anomaly_types(kind: StreamKind, types: Sequence[str] | None) -> tuple[str, ...]:
    """The anomaly types to inject for ``kind`` (all of them when ``types`` is None or empty).

    Raises:
        ProducerInputError: an unknown stream kind or anomaly type.
    """
    if kind == "ecg":
        known = ECG_ANOMALIES
    elif kind == "sensor":
        known = SENSOR_ANOMALIES
    else:
        raise ProducerInputError(f"unknown stream kind {kind!r}; choose ecg or sensor")
    if not types:
        return known
    unknown = [t for t in types if t not in known]
    if unknown:
        raise ProducerInputError(
            f"unknown {kind} anomaly type {unknown[0]!r}; choose from {', '.join(known)}"
        )
    return tuple(dict.fromkeys(types))


def choose_anomalies(
    rng: np.random.Generator, n: int, rate: float, types: Sequence[str]
) -> npt.NDArray[np.str_]:
    """For each of ``n`` windows, an anomaly type (with probability ``rate``) or ``"none"``.

    The type is drawn uniformly from ``types``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ProducerInputError(f"anomaly rate must be within [0, 1], got {rate}")
    hit = rng.random(n) < rate
    pick = rng.integers(0, len(types), size=n)
    out = np.full(n, NO_ANOMALY, dtype=f"<U{max(len(NO_ANOMALY), *map(len, types))}")
    out[hit] = np.asarray(types)[pick[hit]]
    return out


def apply_sensor_anomaly(
    rng: np.random.Generator,
    window: npt.NDArray[np.float64],
    kind: str,
    scale: npt.NDArray[np.float64],
    noise_sd: float,
) -> None:
    """Inject a window-level sensor anomaly in place.

    Args:
        rng: the chunk's random generator.
        window: (T, C) samples, modified in place.
        kind: ``spike``, ``level_shift``, ``stuck_value`` or ``noise_burst``.
        scale: (C,) each channel's signal scale (about its standard deviation).
        noise_sd: the source's normal noise level, in signal scales.
    """
    length, channels = window.shape
    ch = int(rng.integers(channels))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "spike":
        pos = int(rng.integers(length))
        width = int(rng.integers(1, 3))
        window[pos : pos + width, ch] += sign * rng.uniform(5.0, 8.0) * scale[ch]
    elif kind == "level_shift":
        pos = int(rng.integers(length // 4, max(length // 4 + 1, 3 * length // 4)))
        window[pos:, ch] += sign * rng.uniform(2.5, 4.0) * scale[ch]
    elif kind == "stuck_value":
        pos = int(rng.integers(0, max(1, length // 3)))
        window[pos:, ch] = window[pos, ch]
    elif kind == "noise_burst":
        seg = int(length * rng.uniform(0.3, 0.5))
        pos = int(rng.integers(0, length - seg + 1))
        sd = rng.uniform(0.6, 1.0) + 4 * noise_sd
        window[pos : pos + seg] += rng.normal(0.0, sd, size=(seg, channels)) * scale
    else:
        raise ProducerInputError(f"{kind!r} is not a window-level sensor anomaly")
