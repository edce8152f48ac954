"""Rate control: when each window is due, steady or bursty. Pure: time is an argument.

* steady: window ``i`` is due at ``i / rate`` seconds after the start;
* bursty: each second starts with half a second at 1.8x the rate, then half a second at 0.2x
  (the same average rate: 90 % of each second's windows in the first half);
* ``rate <= 0``: every window is due at once (as fast as possible).

The schedule is absolute (due times from the start, not gaps from the previous send), so a
late send is caught up and the average rate does not drift.

Examples:
    >>> p = Pacer(100.0)
    >>> p.due(0), p.due(1), p.due(100)
    (0.0, 0.01, 1.0)
    >>> b = Pacer(10.0, bursty=True)
    >>> [round(b.due(i), 3) for i in (0, 1, 9, 10)]
    [0.0, 0.056, 0.5, 1.0]
    >>> Pacer(0).due(10**6)
    0.0
"""

from __future__ import annotations

import math

__all__ = ["BURST_FACTOR", "Pacer"]

BURST_FACTOR = 1.8  # rate multiplier in the first half of each second (0.2 in the second)


class Pacer:
    """Schedule of send times for a target rate (windows per second).

    Args:
        rate: windows per second; 0 (or less) means as fast as possible.
        bursty: alternate fast and slow half-seconds instead of a steady rate.
    """

    def __init__(self, rate: float, bursty: bool = False) -> None:
        if not math.isfinite(rate):
            raise ValueError(f"rate must be finite, got {rate}")
        self.rate = max(0.0, rate)
        self.bursty = bursty

    def due(self, i: int) -> float:
        """Seconds after the start when window ``i`` (from 0) is due."""
        if self.rate <= 0:
            return 0.0
        if not self.bursty:
            return i / self.rate
        second, k = divmod(i, self.rate)  # k: windows already due within this second
        fast = BURST_FACTOR / 2 * self.rate  # windows of the fast half-second
        if k < fast:
            return float(second + k / (BURST_FACTOR * self.rate))
        return float(second + 0.5 + (k - fast) / ((2 - BURST_FACTOR) * self.rate))
