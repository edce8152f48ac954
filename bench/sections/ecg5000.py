"""Detection quality: the ECG5000 test split replayed through Kafka.

The tutorial's test split, every beat its own source, replayed through Kafka into a detector
with the bundle's static threshold. A beat gets an ``opened`` alert exactly when it is
flagged (a source's first flagged window opens an episode), so alerts joined to the beats by
their input partition/offset give per-beat precision, recall and false-alarm rate, next to
the same threshold applied offline and the bundle's own offline report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.broker import create_topics
from bench.context import Context
from bench.data import BASE_TIME_MS, PERIOD_MS, ecg5000_path, load_ecg5000_test
from bench.markdown import fmt, table
from bench.preload import preload, read_back
from bench.quality import PARTITIONS, drain, opened_inputs, position
from bench.results import ConfusionFigures, DrainFigures, Figures
from bench.section import Section, SectionSkippedError
from producer.windows import LabeledWindow

__all__ = ["Ecg5000", "Ecg5000Result"]


@dataclass(frozen=True, slots=True)
class Ecg5000Sizes:
    """The whole test split in every mode: nothing to size."""


class ThresholdUsed(Figures):
    method: str
    value: float


class Ecg5000Result(Figures):
    """Per-beat quality on Kafka and offline with the same threshold."""

    data: str
    split: str
    beats: int
    anomalous: int
    threshold: ThresholdUsed
    kafka: ConfusionFigures
    offline_same_threshold: ConfusionFigures
    kafka_offline_agreement: float
    drain: DrainFigures
    bundle_report: dict[str, float] | None
    bundle: str
    model: str


def _report_figures(bundle: Path) -> dict[str, float] | None:
    """The headline figures of the bundle's offline report (whatever of them it has)."""
    path = bundle / "report.json"
    if not path.is_file():
        return None
    keep: dict[str, float] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            last = prefix.rsplit(".", 1)[-1].lower()
            if any(
                word in last
                for word in ("precision", "recall", "far", "false_alarm", "auroc", "auc", "f1")
            ):
                keep[prefix] = float(node)

    walk("", json.loads(path.read_text()))
    return keep


class Ecg5000(Section[Ecg5000Result, Ecg5000Sizes]):
    """The ECG5000 test split replayed through Kafka, beside the offline figures."""

    name = "ecg5000"
    title = "Quality: ECG5000 replay"
    result_type = Ecg5000Result
    quick = Ecg5000Sizes()
    full = Ecg5000Sizes()

    def run(self, ctx: Context, sizes: Ecg5000Sizes) -> Ecg5000Result:
        """Per-beat quality of the ECG5000 test split replayed through Kafka."""
        path = ecg5000_path()
        if ctx.ecg_bundle is None or not path.is_file():
            raise SectionSkippedError(f"ECG5000 not found at {path} (set ECG5000_PATH)")
        split = load_ecg5000_test(path)
        model = ctx.model(ctx.ecg_bundle)
        topic = ctx.name("ecg5000-windows")
        create_topics(ctx.bootstrap, {topic: PARTITIONS})
        beats = [
            LabeledWindow(
                f"ecg5000-row{int(row)}", 0, beat, int(label), "abnormal" if label else "none", "-"
            )
            for row, beat, label in zip(split.rows, split.values, split.labels, strict=True)
        ]
        preload(
            ctx.bootstrap,
            topic,
            ((w, BASE_TIME_MS + i * PERIOD_MS) for i, w in enumerate(beats)),
            "binary",
        )
        received = read_back(ctx.bootstrap, topic)
        positions = [position(received, w.source_id, 0) for w in beats]
        drained = drain(
            ctx, model, topic, ctx.name("ecg5000"), len(beats), threshold={"method": "static"}
        )
        opened = opened_inputs(drained.alerts)
        flags = [pos in opened for pos in positions]
        labels = split.labels.tolist()
        kafka = stats.confusion(labels, flags)
        scores = np.asarray(model.scorer.score(split.values).scores, dtype=np.float64)
        threshold = float(model.manifest.threshold.value)
        offline_flags = (scores > threshold).tolist()
        agree = sum(a == b for a, b in zip(flags, offline_flags, strict=True))
        ctx.log(
            f"quality: ECG5000 on Kafka: precision {fmt(kafka.precision, 'num', 3)} recall "
            f"{fmt(kafka.recall, 'num', 3)} FAR {fmt(kafka.false_alarm_rate, 'num', 3)} "
            f"({len(beats)} beats)"
        )
        return Ecg5000Result(
            data=str(path),
            split=split.how,
            beats=len(beats),
            anomalous=int(sum(labels)),
            threshold=ThresholdUsed(method="static", value=threshold),
            kafka=ConfusionFigures.of(kafka),
            offline_same_threshold=ConfusionFigures.of(stats.confusion(labels, offline_flags)),
            kafka_offline_agreement=agree / len(beats),
            drain=drained.figures,
            bundle_report=_report_figures(model.path),
            bundle=str(model.path),
            model=model.manifest.model_id,
        )

    def render(self, result: Ecg5000Result) -> str:
        e = result
        rows = [
            [
                label,
                fmt(c.precision, "num", 3),
                fmt(c.recall, "num", 3),
                fmt(c.false_alarm_rate, "pct", 2),
                f"{c.tp}/{c.fp}/{c.tn}/{c.fn}",
            ]
            for label, c in (
                ("on Kafka", e.kafka),
                ("offline, same threshold", e.offline_same_threshold),
            )
        ]
        report_line = (
            "; ".join(f"{k} {fmt(v, 'num', 3)}" for k, v in sorted(e.bundle_report.items()))
            if e.bundle_report
            else "no report.json in the bundle"
        )
        return "\n".join(
            [
                f"#### Quality: ECG5000 replay ({e.beats} test beats, "
                f"{e.anomalous} abnormal), model {e.model}",
                "",
                table(["where", "precision", "recall", "false-alarm rate", "tp/fp/tn/fn"], rows),
                "",
                f"Threshold: the bundle's recommendation "
                f"({fmt(e.threshold.value, 'num', 5)}, static), one source per beat so "
                f"each flagged beat opens one alert. Kafka and offline agree on "
                f"{fmt(e.kafka_offline_agreement, 'pct', 1)} of beats. "
                f"The bundle's offline report: {report_line}.",
            ]
        )
