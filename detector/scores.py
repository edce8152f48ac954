"""What scoring a batch gives: :class:`BatchScores`, and the :class:`Scorer` that gives it.

The one shape shared by the model (:meth:`detector.model.LoadedModel.score`), the core
(:meth:`detector.core.BatchDecider.decide`), the backtest and the bench. Numpy only, so the
core and its tests use it without TensorFlow.

Examples:
    >>> s = BatchScores.empty(window_size=4, n_channels=2)
    >>> len(s), s.step_errors.shape, s.channel_errors.shape
    (0, (0, 4), (0, 2))
    >>> s = BatchScores(np.array([1, 2, 3], np.float32), np.zeros((3, 4), np.float32),
    ...                 np.zeros((3, 2), np.float32))
    >>> s.take(slice(1, 2)).scores.tolist(), len(s.take(np.array([0, 2])))
    ([2.0], 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["BatchScores", "Scorer"]


@dataclass(frozen=True, slots=True)
class BatchScores:
    """Scores of a batch of B windows of T steps and C channels (all float32)."""

    scores: npt.NDArray[np.float32]  # (B,)
    step_errors: npt.NDArray[np.float32]  # (B, T): per-step error, the alert's context
    channel_errors: npt.NDArray[np.float32]  # (B, C): per-channel error, likewise

    @classmethod
    def empty(cls, window_size: int, n_channels: int) -> BatchScores:
        """The scores of a batch with no window."""
        return cls(
            np.zeros(0, np.float32),
            np.zeros((0, window_size), np.float32),
            np.zeros((0, n_channels), np.float32),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: slice | npt.NDArray[np.intp]) -> BatchScores:
        """The scores of some windows of the batch (a slice or an index array)."""
        return BatchScores(
            np.asarray(self.scores[index]),
            np.asarray(self.step_errors[index]),
            np.asarray(self.channel_errors[index]),
        )


class Scorer(Protocol):
    """Scores a (B, T, C) batch of raw (un-normalised) windows in one call.

    :class:`detector.model.LoadedModel` is one; tests of the core pass any object with a
    ``score`` method.
    """

    def score(self, batch: npt.NDArray[np.float32]) -> BatchScores: ...
