"""Dead letters said out loud, without flooding the log.

Every dead letter is counted in ``detector_dead_letters_total{reason}`` and carries its reason
in the dead-letter topic's headers, but someone reading the log must not have to go there to
learn that, say, every window has the wrong shape for the bundle. :class:`DeadLetterWatch`
turns the dead letters of each batch into a few log lines:

* ``dead_letters`` (warning): the first dead letter of a reason at once, then at most one line
  per reason every ``interval_s``, with how many since the previous line, the total, and the
  detail of the latest (``shape (64, 4), the model expects (140, 1)``);
* ``all_input_dead_lettered`` (error): nothing has been scored yet and ``min_count`` or more
  records were dead-lettered: the detector is running but detecting nothing. Repeated at most
  every ``interval_s`` for as long as it lasts, with the counts per reason and what to check.

Pure: no clock of its own (``now`` comes in, in seconds) and no logger (the caller logs).

Examples:
    >>> watch = DeadLetterWatch(interval_s=30, min_count=2)
    >>> [w.event for w in watch.observe([("bad_shape", "shape (64, 4)")], 0, now=0.0)]
    ['dead_letters']
    >>> [w.event for w in watch.observe([("bad_shape", "shape (64, 4)")], 0, now=1.0)]
    ['all_input_dead_lettered']
    >>> watch.observe([("bad_shape", "shape (64, 4)")], 0, now=2.0)
    []
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DeadLetterWarning", "DeadLetterWatch"]

# What to check, per reason, when nothing gets through.
_HINTS = {
    "bad_shape": "the windows do not have the bundle's shape: is the bundle the model for "
    "this stream? (detector inspect BUNDLE shows its window)",
    "undecodable": "the records are not window messages: is this the windows topic, and "
    "does the producer send JSON or the binary encoding with its headers?",
    "missing_field": "the records lack fields of the window message (detector schema window)",
    "unknown_content_type": "the content-type header is neither application/json nor the "
    "binary encoding's",
    "oversize": "the records are larger than DETECTOR_MAX_MESSAGE_BYTES",
}


@dataclass(frozen=True, slots=True)
class DeadLetterWarning:
    """One log line to write: its level, event name and fields."""

    level: Literal["warning", "error"]
    event: str
    fields: dict[str, Any]


@dataclass(slots=True)
class _Reason:
    since_last: int = 0
    total: int = 0
    last_logged: float | None = None
    detail: str = ""


@dataclass(slots=True)
class DeadLetterWatch:
    """Rate-limited log lines about dead letters (see the module docstring).

    Attributes:
        interval_s: at most one line per reason (and one ``all_input_dead_lettered``) per
            this many seconds.
        min_count: dead letters, with nothing scored, before ``all_input_dead_lettered``.
    """

    interval_s: float = 30.0
    min_count: int = 100
    _reasons: dict[str, _Reason] = field(default_factory=dict)
    _scored: int = 0
    _all_logged: float | None = None

    def observe(
        self, dead: Sequence[tuple[str, str]], scored: int, now: float
    ) -> list[DeadLetterWarning]:
        """Take in one batch's dead letters (reason, detail) and its scored windows; return
        the lines due now."""
        self._scored += scored
        out: list[DeadLetterWarning] = []
        for reason, detail in dead:
            entry = self._reasons.setdefault(reason, _Reason())
            entry.since_last += 1
            entry.total += 1
            entry.detail = detail
        for reason, entry in self._reasons.items():
            if entry.since_last and _due(entry.last_logged, now, self.interval_s):
                out.append(
                    DeadLetterWarning(
                        "warning",
                        "dead_letters",
                        {
                            "reason": reason,
                            "count": entry.since_last,
                            "total": entry.total,
                            "detail": entry.detail,
                            "scored_total": self._scored,
                        },
                    )
                )
                entry.since_last = 0
                entry.last_logged = now
        dead_total = sum(e.total for e in self._reasons.values())
        if (
            dead
            and self._scored == 0
            and dead_total >= self.min_count
            and _due(self._all_logged, now, self.interval_s)
        ):
            self._all_logged = now
            counts = Counter({r: e.total for r, e in self._reasons.items()})
            top = counts.most_common(1)[0][0]
            out.append(
                DeadLetterWarning(
                    "error",
                    "all_input_dead_lettered",
                    {
                        "dead_letters": dead_total,
                        "scored": 0,
                        "reasons": dict(counts.most_common()),
                        "detail": self._reasons[top].detail,
                        "hint": _HINTS.get(
                            top,
                            "see the dlq-reason and dlq-detail headers in the dead-letter topic",
                        ),
                    },
                )
            )
        return out


def _due(last: float | None, now: float, interval_s: float) -> bool:
    return last is None or now - last >= interval_s
