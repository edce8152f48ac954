"""Produce-to-alert latency at fixed rates, exactly-once and at-least-once, and its floors.

The measurement machinery (pacer process, alert reader, bare transaction loop) is
:mod:`bench.latency`; this section runs it: the bare transaction floor, both delivery modes at
the default settings, the null detector (the detector's Kafka loop with no work) at the
target's rates, then any tuned exactly-once settings of the mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import LIBRDKAFKA_BACKOFF
from bench.context import Context
from bench.data import SIM_SOURCES
from bench.detector_proc import TF_SINGLE_THREAD
from bench.latency import (
    ANOMALY_RATE,
    FLOOR_DETECTOR,
    FLOOR_LIBRDKAFKA,
    TUNED_RATES,
    WARM_FRACTION,
    FloorFigures,
    LatencyRun,
    PhaseLatency,
    measure,
    transaction_floor,
)
from bench.markdown import fmt, table
from bench.results import Figures, LatencySummary
from bench.section import Section, Target
from detector.settings import DetectorSettings

__all__ = ["NULL_LABEL", "Latency", "LatencyResult", "LatencySizes"]

NULL_LABEL = "exactly-once, null detector (no work)"
TARGET_RATE = 5_000


@dataclass(frozen=True, slots=True)
class LatencySizes:
    """Seconds per fixed-rate phase, the rates, the tuned exactly-once runs, floor iterations.

    ``tuned``: (max_wait_s, librdkafka options) of extra exactly-once runs at 1k and 5k/s:
    settings measured beside the defaults.
    """

    phase_s: float
    rates: tuple[int, ...]
    tuned: tuple[tuple[float | None, dict[str, str]], ...]
    txn_floor_batches: int


class LatencyDetector(Figures):
    """The detector settings of the default runs."""

    max_batch: int
    max_wait_s: float
    resolve_after_windows: int
    env: dict[str, str]


class LatencyResult(Figures):
    """Every latency run of the section, by delivery mode, and the floors."""

    sources: int
    anomaly_rate: float
    warm_fraction: float
    encoding: str
    detector: LatencyDetector
    modes: dict[str, LatencyRun]
    null_detector: LatencyRun | None = None
    tuned: list[LatencyRun]
    transaction_floor: dict[str, FloorFigures]

    def phase(self, delivery: str, rate: int) -> PhaseLatency | None:
        run = self.modes.get(delivery)
        return None if run is None else run.phase(rate)


def _p99_eos(r: LatencyResult) -> float | None:
    phase = r.phase("exactly-once", TARGET_RATE)
    return None if phase is None else phase.produce_to_alert.p99_ms


def _explain_p99(r: LatencyResult, _t: Target[LatencyResult]) -> str:
    phase = r.phase("exactly-once", TARGET_RATE)
    if phase is None:
        return "The exactly-once run has no 5,000/s phase."
    floors = r.transaction_floor
    floor_p99 = floors[FLOOR_LIBRDKAFKA].batch.p99_ms if FLOOR_LIBRDKAFKA in floors else None
    backoff_p99 = floors[FLOOR_DETECTOR].batch.p99_ms if FLOOR_DETECTOR in floors else None
    null_phase = r.null_detector.phase(TARGET_RATE) if r.null_detector else None
    null_note = (
        f" The null detector (the same Kafka loop and transactions, no work) reached p99 "
        f"{fmt(null_phase.produce_to_alert.p99_ms, 'ms')} (p50 "
        f"{fmt(null_phase.produce_to_alert.p50_ms, 'ms')}) at 5,000/s in the same run."
        if null_phase
        else ""
    )
    return (
        f"Of the p99 {fmt(phase.produce_to_alert.p99_ms, 'ms')}, produce-to-decision (queueing "
        f"behind the batch in hand, decode, score) is "
        f"{fmt(phase.produce_to_decision.p99_ms, 'ms')} at its own p99; the "
        f"rest is the transaction (send offsets, commit, markers) and the subscriber's "
        f"fetch. The sender achieved {fmt(phase.achieved_per_s, 'int')}/s. A "
        f"bare transaction (one record in, one out, commit) on this broker took p99 "
        f"{fmt(backoff_p99, 'ms')} in the same run with the detector's "
        f"retry.backoff.ms=5 (max 20) "
        f"(p99 {fmt(floor_p99, 'ms')} with librdkafka's default 100 ms, which it waits "
        f"before retrying AddOffsetsToTxn refused with CONCURRENT_TRANSACTIONS while the "
        f"previous commit completes).{null_note}"
    )


def _percentiles(a: LatencySummary) -> list[str]:
    """Count, p50, p95 and p99 cells."""
    return [str(a.n), fmt(a.p50_ms, "ms"), fmt(a.p95_ms, "ms"), fmt(a.p99_ms, "ms")]


def _phase_rows(label: str, run: LatencyRun) -> list[list[str]]:
    rows = []
    for p in run.phases:
        a, d = p.produce_to_alert, p.produce_to_decision
        rows.append(
            [
                label,
                fmt(p.rate, "int"),
                fmt(p.achieved_per_s, "int"),
                *_percentiles(a),
                fmt(a.max_ms, "ms"),
                fmt(d.p99_ms, "ms"),
            ]
        )
    return rows


def _floor(floor: dict[str, FloorFigures]) -> str:
    rows = [
        [
            mode,
            str(r.batch.n),
            fmt(r.batch.p50_ms, "ms"),
            fmt(r.batch.p99_ms, "ms"),
            fmt(r.send_offsets.p50_ms if r.send_offsets else None, "ms"),
            fmt(r.send_offsets.p99_ms if r.send_offsets else None, "ms"),
        ]
        for mode, r in floor.items()
    ]
    return "\n".join(
        [
            "The floor on this broker, same run: a bare read-process-write loop (consume one "
            "record, produce one, commit; nothing to process), per iteration:",
            "",
            table(["delivery", "n", "p50", "p99", "send_offsets p50", "send_offsets p99"], rows),
        ]
    )


def _tuning(lat: LatencyResult) -> list[str]:
    rows = []
    for run in lat.tuned:
        for p in run.phases:
            a, d = p.produce_to_alert, p.produce_to_decision
            rows.append(
                [
                    fmt(run.max_wait_s or lat.detector.max_wait_s, "num", 3),
                    ", ".join(f"{k}={v}" for k, v in run.options.items()) or "-",
                    fmt(p.rate, "int"),
                    *_percentiles(a),
                    fmt(d.p99_ms, "ms"),
                    fmt(run.detector_cpu_cores, "num", 2),
                ]
            )
    if not rows:
        return []
    header = ["max_wait_s", "librdkafka options", "rate/s", "alerts", "p50", "p95", "p99"]
    return [
        "",
        "Exactly-once with other settings (same run; librdkafka's default retry.backoff.ms is "
        "what the detector used before it set 5 ms):",
        "",
        table([*header, "p99 to decision", "detector cores"], rows),
    ]


class Latency(Section[LatencyResult, LatencySizes]):
    """Produce-to-alert latency of the detector process under a paced producer."""

    name = "latency"
    title = "Latency"
    result_type = LatencyResult
    quick = LatencySizes(phase_s=3.0, rates=(1_000, 5_000, 20_000), tuned=(), txn_floor_batches=100)
    full = LatencySizes(
        phase_s=20.0,
        rates=(1_000, 5_000, 20_000),
        tuned=((None, LIBRDKAFKA_BACKOFF),),
        txn_floor_batches=300,
    )
    performance = True
    targets = (
        Target(
            "p99_eos_5k",
            "p99 produce-to-alert at 5,000 windows/s, exactly-once",
            "ms",
            50,
            "<=",
            _p99_eos,
            _explain_p99,
        ),
    )

    def run(self, ctx: Context, sizes: LatencySizes) -> LatencyResult:
        """Both delivery modes at the default settings, then the tuned exactly-once runs."""
        defaults = DetectorSettings.model_fields
        floor = transaction_floor(ctx.bootstrap, ctx.name("txn-floor"), sizes.txn_floor_batches)
        ctx.log(
            "latency: bare transaction p50/p99 "
            + "; ".join(
                f"{mode} {fmt(r.batch.p50_ms, 'ms')}/{fmt(r.batch.p99_ms, 'ms')}"
                for mode, r in floor.items()
            )
        )
        modes: dict[str, LatencyRun] = {}
        for delivery in ("exactly-once", "at-least-once"):
            modes[delivery] = measure(ctx, delivery, sizes.rates, sizes.phase_s)
            _log(ctx, delivery, modes[delivery])
        # The floor: the detector's Kafka loop with no work, at the rates of the target.
        null = measure(ctx, "exactly-once", TUNED_RATES, sizes.phase_s, label="null", null=True)
        _log(ctx, NULL_LABEL, null)
        tuned: list[LatencyRun] = []
        for i, (wait_s, options) in enumerate(sizes.tuned):
            run = measure(
                ctx, "exactly-once", TUNED_RATES, sizes.phase_s, wait_s, options, f"tuned{i}"
            )
            tuned.append(run)
            _log(ctx, f"exactly-once max_wait_s={wait_s} {options}", run)
        return LatencyResult(
            sources=SIM_SOURCES,
            anomaly_rate=ANOMALY_RATE,
            warm_fraction=WARM_FRACTION,
            encoding="binary",
            detector=LatencyDetector(
                max_batch=defaults["max_batch"].default,
                max_wait_s=defaults["max_wait_s"].default,
                resolve_after_windows=1,
                env=TF_SINGLE_THREAD,
            ),
            modes=modes,
            null_detector=null,
            tuned=tuned,
            transaction_floor=floor,
        )

    def render(self, result: LatencyResult) -> str:
        lat = result
        rows = [row for delivery, run in lat.modes.items() for row in _phase_rows(delivery, run)]
        if lat.null_detector is not None:
            rows += _phase_rows(NULL_LABEL, lat.null_detector)
        det = lat.detector
        header = ["delivery", "rate/s", "sent/s", "alerts", "p50", "p95", "p99", "max"]
        return "\n".join(
            [
                "#### Latency: produce to alert (read_committed subscriber), binary windows",
                "",
                table([*header, "p99 to decision"], rows),
                "",
                f"{lat.sources} sources, anomalies injected at "
                f"{fmt(lat.anomaly_rate, 'pct', 0)} of windows by the producer, episodes "
                f"resolve after one normal window so every flagged window after a "
                f"normal one opens an episode; `opened` alerts only, the first "
                f"{fmt(lat.warm_fraction, 'pct', 0)} of each phase left out. Detector: "
                f"max_batch {det.max_batch}, max_wait_s {det.max_wait_s}, env "
                f"{det.env}. The {NULL_LABEL} row is `bench.null_detector`: the "
                f"detector's Kafka loop (same clients, batching, one transaction per batch) "
                f"publishing an alert for every window the producer labelled anomalous, with "
                f"no decode, model or decisions: the floor under any detector on this machine.",
                "",
                _floor(lat.transaction_floor),
                *_tuning(lat),
            ]
        )


def _log(ctx: Context, what: str, run: LatencyRun) -> None:
    for phase in run.phases:
        p = phase.produce_to_alert
        ctx.log(
            f"latency: {what} {phase.rate}/s (sent {phase.achieved_per_s or 0:,.0f}/s): "
            f"p50 {fmt(p.p50_ms, 'ms')} p99 {fmt(p.p99_ms, 'ms')} n={p.n}"
        )
