"""Detection quality on Kafka: the ECG5000 replay and the drift scenario (static/quantile/spot).

ECG5000: the tutorial's test split, every beat its own source, replayed through Kafka into a
detector with the bundle's static threshold. A beat gets an ``opened`` alert exactly when it
is flagged (a source's first flagged window opens an episode), so alerts joined to the beats
by their input partition/offset give per-beat precision, recall and false-alarm rate, next to
the bundle's offline report.

Drift: a simulated ECG stream (several sources) whose normal beats drift gradually in
amplitude, with injected anomalies, at two magnitudes (:data:`DRIFT_SCENARIOS`: a moderate
drift recalibration should absorb, a large one it cannot absorb quickly), each preloaded
once and run through three detectors that differ only in threshold method; both magnitudes
carry the same anomaly episodes. Episode figures (false alarms per 10,000 normal windows,
anomalies that opened an alert) come from the alerts on Kafka; per-window figures (realised
false-alarm rate, recall, time to detect per episode) from the same records replayed offline
through the pure core (:mod:`bench.offline`), whose ``opened`` alert ids must equal Kafka's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import stats
from bench.broker import BenchError, Fetched, create_topics, read_topic
from bench.config import create_output_topics, detector_settings, topic_names
from bench.context import BenchModel, Context
from bench.data import (
    BASE_TIME_MS,
    PERIOD_MS,
    SIM_SOURCES,
    Ecg5000Split,
    ecg5000_path,
    load_ecg5000_test,
    sim_batches,
    train_rounds,
)
from bench.inproc import InProcessDetector
from bench.offline import replay
from bench.preload import preload, read_back, windows_of
from detector.core import InputRecord
from detector.threshold import ThresholdConfig
from producer.anomalies import ECG_ANOMALIES
from producer.scenarios import DriftScenario
from producer.windows import LabeledWindow, WindowBatch, concat_batches

__all__ = ["drift_scenario", "drift_verdict", "ecg5000_replay", "opened_inputs"]

PARTITIONS = 4
Pos = tuple[int, int]
DRIFT_SEED = 31  # where the episodes go
# name -> (amplitude magnitude at full drift, what the scenario shows). The moderate drift
# is one a per-source recalibration should follow; the large one roughly doubles the normal
# scores over the ramp (720 windows per source in quick mode), faster than even an oracle
# with the labels tracks within 2x of the target rate.
DRIFT_SCENARIOS: dict[str, tuple[float, str]] = {
    "moderate": (0.2, "gradual drift that recalibration should absorb"),
    "large": (0.5, "drift beyond what recalibration absorbs quickly"),
}
FAR_BAND = (0.5, 2.0)  # an adaptive method holds the target: drifted FAR within these x target
EPISODE_START_P = 0.006  # per window outside an episode
EPISODE_LEN = (3, 12)  # consecutive anomalous windows
EPISODE_WARMUP = 50  # no episode in a source's first windows
METHODS = ("static", "quantile", "spot")


def _position(received: dict[tuple[bytes, int], InputRecord], source: str, seq: int) -> Pos:
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


def _drain(
    ctx: Context, model: BenchModel, windows_topic: str, run: str, n: int, **overrides: Any
) -> tuple[dict[str, Any], list[Fetched]]:
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
    return {"settings": settings, "drain": drained.as_dict()}, alerts


def _offline_report(bundle: Path) -> dict[str, Any] | None:
    path = bundle / "report.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def ecg5000_replay(ctx: Context) -> dict[str, Any]:
    """Per-beat quality of the ECG5000 test split replayed through Kafka."""
    path = ecg5000_path()
    if ctx.ecg_bundle is None or not path.is_file():
        return {"skipped": f"ECG5000 not found at {path} (set ECG5000_PATH)"}
    split: Ecg5000Split = load_ecg5000_test(path)
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
    positions = [_position(received, w.source_id, 0) for w in beats]
    run = ctx.name("ecg5000")
    info, alerts_raw = _drain(ctx, model, topic, run, len(beats), threshold={"method": "static"})
    opened = opened_inputs(alerts_raw)
    flags = [pos in opened for pos in positions]
    labels = split.labels.tolist()
    kafka = stats.confusion(labels, flags)
    scores = np.asarray(model.scorer.score(split.values).scores, dtype=np.float64)
    threshold = float(model.manifest.threshold.value)
    offline_flags = (scores > threshold).tolist()
    offline = stats.confusion(labels, offline_flags)
    agree = sum(a == b for a, b in zip(flags, offline_flags, strict=True))
    ctx.log(
        f"quality: ECG5000 on Kafka: precision {_f(kafka.precision)} recall {_f(kafka.recall)} "
        f"FAR {_f(kafka.false_alarm_rate)} ({len(beats)} beats)"
    )
    return {
        "data": str(path),
        "split": split.how,
        "beats": len(beats),
        "anomalous": int(sum(labels)),
        "threshold": {"method": "static", "value": threshold},
        "kafka": kafka.as_dict(),
        "offline_same_threshold": offline.as_dict(),
        "kafka_offline_agreement": agree / len(beats),
        "drain": info["drain"],
        "bundle_report": _report_figures(_offline_report(model.path)),
        "bundle": str(model.path),
        "model": model.manifest.model_id,
    }


def _report_figures(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The offline report's headline figures (whatever of them it has)."""
    if report is None:
        return None
    keep: dict[str, Any] = {}

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
                keep[prefix] = node

    walk("", report)
    return keep


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x target"


def _stream(ctx: Context, drift: DriftScenario, rate: float, kind: str) -> WindowBatch:
    cfg = ctx.cfg
    return concat_batches(
        list(
            sim_batches(
                SIM_SOURCES * cfg.drift_rounds,
                skip_rounds=train_rounds(cfg.sim_train_windows),
                anomaly_rate=rate,
                anomaly_types=[kind],
                drift=drift,
            )
        )
    )


def _drift_stream(ctx: Context, magnitude: float) -> tuple[WindowBatch, DriftScenario]:
    """Drifting normal beats with anomaly episodes of 3-12 consecutive windows spliced in.

    Each anomalous stream is the normal one regenerated with every beat carrying one anomaly
    type (same seed, same sources, same drift), so an episode replaces a source's beats by
    its own beats with the anomaly, beat for beat. The episodes depend only on
    :data:`DRIFT_SEED`, so every magnitude carries the same ones.
    """
    cfg = ctx.cfg
    rounds, n_sources = cfg.drift_rounds, SIM_SOURCES
    first = train_rounds(cfg.sim_train_windows)  # seq of the stream's first round
    drift = DriftScenario(
        "gradual",
        target="amplitude",
        magnitude=magnitude,
        start=first + int(rounds * 0.3),
        length=int(rounds * 0.4),
    )
    base = _stream(ctx, drift, 0.0, ECG_ANOMALIES[0])
    anomalous = {kind: _stream(ctx, drift, 1.0, kind) for kind in ECG_ANOMALIES}
    values = base.values.copy()
    labels = np.zeros(len(base), dtype=np.int8)
    types = ["none"] * len(base)
    rng = np.random.default_rng(DRIFT_SEED)
    for source in range(n_sources):
        r = EPISODE_WARMUP
        while r < rounds:
            if rng.random() >= EPISODE_START_P:
                r += 1
                continue
            length = int(rng.integers(EPISODE_LEN[0], EPISODE_LEN[1] + 1))
            kind = ECG_ANOMALIES[int(rng.integers(len(ECG_ANOMALIES)))]
            for j in range(r, min(r + length, rounds)):
                i = j * n_sources + source  # rounds: one window per source, in order
                values[i] = anomalous[kind].values[i]
                labels[i] = 1
                types[i] = kind
            r += length + 1
    stream = WindowBatch(
        list(base.source_ids),
        base.seqs,
        values,
        labels,
        types,
        list(base.regimes),
        base.channel_names,
    )
    return stream, drift


def drift_scenario(ctx: Context) -> dict[str, Any]:
    """Static vs quantile vs spot at each drift magnitude, same anomaly episodes."""
    model = ctx.model(ctx.sim_bundle)
    target = ThresholdConfig().target_far
    scenarios: dict[str, Any] = {}
    for name, (magnitude, description) in DRIFT_SCENARIOS.items():
        scenarios[name] = _one_scenario(ctx, model, name, magnitude, target)
        scenarios[name]["description"] = description
        verdict = drift_verdict(scenarios[name]["methods"], target, FAR_BAND)
        scenarios[name]["verdict"] = verdict
        ctx.log(f"quality: drift {name} ({magnitude:.0%}): {verdict['summary']}")
    first = next(iter(scenarios.values()))
    return {
        "sources": SIM_SOURCES,
        "first_seq": train_rounds(ctx.cfg.sim_train_windows),
        "rounds_per_source": ctx.cfg.drift_rounds,
        "windows": first["windows"],
        "anomalous_windows": first["anomalous_windows"],
        "episodes": {
            "start_probability": EPISODE_START_P,
            "length_windows": list(EPISODE_LEN),
            "types": list(ECG_ANOMALIES),
            "seed": DRIFT_SEED,
        },
        "target_far": target,
        "far_band": list(FAR_BAND),
        "scenarios": scenarios,
    }


def drift_verdict(
    methods: dict[str, Any], target: float, band: tuple[float, float] = FAR_BAND
) -> dict[str, Any]:
    """Whether each adaptive method's drifted-regime FAR is within ``band`` x target, static's not.

    ``passed`` is True when every adaptive method (all but ``static``) is inside the band and
    static is outside it (the scenario shows what recalibration buys), None when a figure is
    missing.
    """
    lo, hi = band
    per: dict[str, Any] = {}
    for method, r in methods.items():
        far = (r.get("window_drifted") or {}).get("false_alarm_rate")
        ratio = None if far is None else far / target
        within = None if ratio is None else lo <= ratio <= hi
        per[method] = {"far_drifted": far, "x_target": ratio, "within": within}
    adaptive = [v["within"] for m, v in per.items() if m != "static"]
    static = per.get("static", {}).get("within")
    if static is None or not adaptive or any(w is None for w in adaptive):
        passed: bool | None = None
    else:
        passed = all(adaptive) and not static
    parts = [f"{m} {_f(v['far_drifted'])} ({_x(v['x_target'])})" for m, v in per.items()]
    parts.append(f"adaptive within {lo:g}-{hi:g}x and static outside: {passed}")
    return {"band": [lo, hi], "methods": per, "passed": passed, "summary": "; ".join(parts)}


def _one_scenario(
    ctx: Context, model: BenchModel, name: str, magnitude: float, target: float
) -> dict[str, Any]:
    stream, drift = _drift_stream(ctx, magnitude)
    topic = ctx.name(f"drift-{name}-windows")
    create_topics(ctx.bootstrap, {topic: PARTITIONS})
    preload(ctx.bootstrap, topic, windows_of([stream]), "binary")
    received = read_back(ctx.bootstrap, topic)
    # the records as Kafka holds them, in stream order (per-source order is what matters)
    inputs = [received[(w.source_id.encode(), w.seq)] for w in stream]
    positions = [(r.partition, r.offset) for r in inputs]
    n = len(inputs)
    labels = stream.labels.astype(int).tolist()
    drifted = [r != "baseline" for r in stream.regimes]
    sources = list(stream.source_ids)
    results: dict[str, Any] = {}
    for method in METHODS:
        run = ctx.name(f"drift-{name}-{method}")
        info, alerts_raw = _drain(ctx, model, topic, run, n, threshold={"method": method})
        opened = opened_inputs(alerts_raw)
        offline = replay(info["settings"], model.scorer, model.manifest, inputs)
        events = read_topic(ctx.bootstrap, topic_names(run)["events"])
        results[method] = _method_figures(
            labels,
            list(stream.anomaly_types),
            drifted,
            sources,
            positions,
            opened,
            offline,
            events,
        )
        results[method]["drain"] = info["drain"]
        r = results[method]
        ctx.log(
            f"quality: drift {name} {method}: FAR {_f(r['window']['false_alarm_rate'])} "
            f"(drifted {_f(r['window_drifted']['false_alarm_rate'])}), recall "
            f"{_f(r['window']['recall'])}, false alarms/10k {_f(r['false_alarms_per_10k'])}"
        )
    return {
        "windows": n,
        "drift": {
            "kind": drift.kind,
            "target": drift.target,
            "magnitude": drift.magnitude,
            "start": drift.start,
            "length": drift.length,
        },
        "target_far": target,
        "anomalous_windows": int(sum(labels)),
        "drifted_windows": int(sum(drifted)),
        "methods": results,
    }


def _method_figures(
    labels: list[int],
    types: list[str],
    drifted: list[bool],
    sources: list[str],
    positions: list[Pos],
    opened: dict[Pos, dict[str, Any]],
    offline: Any,
    events_raw: list[Fetched],
) -> dict[str, Any]:
    flags: list[bool] = offline.flags
    if len(flags) != len(labels):
        raise ValueError(f"offline replay decided {len(flags)} of {len(labels)} windows")
    kafka_ids = {a["alert_id"] for a in opened.values()}
    base_idx = [i for i, d in enumerate(drifted) if not d]
    drift_idx = [i for i, d in enumerate(drifted) if d]

    def part(idx: list[int]) -> dict[str, Any]:
        return stats.confusion([labels[i] for i in idx], [flags[i] for i in idx]).as_dict()

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
    return {
        "window": stats.confusion(labels, flags).as_dict(),
        "window_baseline": part(base_idx),
        "window_drifted": part(drift_idx),
        "episodes": len(delays),
        "episodes_detected": len(found),
        "episodes_with_opened_alert": alerted,
        "episodes_by_type": {k: {"episodes": v[0], "detected": v[1]} for k, v in by_type.items()},
        "detection_delay_windows": {
            "mean": float(np.mean(found)) if found else None,
            "p50": stats.percentile(found, 50),
            "p95": stats.percentile(found, 95),
            "max": max(found) if found else None,
        },
        "alerts_opened": len(opened),
        "alerts_opened_on_normal": opened_on_normal,
        "false_alarms_per_10k": stats.per_10k(opened_on_normal, normal),
        "events": dict(event_types),
        "recalibrations_by_estimator": dict(estimators),
        # recalibrations that followed a shift of the bulk (recent window only, no prior)
        "recalibrations_recent": sum(v for k, v in estimators.items() if k.startswith("recent-")),
        "retrain_recommended": event_types.get("retrain_recommended", 0),
        "offline_alerts": offline.alerts,
        "kafka_offline_opened_match": kafka_ids == offline.alert_ids,
        "kafka_opened_not_offline": len(kafka_ids - offline.alert_ids),
        "offline_opened_not_kafka": len(offline.alert_ids - kafka_ids),
    }
