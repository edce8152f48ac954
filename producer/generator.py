"""What the simulator asks of a signal generator: :class:`WindowGenerator`.

A generator makes ``n_sources`` continuous series and cuts them into windows of ``window``
samples; each :meth:`~WindowGenerator.generate` call makes the next ``R`` windows (rounds) of
every source, so the series continue from call to call. The kinds are
:class:`~producer.ecg.EcgGenerator` and :class:`~producer.sensors.SensorGenerator`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

from producer.scenarios import DriftEffect

__all__ = ["WindowGenerator"]


class WindowGenerator(ABC):
    """Windows for ``n_sources`` sources; each call continues every source's series.

    Args:
        n_sources: number of independent sources.
        window: samples per window.
    """

    def __init__(self, n_sources: int, window: int) -> None:
        self.n_sources = n_sources
        self.window = window

    @property
    @abstractmethod
    def channel_names(self) -> tuple[str, ...]:
        """One name per channel of a window."""

    @abstractmethod
    def generate(
        self, rng: np.random.Generator, anomaly_types: npt.NDArray[np.str_], effect: DriftEffect
    ) -> npt.NDArray[np.float32]:
        """The next windows of every source.

        Args:
            rng: random generator for this chunk.
            anomaly_types: (S, R) anomaly to give each window, ``"none"`` for a normal one.
            effect: the drift of each window, arrays of shape (S, R): ``amplitude`` multiplies
                the signal, ``baseline`` offsets it (in the source's signal scale), ``noise``
                multiplies the noise level; each generator says what its scale is.

        Returns:
            (S, R, window, channels) float32 samples; (S, R, window) for a one-channel kind.
        """
