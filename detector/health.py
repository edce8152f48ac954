"""Liveness and readiness of the detector: what ``/healthz`` and ``/readyz`` answer, and why.

Pure bookkeeping: no Kafka, no clock (every call takes ``now``, monotonic seconds). The
service loop reports its iterations, the input it reads, its commits and its consumer lag;
the broker watch (:mod:`detector.broker_watch`) reports probes; the HTTP endpoint, the
metrics and the watch's log lines read the verdicts.

- **live** (``/healthz``): the loop iterated within ``loop_stale_s``, not counting a broker
  outage (the loop waits for the broker by design then: in a commit, a retry back-off, a
  state restore; its clock starts again when the broker answers). Failing means the process
  is stuck; restarting it is the cure.
- **ready** (``/readyz``): the loop is live, partitions were assigned (and the service is not
  closing), the broker answers, and the detector is not *stalled*: input is waiting (records
  read after the last commit, or consumer lag measured after it) while nothing has been
  committed for ``stall_s``. Failing means windows are not being scored and alerts are not
  flowing; a restart does not bring a broker back, so page rather than restart on it.

Examples:
    >>> h = HealthTracker(HealthSettings(stall_s=60), now=0.0)
    >>> h.set_consuming(True, now=1.0)
    >>> h.ready(now=2.0)
    Verdict(ok=True, reason='ready')
    >>> h.consumed(now=3.0)        # a batch is read, and never committed
    >>> h.ready(now=61.5).ok       # 60.5 s since consuming began, with input waiting
    False
    >>> h.committed(now=62.0)
    >>> h.ready(now=62.5).ok
    True
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["HealthSettings", "HealthTracker", "Verdict"]


class HealthSettings(BaseModel):
    """When the health endpoints fail (env ``DETECTOR_HEALTH__*``)."""

    model_config = ConfigDict(extra="forbid")

    stall_s: float = Field(
        60.0,
        gt=0,
        description="/readyz fails when input is waiting (consumer lag, or records read) and "
        "nothing has been committed for this long.",
    )
    loop_stale_s: float = Field(
        120.0,
        gt=0,
        description="/healthz fails when the consume loop has not iterated for this long, "
        "counted from the later of its last iteration and the end of the last broker outage "
        "(the loop waits for an unreachable broker by design). Above the longest legitimate "
        "block: a transaction commit, a retry back-off, a state restore.",
    )
    probe_interval_s: float = Field(
        5.0, gt=0, description="The broker watch asks for the windows topic's metadata this often."
    )
    probe_timeout_s: float = Field(
        5.0, gt=0, description="A probe not answered within this is a failed probe."
    )


class Verdict(NamedTuple):
    """One health answer: ok, and why (the endpoint's body)."""

    ok: bool
    reason: str


class HealthTracker:
    """What the loop and the broker watch report, and the verdicts drawn from it.

    Thread-safe: the loop, the publisher thread, the broker watch and the HTTP handlers call
    it concurrently.

    Args:
        settings: the thresholds of the verdicts.
        now: monotonic seconds at creation (the loop counts as alive from here).
    """

    def __init__(self, settings: HealthSettings, now: float) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._created = now
        self._beat = now
        self._consuming = False
        self._consuming_since: float | None = None
        self._consumed_at: float | None = None
        self._committed_at: float | None = None
        self._lag: int | None = None
        self._lag_at: float | None = None
        self._down_since: float | None = None
        self._back_at: float | None = None  # when the last outage ended
        self._last_error = ""

    # -- what the loop reports --------------------------------------------------------------

    def beat(self, now: float) -> None:
        """The loop iterated (called every iteration: one assignment, no lock)."""
        self._beat = now

    def set_consuming(self, consuming: bool, now: float) -> None:
        """Partitions were assigned (True), or the service is closing (False).

        Only a change starts the stall clock: a re-assignment after a rewind does not.
        """
        with self._lock:
            if consuming and not self._consuming:
                self._consuming_since = now
            self._consuming = consuming

    def consumed(self, now: float) -> None:
        """A non-empty batch was read (it is waiting until a commit follows)."""
        with self._lock:
            self._consumed_at = now

    def forget_input(self) -> None:
        """Partitions were revoked: records read from them will not be committed here."""
        with self._lock:
            self._consumed_at = None

    def committed(self, now: float) -> None:
        """A batch's input offsets were committed."""
        with self._lock:
            self._committed_at = now

    def set_lag(self, records: int, now: float) -> None:
        """Consumer lag over the assigned partitions (records behind the high watermarks)."""
        with self._lock:
            self._lag, self._lag_at = records, now

    # -- what the broker watch reports --------------------------------------------------------

    def broker_failed(self, error: str, now: float) -> bool:
        """A probe failed, or librdkafka reported every broker down.

        Returns:
            True if this begins an outage (the caller logs it), False during one.
        """
        with self._lock:
            self._last_error = error
            if self._down_since is not None:
                return False
            self._down_since = now
            return True

    def broker_answered(self, now: float) -> float | None:
        """A probe succeeded.

        Returns:
            The outage's length in seconds if this ends one, else None.
        """
        with self._lock:
            since, self._down_since = self._down_since, None
            if since is None:
                return None
            self._back_at = now
            return now - since

    # -- verdicts ---------------------------------------------------------------------------

    @property
    def broker_up(self) -> bool:
        """False from a failed probe until the next successful one."""
        return self._down_since is None

    @property
    def consuming(self) -> bool:
        """Partitions were assigned and the service is not closing."""
        return self._consuming

    def seconds_since_loop(self, now: float) -> float:
        """Seconds since the loop last iterated."""
        return max(0.0, now - self._beat)

    def seconds_since_commit(self, now: float) -> float:
        """Seconds since the last commit; before the first, since consuming began (or since
        creation, before that)."""
        ref = self._committed_at
        if ref is None:
            ref = self._consuming_since if self._consuming_since is not None else self._created
        return max(0.0, now - ref)

    def waiting(self) -> bool:
        """Input is waiting: records read after the last commit, or lag measured after it."""
        with self._lock:
            done = self._committed_at if self._committed_at is not None else float("-inf")
            if self._consumed_at is not None and self._consumed_at > done:
                return True
            return bool(self._lag and self._lag_at is not None and self._lag_at >= done)

    def live(self, now: float) -> Verdict:
        """``/healthz``: the loop iterated within ``loop_stale_s`` (a broker outage not
        counted: a restart would not bring the broker back)."""
        if self._down_since is not None:
            return Verdict(True, "ok (broker unreachable: the loop may be waiting for it)")
        age = self.seconds_since_loop(now)
        if self._back_at is not None:
            age = min(age, max(0.0, now - self._back_at))
        limit = self.settings.loop_stale_s
        if age >= limit:
            return Verdict(False, f"loop stuck: no iteration for {age:.0f} s (limit {limit:g} s)")
        return Verdict(True, "ok")

    def stalled(self, now: float) -> Verdict:
        """ok=False when input is waiting and nothing was committed for ``stall_s``."""
        if not self._consuming:
            return Verdict(True, "not consuming")
        quiet = self.seconds_since_commit(now)
        limit = self.settings.stall_s
        if quiet >= limit and self.waiting():
            lag = f", lag {self._lag}" if self._lag else ""
            return Verdict(
                False,
                f"stalled: input waiting{lag} and nothing committed for {quiet:.0f} s "
                f"(limit {limit:g} s)",
            )
        return Verdict(True, "not stalled")

    def ready(self, now: float) -> Verdict:
        """``/readyz``: live, consuming, broker reachable, not stalled (first failure wins)."""
        live = self.live(now)
        if not live.ok:
            return live
        if not self._consuming:
            return Verdict(False, "not consuming: no partitions assigned yet, or stopping")
        down_since = self._down_since
        if down_since is not None:
            return Verdict(
                False,
                f"broker unreachable for {now - down_since:.0f} s: {self._last_error}",
            )
        stall = self.stalled(now)
        if not stall.ok:
            return stall
        return Verdict(True, "ready")
