"""Throughput on preloaded topics: consume-only ceiling, detector (binary, JSON), naive baseline.

The same simulated windows are preloaded twice, as binary and as JSON records, into two
4-partition topics. The variants (and the naive baseline, on a few messages) then run
interleaved, ``reps`` times each, every one with a fresh consumer group so that it reads the
topic from its start; rates are medians over repetitions, ratios medians of the ratios within
each repetition. No producer runs during a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from bench import stats
from bench.broker import create_topics
from bench.config import LIBRDKAFKA_BACKOFF, create_output_topics, detector_settings
from bench.context import Context
from bench.data import SIM_SOURCES, Encoding, sim_batches, train_rounds
from bench.inproc import STAGES, DrainResult, InProcessDetector, consume_only
from bench.markdown import fmt, table
from bench.naive import NaiveRun, naive_baseline
from bench.preload import preload, windows_of
from bench.results import DrainFigures, Figures
from bench.section import Section, Target
from detector.core import InputRecord

__all__ = ["Throughput", "ThroughputResult", "ThroughputSizes", "stage_line"]

PARTITIONS = 4
ANOMALY_RATE = 0.01


class Variant(Figures):
    """One way of draining the topic: its encoding, what runs, its settings overrides."""

    encoding: Encoding
    kind: Literal["consume_only", "read_only", "detector"]
    overrides: dict[str, Any] = Field(default_factory=dict)


# run interleaved, in this order
VARIANTS: dict[str, Variant] = {
    "consume_only_binary": Variant(encoding="binary", kind="consume_only"),
    "detector_binary": Variant(encoding="binary", kind="detector"),
    "detector_json": Variant(encoding="json", kind="detector"),
    "consume_only_json": Variant(encoding="json", kind="consume_only"),
    # reading alone (no decode): what the broker and librdkafka deliver of the 2.9 KB records
    "read_only_json": Variant(encoding="json", kind="read_only"),
    "detector_binary_batch8192": Variant(
        encoding="binary", kind="detector", overrides={"max_batch": 8192}
    ),
    "detector_binary_backoff": Variant(
        encoding="binary", kind="detector", overrides={"kafka": {"extra": LIBRDKAFKA_BACKOFF}}
    ),
    # threshold state written every 10 s (the former default) instead of in every batch's
    # transaction (exactly-once state): what the per-batch state costs
    "detector_binary_state_10s": Variant(
        encoding="binary", kind="detector", overrides={"state_interval_s": 10.0}
    ),
}
LABELS = {
    "consume_only_binary": "consume-only ceiling, binary (decode, discard)",
    "detector_binary": "detector, binary windows",
    "detector_json": "detector, JSON windows",
    "consume_only_json": "consume-only, JSON (decode, discard)",
    "read_only_json": "read-only, JSON (no decode)",
    "detector_binary_batch8192": "detector, binary, max_batch 8192",
    "detector_binary_backoff": "detector, binary, librdkafka default retry.backoff.ms 100",
    "detector_binary_state_10s": "detector, binary, threshold state every 10 s (not per batch)",
}
# ratio name -> (numerator, denominator) variants, paired within each repetition
PAIRS: dict[str, tuple[str, str]] = {
    "detector_binary_vs_consume_only": ("detector_binary", "consume_only_binary"),
    "detector_json_vs_consume_only_json": ("detector_json", "consume_only_json"),
    "consume_only_json_vs_read_only_json": ("consume_only_json", "read_only_json"),
    "detector_binary_batch8192_vs_consume_only": (
        "detector_binary_batch8192",
        "consume_only_binary",
    ),
    "detector_binary_backoff_vs_consume_only": ("detector_binary_backoff", "consume_only_binary"),
    "detector_binary_state_10s_vs_consume_only": (
        "detector_binary_state_10s",
        "consume_only_binary",
    ),
    "detector_json_vs_binary": ("detector_json", "detector_binary"),
    "detector_binary_vs_state_10s": ("detector_binary", "detector_binary_state_10s"),
}
# the ratio that compares each variant with its own ceiling, for the table
VS_CEILING = {
    "detector_binary": "detector_binary_vs_consume_only",
    "detector_binary_batch8192": "detector_binary_batch8192_vs_consume_only",
    "detector_binary_backoff": "detector_binary_backoff_vs_consume_only",
    "detector_binary_state_10s": "detector_binary_state_10s_vs_consume_only",
    "detector_json": "detector_json_vs_consume_only_json",
}


@dataclass(frozen=True, slots=True)
class ThroughputSizes:
    """Preloaded windows per topic, repetitions of each variant, naive baseline messages."""

    windows: int
    reps: int
    naive_windows: int


class DetectorDefaults(Figures):
    """The detector settings every variant starts from."""

    max_batch: int
    max_wait_s: float
    delivery: str
    threshold_method: str


class ThroughputResult(Figures):
    """Every variant's median drain, the naive baseline and the paired ratios.

    ``ratios`` holds the :data:`PAIRS` and ``detector_{binary,json}_vs_naive``.
    """

    windows: int
    partitions: int
    sources: int
    anomaly_rate: float
    window_shape: list[int]
    preload_seconds: dict[str, float]
    reps: int
    detector_settings: DetectorDefaults
    variants: dict[str, Variant]
    windows_per_s: dict[str, float | None]
    median: dict[str, DrainFigures]
    all_windows_per_s: dict[str, list[float]]
    naive: NaiveRun
    ratios_how: str
    ratios: dict[str, float | None]

    def rate(self, variant: str) -> float | None:
        """A variant's median windows per second."""
        drain = self.median.get(variant)
        return None if drain is None else drain.windows_per_s


def _discard(_record: InputRecord) -> None:
    """No decode: the read-only variant's per-record work."""


def _median_of(runs: list[DrainResult]) -> DrainResult:
    """The run closest to the median rate (its stage breakdown is the one reported)."""
    middle = stats.median(r.per_s for r in runs) or 0.0
    return min(runs, key=lambda r: abs(r.per_s - middle))


def _drain(ctx: Context, variant: Variant, topic: str, run: str, n: int) -> DrainResult:
    create_output_topics(ctx.bootstrap, run, PARTITIONS)
    settings = detector_settings(
        ctx.bootstrap, str(ctx.sim_bundle), topic, run, partitions=PARTITIONS, **variant.overrides
    )
    timeout = 60 + n / 2000
    if variant.kind == "consume_only":
        return consume_only(settings, n, timeout)
    if variant.kind == "read_only":
        return consume_only(settings, n, timeout, decode=_discard)
    model = ctx.model(ctx.sim_bundle)
    det = InProcessDetector(settings, model.scorer, model.manifest, expect=n)
    det.start()
    try:
        return det.wait(timeout)
    finally:
        det.stop()


def stage_line(stage_us: dict[str, float | None]) -> str:
    """Microseconds per window of each stage, in the loop's order."""
    return ", ".join(f"{s} {fmt(stage_us.get(s), 'num', 1)}" for s in STAGES)


def _explain_binary(r: ThroughputResult, _t: Target[ThroughputResult]) -> str:
    det = r.median.get("detector_binary")
    rate, ceiling = r.rate("detector_binary"), r.rate("consume_only_binary")
    stage = det.stage_us_per_window if det else {}
    score_us = stage.get("score")
    loop_us = sum(stage.get(k) or 0.0 for k in ("consume", "prepare", "decide"))
    return (
        f"The detector spends {fmt(1e6 / rate if rate else None)} µs per binary window where "
        f"decode-and-discard spends {fmt(1e6 / ceiling if ceiling else None)}. Per window (µs): "
        f"{stage_line(stage)}. The loop's own "
        f"Python work (consume, prepare, decide) is {fmt(loop_us)} µs; the model call "
        f"({fmt(score_us)} µs of wall time on the scorer thread, a ceiling of "
        f"{fmt(1e6 / score_us if score_us else None, 'int')} windows/s) and publish (one "
        f"exactly-once transaction per batch of {fmt(det.mean_batch if det else None, 'int')} "
        f"windows, on the publisher thread) overlap with it, so the stages add up to more "
        f"than the total; the threads, librdkafka and the broker share the machine's cores."
    )


def _explain_json(r: ThroughputResult, t: Target[ThroughputResult]) -> str:
    det = r.median.get("detector_json")
    return (
        f"{fmt(t.bound, 'int')} windows/s leaves {fmt(1e6 / t.bound, 'num', 0)} µs per window "
        f"for everything. With JSON windows the detector spent (µs/window): "
        f"{stage_line(det.stage_us_per_window if det else {})} (score overlapped on the "
        f"scorer thread); reading and decoding the JSON topic and discarding the windows "
        f"reached {fmt(r.rate('consume_only_json'), 'int')} windows/s in the same run, and "
        f"reading them alone (no decode) {fmt(r.rate('read_only_json'), 'int')} windows/s: "
        f"the ceiling of any consumer of this topic on this machine, before any work."
    )


def _explain_naive(_r: ThroughputResult, _t: Target[ThroughputResult]) -> str:
    return (
        "The naive baseline's per-message model.predict dominates its cost; the ratio "
        "moves with the detector's own throughput (see above)."
    )


class Throughput(Section[ThroughputResult, ThroughputSizes]):
    """The detector's drain rate against its ceilings and the naive baseline."""

    name = "throughput"
    title = "Throughput"
    result_type = ThroughputResult
    quick = ThroughputSizes(windows=30_000, reps=2, naive_windows=40)
    full = ThroughputSizes(windows=200_000, reps=3, naive_windows=200)
    performance = True
    targets = (
        Target(
            "binary_vs_consume_only",
            "Detector with binary windows vs the consume-only ceiling",
            "x",
            0.5,
            ">=",
            lambda r: r.ratios.get("detector_binary_vs_consume_only"),
            _explain_binary,
        ),
        Target(
            "json_windows_per_s",
            "Detector with JSON windows (this machine)",
            "windows/s",
            30_000,
            ">=",
            lambda r: r.rate("detector_json"),
            _explain_json,
        ),
        Target(
            "detector_vs_naive",
            "Detector (JSON) vs the naive per-message baseline (JSON)",
            "x",
            1000,
            ">=",
            lambda r: r.ratios.get("detector_json_vs_naive"),
            _explain_naive,
        ),
    )

    def run(self, ctx: Context, sizes: ThroughputSizes) -> ThroughputResult:
        """All throughput variants of one run, with their ratios."""
        n = sizes.windows
        topics: dict[str, str] = {enc: ctx.name(f"tput-{enc}") for enc in ("binary", "json")}
        create_topics(ctx.bootstrap, dict.fromkeys(topics.values(), PARTITIONS))
        loads: dict[str, float] = {}
        for enc, topic in topics.items():
            stream = sim_batches(
                n, skip_rounds=train_rounds(ctx.cfg.sim_train_windows), anomaly_rate=ANOMALY_RATE
            )
            done = preload(
                ctx.bootstrap, topic, windows_of(stream), "binary" if enc == "binary" else "json"
            )
            loads[enc] = done.seconds
            ctx.log(f"throughput: preloaded {done.count} {enc} windows in {done.seconds:.1f} s")
        model = ctx.model(ctx.sim_bundle)
        runs: dict[str, list[DrainResult]] = {name: [] for name in VARIANTS}
        naive_each = max(20, sizes.naive_windows // sizes.reps)
        naives: list[NaiveRun] = []
        for rep in range(sizes.reps):
            for name, variant in VARIANTS.items():
                run = ctx.name(f"tput-{name}-{rep}")
                result = _drain(ctx, variant, topics[variant.encoding], run, n)
                runs[name].append(result)
                ctx.log(f"throughput: {name} rep {rep + 1}: {result.per_s:,.0f} windows/s")
            naive = naive_baseline(
                ctx.bootstrap,
                topics["json"],
                ctx.name(f"naive-alerts-{rep}"),
                ctx.name(f"naive-group-{rep}"),
                ctx.sim_bundle,
                model.manifest,
                naive_each,
                timeout_s=60 + naive_each * 1.0,
            )
            naives.append(naive)
            ctx.log(
                f"throughput: naive baseline rep {rep + 1}: "
                f"{naive.windows_per_s or 0:,.1f} windows/s"
            )
        defaults = detector_settings(ctx.bootstrap, str(ctx.sim_bundle), topics["binary"], "x")
        naive_runs = [float(r.windows_per_s or 0.0) for r in naives]
        naive_rate = stats.median(naive_runs)
        per_s = {k: stats.median(r.per_s for r in v) for k, v in runs.items()}
        ratios = {
            key: stats.median_ratio([r.per_s for r in runs[a]], [r.per_s for r in runs[b]])
            for key, (a, b) in PAIRS.items()
        }
        for enc in ("binary", "json"):
            ratios[f"detector_{enc}_vs_naive"] = stats.median_ratio(
                [r.per_s for r in runs[f"detector_{enc}"]], naive_runs
            )
        return ThroughputResult(
            windows=n,
            partitions=PARTITIONS,
            sources=SIM_SOURCES,
            anomaly_rate=ANOMALY_RATE,
            window_shape=[model.manifest.window_size, model.manifest.n_channels],
            preload_seconds=loads,
            reps=sizes.reps,
            detector_settings=DetectorDefaults(
                max_batch=defaults.max_batch,
                max_wait_s=defaults.max_wait_s,
                delivery=defaults.delivery,
                threshold_method=defaults.threshold.method,
            ),
            variants=VARIANTS,
            windows_per_s=per_s,
            median={
                k: DrainFigures.model_validate(
                    {**_median_of(v).as_dict(), "windows_per_s": per_s[k]}
                )
                for k, v in runs.items()
            },
            all_windows_per_s={k: [r.per_s for r in v] for k, v in runs.items()},
            naive=naives[0].model_copy(
                update={
                    "windows": naive_each * sizes.reps,
                    "windows_per_s": naive_rate,
                    "ms_per_window": 1000 / (naive_rate or float("inf")),
                    "runs_windows_per_s": naive_runs,
                    "alerts": sum(r.alerts for r in naives),
                }
            ),
            ratios_how="median over repetitions of the ratio within each repetition "
            "(the variants of one repetition run back to back)",
            ratios=ratios,
        )

    def render(self, result: ThroughputResult) -> str:
        t = result
        rows = []
        for key, label in LABELS.items():
            drain = t.median.get(key)
            stage = drain.stage_us_per_window if drain else {}
            vs = 1.0 if key.startswith("consume_only") else t.ratios.get(VS_CEILING.get(key, ""))
            rows.append(
                [
                    label,
                    fmt(t.rate(key), "int"),
                    fmt(vs, "x", 2),
                    fmt(drain.mean_batch if drain else None, "int"),
                    *(fmt(stage.get(s)) if stage else "" for s in STAGES),
                ]
            )
        json_ceiling = t.rate("consume_only_json")
        naive = t.naive
        rows.append(
            [
                f"naive baseline ({naive.windows} msgs, JSON, predict per message)",
                fmt(naive.windows_per_s, "num", 1),
                fmt((naive.windows_per_s or 0) / json_ceiling if json_ceiling else None, "x", 5),
                "1",
                *("" for _ in STAGES),
            ]
        )
        det = t.detector_settings
        binary, json_ = t.median.get("detector_binary"), t.median.get("detector_json")
        return "\n".join(
            [
                f"#### Throughput: {fmt(t.windows, 'int')} preloaded windows "
                f"({t.window_shape}), {t.partitions} partitions, "
                f"{t.sources} sources; median of {t.reps} interleaved runs",
                "",
                table(
                    [
                        "variant",
                        "windows/s",
                        "vs its ceiling",
                        "mean batch",
                        *(f"{s} µs/w" for s in STAGES),
                    ],
                    rows,
                ),
                "",
                "Thread CPU per window, binary (µs): "
                + stage_line(binary.stage_cpu_us_per_window if binary else {})
                + "; JSON: "
                + stage_line(json_.stage_cpu_us_per_window if json_ else {})
                + ". Wall time above includes waiting: for the broker in publish, for the "
                "CPU when other processes hold it.",
                "",
                f"Detector vs naive: {fmt(t.ratios.get('detector_json_vs_naive'), 'x', 0)} "
                f"(JSON), {fmt(t.ratios.get('detector_binary_vs_naive'), 'x', 0)} (binary). "
                f"JSON vs binary: {fmt(t.ratios.get('detector_json_vs_binary'), 'x', 2)}. "
                f"Detector settings: max_batch {det.max_batch}, max_wait_s "
                f"{det.max_wait_s}, {det.delivery}, thresholds "
                f"{det.threshold_method}. Runs (windows/s): "
                + "; ".join(
                    f"{k} {', '.join(fmt(x, 'int') for x in v)}"
                    for k, v in t.all_windows_per_s.items()
                )
                + ".",
            ]
        )
