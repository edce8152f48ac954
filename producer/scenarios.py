"""Drift scenarios: how the *normal* data changes over a source's life.

Drift is not an anomaly: windows stay labelled normal unless an anomaly is injected, and the
regime travels in the ``regime`` header so that evaluations can tell "the detector adapted"
from "the detector raised alarms on drift".

Schedules are in per-source windows (``seq``), so a stream is the same whatever the rate:

* ``none``: always ``"baseline"``.
* ``gradual``: from ``start`` the drift level ramps linearly from 0 to 1 over ``length``
  windows, then stays at 1; regime ``"drift:gradual:0.42"`` (the level, 2 decimals).
* ``step``: level 1 from ``start`` on; regime ``"drift:step"``.
* ``recurring``: from ``start``, blocks of ``length`` windows alternate between the drifted
  regime (``"drift:recurring"``, level 1) and ``"baseline"``, drifted first.

What drifts (``target``), at level ``p`` and ``magnitude`` m: ``amplitude`` multiplies the
signal's deviation by ``1 + m*p``; ``baseline`` adds ``m*p`` signal scales; ``noise``
multiplies the noise level by ``1 + m*p``.

Examples:
    >>> import numpy as np
    >>> d = DriftScenario("gradual", start=2, length=4)
    >>> d.level(np.arange(8)).tolist()
    [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> d.regimes(np.array([0, 4]))
    ['baseline', 'drift:gradual:0.50']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from producer.errors import ProducerInputError

__all__ = [
    "BASELINE",
    "DRIFT_KINDS",
    "DRIFT_TARGETS",
    "DriftEffect",
    "DriftKind",
    "DriftScenario",
    "DriftTarget",
]

DriftKind = Literal["none", "gradual", "step", "recurring"]
DriftTarget = Literal["amplitude", "baseline", "noise"]
DRIFT_KINDS: tuple[str, ...] = get_args(DriftKind)
DRIFT_TARGETS: tuple[str, ...] = get_args(DriftTarget)
BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class DriftEffect:
    """Per-window multipliers and offsets a generator applies (arrays of one shape)."""

    amplitude: npt.NDArray[np.float64]
    baseline: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DriftScenario:
    """A drift schedule over per-source sequence numbers.

    Attributes:
        kind: ``none``, ``gradual``, ``step`` or ``recurring``.
        target: what drifts: ``amplitude``, ``baseline`` or ``noise``.
        magnitude: relative size of the change at full drift (0.5 = +50 %).
        start: the per-source ``seq`` where drift begins.
        length: ramp length (gradual) or block length (recurring), in windows.
    """

    kind: DriftKind = "none"
    target: DriftTarget = "amplitude"
    magnitude: float = 0.5
    start: int = 0
    length: int = 100

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ProducerInputError(
                f"unknown drift {self.kind!r}; choose one of {', '.join(DRIFT_KINDS)}"
            )
        if self.target not in DRIFT_TARGETS:
            raise ProducerInputError(
                f"unknown drift target {self.target!r}; choose one of {', '.join(DRIFT_TARGETS)}"
            )
        if self.start < 0 or self.length < 1:
            raise ProducerInputError(
                f"drift start must be >= 0 and length >= 1, got {self.start} and {self.length}"
            )
        if self.target == "noise" and self.magnitude < -1:
            raise ProducerInputError("a noise drift magnitude below -1 would make noise negative")

    def level(self, seq: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Drift level in [0, 1] for each per-source sequence number."""
        s = np.asarray(seq, dtype=np.float64)
        if self.kind == "none":
            return np.zeros_like(s)
        if self.kind == "gradual":
            return np.asarray(np.clip((s - self.start) / self.length, 0.0, 1.0))
        after = s >= self.start
        if self.kind == "step":
            return after.astype(np.float64)
        block = np.floor((s - self.start) / self.length)
        level: npt.NDArray[np.float64] = (after & (block % 2 == 0)).astype(np.float64)
        return level

    def regimes(self, seq: npt.NDArray[np.int64]) -> list[str]:
        """The regime label of each per-source sequence number."""
        lv = self.level(seq)
        if self.kind == "gradual":
            return [BASELINE if p <= 0 else f"drift:gradual:{p:.2f}" for p in lv.tolist()]
        drifted = f"drift:{self.kind}"
        return [drifted if p > 0 else BASELINE for p in lv.tolist()]

    def effect(self, seq: npt.NDArray[np.int64]) -> DriftEffect:
        """The multipliers and offsets a generator applies to each window."""
        change = self.magnitude * self.level(seq)
        ones = np.ones_like(change)
        return DriftEffect(
            amplitude=1.0 + change if self.target == "amplitude" else ones,
            baseline=change if self.target == "baseline" else np.zeros_like(change),
            noise=1.0 + change if self.target == "noise" else ones,
        )
