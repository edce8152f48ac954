"""Back-off for retrying Kafka calls on the detector's running path.

Once running, the detector retries every Kafka error that a later attempt may fix (the
broker restarting, a coordinator still loading, a partition leader moving): it waits, then
tries again, for as long as it takes, until a stop is requested. The waits grow from
``initial_s`` to ``max_s``; the cap is small so that, once the broker is back, the next
attempt comes within seconds (a broker outage of any length is recovered from within
``max_s`` of its end, plus the call itself).

Examples:
    >>> backoff = Backoff(initial_s=0.5, max_s=5.0)
    >>> [backoff.next_delay() for _ in range(6)]
    [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    >>> backoff.reset(); backoff.next_delay()
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Exponential back-off, capped.

    Attributes:
        initial_s: the first wait.
        max_s: the longest wait.
        factor: growth per attempt.
        attempts: waits handed out since the last :meth:`reset`.
    """

    initial_s: float = 0.5
    max_s: float = 5.0
    factor: float = 2.0
    attempts: int = 0

    def next_delay(self) -> float:
        """The wait before the next attempt (counts an attempt)."""
        delay = min(self.max_s, self.initial_s * self.factor ** min(self.attempts, 30))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a success)."""
        self.attempts = 0
