"""Detection quality on Kafka, shared by the ECG5000 and drift sections.

A detector drains a preloaded topic in this process; its ``opened`` alerts are read back and
joined to the input windows by their partition/offset. Per-window figures (realised
false-alarm rate, recall, time to detect per episode) come from the same records replayed
offline through the pure core (:mod:`bench.offline`), whose ``opened`` alert ids must equal
Kafka's; episode figures (false alarms per 10,000 normal windows, anomalies that opened an
alert) from the alerts on Kafka.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bench import stats
from bench.broker import BenchError, Fetched, read_topic
from bench.config import create_output_topics, detector_settings, topic_names
from bench.context import BenchModel, Context
from bench.inproc import InProcessDetector
from bench.offline import OfflineResult
from bench.results import ConfusionFigures, DrainFigures, Figures
from detector.core import InputRecord
from detector.settings import DetectorSettings

__all__ = [
    "PARTITIONS",
    "Drained",
    "MethodFigures",
    "drain",
    "method_figures",
    "opened_inputs",
    "position",
]

PARTITIONS = 4
Pos = tuple[int, int]


def position(received: dict[tuple[bytes, int], InputRecord], source: str, seq: int) -> Pos:
    """(partition, offset) of a window read back from Kafka."""
    record = received.get((source.encode(), seq))
    if record is None:
        raise BenchError(f"window {source}/{seq} was not read back from Kafka")
    return (record.partition, record.offset)


def opened_inputs(alerts_raw: list[Fetched]) -> dict[Pos, dict[str, Any]]:
    """``opened`` alerts keyed by their input (partition, offset)."""
    out: dict[Pos, dict[str, Any]] = {}
    for _p, _o, _k, value, _h in alerts_raw:
        if value is None:
            continue
        alert = orjson.loads(value)
        if alert.get("state") == "opened":
            ref = alert["input"]
            out[(int(ref["partition"]), int(ref["offset"]))] = alert
    return out


@dataclass(frozen=True, slots=True)
class Drained:
    """A detector's drain of a topic: its settings, figures, and what it published."""

    settings: DetectorSettings
    figures: DrainFigures
    alerts: list[Fetched]


def drain(
    ctx: Context, model: BenchModel, windows_topic: str, run: str, n: int, **overrides: Any
) -> Drained:
    """Drain ``n`` windows with an in-process detector; its alerts read back."""
    create_output_topics(ctx.bootstrap, run, PARTITIONS)
    settings = detector_settings(
        ctx.bootstrap, str(model.path), windows_topic, run, partitions=PARTITIONS, **overrides
    )
    det = InProcessDetector(settings, model.scorer, model.manifest, expect=n)
    det.start()
    try:
        drained = det.wait(120 + n / 500)
    finally:
        det.stop()
    alerts = read_topic(ctx.bootstrap, topic_names(run)["alerts"])
    return Drained(settings, DrainFigures.model_validate(drained.as_dict()), alerts)


class EpisodeCount(Figures):
    episodes: int
    detected: int


class DelayFigures(Figures):
    """Windows from an episode's start to its first flag, over the detected episodes."""

    mean: float | None
    p50: float | None
    p95: float | None
    max: int | None


class MethodFigures(Figures):
    """One threshold method on one stream: per window, per episode, events, Kafka = offline."""

    window: ConfusionFigures
    window_baseline: ConfusionFigures
    window_drifted: ConfusionFigures
    episodes: int
    episodes_detected: int
    episodes_with_opened_alert: int
    episodes_by_type: dict[str, EpisodeCount]
    detection_delay_windows: DelayFigures
    alerts_opened: int
    alerts_opened_on_normal: int
    false_alarms_per_10k: float | None
    events: dict[str, int]
    recalibrations_by_estimator: dict[str, int]
    # recalibrations that followed a shift of the bulk (recent window only, no prior)
    recalibrations_recent: int
    retrain_recommended: int
    offline_alerts: dict[str, int]
    kafka_offline_opened_match: bool
    kafka_opened_not_offline: int
    offline_opened_not_kafka: int
    drain: DrainFigures | None = None


def method_figures(
    labels: list[int],
    types: list[str],
    drifted: list[bool],
    sources: list[str],
    positions: list[Pos],
    opened: dict[Pos, dict[str, Any]],
    offline: OfflineResult,
    events_raw: list[Fetched],
) -> MethodFigures:
    """Every figure of one method's run, from the labels, Kafka's alerts and the replay."""
    flags: list[bool] = offline.flags
    if len(flags) != len(labels):
        raise ValueError(f"offline replay decided {len(flags)} of {len(labels)} windows")
    kafka_ids = {a["alert_id"] for a in opened.values()}

    def part(keep: bool | None) -> ConfusionFigures:
        idx = [i for i, d in enumerate(drifted) if keep is None or d == keep]
        c = stats.confusion([labels[i] for i in idx], [flags[i] for i in idx])
        return ConfusionFigures.of(c)

    per_source: dict[str, list[int]] = defaultdict(list)
    for i, source in enumerate(sources):
        per_source[source].append(i)
    delays: list[int | None] = []
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [episodes, detected]
    alerted = 0
    for idx in per_source.values():
        src_labels = [labels[i] for i in idx]
        src_delays = stats.detection_delays(src_labels, [flags[i] for i in idx])
        for (start, end), delay in zip(stats.episodes(src_labels), src_delays, strict=True):
            delays.append(delay)
            counts = by_type[types[idx[start]]]
            counts[0] += 1
            counts[1] += delay is not None
            alerted += any(positions[idx[j]] in opened for j in range(start, end))
    found = [d for d in delays if d is not None]
    normal = len(labels) - sum(labels)
    opened_on_normal = sum(1 for i, pos in enumerate(positions) if pos in opened and not labels[i])
    event_types: dict[str, int] = defaultdict(int)
    estimators: dict[str, int] = defaultdict(int)  # recalibrations by estimator path
    for _p, _o, _k, value, _h in events_raw:
        if value is not None:
            event = orjson.loads(value)
            event_types[str(event.get("type"))] += 1
            if event.get("type") == "threshold_recalibrated":
                estimators[str(event.get("estimator"))] += 1
    return MethodFigures(
        window=part(None),
        window_baseline=part(False),
        window_drifted=part(True),
        episodes=len(delays),
        episodes_detected=len(found),
        episodes_with_opened_alert=alerted,
        episodes_by_type={
            k: EpisodeCount(episodes=v[0], detected=v[1]) for k, v in by_type.items()
        },
        detection_delay_windows=DelayFigures(
            mean=float(np.mean(found)) if found else None,
            p50=stats.percentile(found, 50),
            p95=stats.percentile(found, 95),
            max=max(found) if found else None,
        ),
        alerts_opened=len(opened),
        alerts_opened_on_normal=opened_on_normal,
        false_alarms_per_10k=stats.per_10k(opened_on_normal, normal),
        events=dict(event_types),
        recalibrations_by_estimator=dict(estimators),
        recalibrations_recent=sum(v for k, v in estimators.items() if k.startswith("recent-")),
        retrain_recommended=event_types.get("retrain_recommended", 0),
        offline_alerts=offline.alerts,
        kafka_offline_opened_match=kafka_ids == offline.alert_ids,
        kafka_opened_not_offline=len(kafka_ids - offline.alert_ids),
        offline_opened_not_kafka=len(offline.alert_ids - kafka_ids),
    )
