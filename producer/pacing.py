"""Rate control: when the next window is due, steady or in bursts."""

from __future__ import annotations

import math

__all__ = ["Pacer"]


class Pacer:
    """Schedule of send times for a target rate (windows per second).

    ``bursty`` alternates half-seconds at 1.8x and 0.2x the rate (same average).
    ``rate <= 0`` means as fast as possible. Pure: time comes in as an argument.

    Examples:
        >>> p = Pacer(100.0)
        >>> p.due(0), p.due(1), p.due(100)
        (0.0, 0.01, 1.0)
        >>> Pacer(0).due(10**6)
        0.0
    """

    def __init__(self, rate: float, bursty: bool = False) -> None:
        self.rate = rate
        self.bursty = bursty

    def due(self, i: int) -> float:
        """Seconds after the start when window ``i`` (from 0) should be sent."""
        if self.rate <= 0:
            return 0.0
        if not self.bursty:
            return i / self.rate
        per_period = self.rate  # windows per 1 s period: 0.9 s worth fast, 0.1 s worth slow
        period, k = divmod(i, per_period)
        fast = 0.9 * per_period  # windows sent in the first half-second at 1.8x
        slow = 0.5 + (k - fast) / (0.2 * self.rate)
        offset = k / (1.8 * self.rate) if k < fast else slow
        return float(period + offset) if math.isfinite(offset) else float(period)
