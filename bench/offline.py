"""Per-window decisions of the pure detector core, replayed offline on the records sent.

Alerts mark episode openings, not every flagged window, so per-window false-alarm rates and
recall cannot be read off the alerts topic. The core is deterministic per source (thresholds
recalibrate by count, episodes by event time), so replaying the same records in the same
per-source order through a :class:`~detector.core.BatchDecider` with the same settings and
model gives the decisions the service made; the alert ids (deterministic: input
topic/partition/offset, state, model) are compared with those read from Kafka to prove it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detector.core import InputRecord, Prepared, build_decider
from detector.settings import DetectorSettings

__all__ = ["OfflineResult", "replay"]

SCORE_BATCH = 2048


@dataclass(slots=True)
class OfflineResult:
    """Decisions per record (in the order given) and the alerts the core emitted.

    Attributes:
        flags: True where the window was above the threshold in force.
        scores: each window's score.
        thresholds: the threshold each window was judged against.
        alert_ids: ids of ``opened`` alerts.
        alerts: count of alerts per state.
        events: count of events per type.
        dead_letters: records the core refused.
    """

    flags: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    alert_ids: set[str] = field(default_factory=set)
    alerts: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0


def replay(
    settings: DetectorSettings, scorer: Any, manifest: Any, records: list[InputRecord]
) -> OfflineResult:
    """Decide every record as the service would, one window at a time (scored in batches)."""
    # The service's core factory with the settings' parts that change decisions (the state
    # interval changes only when state is written).
    core = build_decider(
        manifest,
        settings.threshold,
        settings.lifecycle,
        max_message_bytes=settings.max_message_bytes,
    )
    out = OfflineResult()
    for start in range(0, len(records), SCORE_BATCH):
        prepared = core.prepare(records[start : start + SCORE_BATCH])
        out.dead_letters += len(prepared.dead_letters)
        if not prepared.windows:
            continue
        result = scorer.score(prepared.batch)
        for i, (record, window) in enumerate(zip(prepared.records, prepared.windows, strict=True)):
            one = Prepared([record], [window], prepared.batch[i : i + 1], [])
            part = result.take(slice(i, i + 1))
            threshold = core.bank.get(window.source_id).value
            decisions = core.decide(one, part, window.event_time_ms)
            out.flags.append(decisions.flagged > 0)
            out.scores.append(float(part.scores[0]))
            out.thresholds.append(float(threshold))
            for alert in decisions.alerts:
                state = alert.state.value
                out.alerts[state] = out.alerts.get(state, 0) + 1
                if state == "opened":
                    out.alert_ids.add(alert.alert_id)
            for event in decisions.events:
                out.events[event.type] = out.events.get(event.type, 0) + 1
    return out
