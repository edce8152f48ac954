"""Throughput on preloaded topics: consume-only ceiling, detector (binary, JSON), naive baseline.

The same simulated windows are preloaded twice, as binary and as JSON records, into two
4-partition topics. The variants (and the naive baseline, on a few messages) then run
interleaved, ``reps`` times each, every one with a fresh consumer group so that it reads the
topic from its start; rates are medians over repetitions, ratios medians of the ratios within
each repetition. No producer runs during a measurement.
"""

from __future__ import annotations

from typing import Any

from bench import stats
from bench.broker import create_topics
from bench.config import LIBRDKAFKA_BACKOFF, create_output_topics, detector_settings
from bench.context import Context
from bench.data import SIM_SOURCES, sim_batches, train_rounds
from bench.inproc import DrainResult, InProcessDetector, consume_only
from bench.naive import naive_baseline
from bench.preload import preload, windows_of
from detector.core import InputRecord

__all__ = ["run_throughput"]

PARTITIONS = 4
ANOMALY_RATE = 0.01
# name -> (encoding, what runs, settings overrides); run interleaved, in this order
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "consume_only_binary": ("binary", "consume_only", {}),
    "detector_binary": ("binary", "detector", {}),
    "detector_json": ("json", "detector", {}),
    "consume_only_json": ("json", "consume_only", {}),
    # reading alone (no decode): what the broker and librdkafka deliver of the 2.9 KB records
    "read_only_json": ("json", "read_only", {}),
    "detector_binary_batch8192": ("binary", "detector", {"max_batch": 8192}),
    "detector_binary_backoff": (
        "binary",
        "detector",
        {"kafka": {"extra": LIBRDKAFKA_BACKOFF}},
    ),
    # threshold state written every 10 s (the former default) instead of in every batch's
    # transaction (exactly-once state): what the per-batch state costs
    "detector_binary_state_10s": ("binary", "detector", {"state_interval_s": 10.0}),
}


def _discard(_record: InputRecord) -> None:
    """No decode: the read-only variant's per-record work."""


def _median_of(runs: list[DrainResult]) -> DrainResult:
    """The run closest to the median rate (its stage breakdown is the one reported)."""
    middle = stats.median(r.per_s for r in runs) or 0.0
    return min(runs, key=lambda r: abs(r.per_s - middle))


def run_throughput(ctx: Context) -> dict[str, Any]:
    """All throughput variants of one run, with their ratios."""
    cfg = ctx.cfg
    n = cfg.throughput_windows
    topics = {enc: ctx.name(f"tput-{enc}") for enc in ("binary", "json")}
    create_topics(ctx.bootstrap, dict.fromkeys(topics.values(), PARTITIONS))
    loads: dict[str, float] = {}
    for enc, topic in topics.items():
        stream = sim_batches(
            n, skip_rounds=train_rounds(cfg.sim_train_windows), anomaly_rate=ANOMALY_RATE
        )
        done = preload(
            ctx.bootstrap, topic, windows_of(stream), "binary" if enc == "binary" else "json"
        )
        loads[enc] = done.seconds
        ctx.log(f"throughput: preloaded {done.count} {enc} windows in {done.seconds:.1f} s")
    model = ctx.model(ctx.sim_bundle)
    runs: dict[str, list[DrainResult]] = {name: [] for name in VARIANTS}
    timeout = 60 + n / 2000
    naive_each = max(20, cfg.naive_windows // cfg.reps)
    naives: list[dict[str, Any]] = []
    settings = None
    for rep in range(cfg.reps):
        for variant, (enc, kind, overrides) in VARIANTS.items():
            run = ctx.name(f"tput-{variant}-{rep}")
            create_output_topics(ctx.bootstrap, run, PARTITIONS)
            settings = detector_settings(
                ctx.bootstrap,
                str(ctx.sim_bundle),
                topics[enc],
                run,
                partitions=PARTITIONS,
                **overrides,
            )
            if kind == "consume_only":
                result = consume_only(settings, n, timeout)
            elif kind == "read_only":
                result = consume_only(settings, n, timeout, decode=_discard)
            else:
                det = InProcessDetector(settings, model.scorer, model.manifest, expect=n)
                det.start()
                try:
                    result = det.wait(timeout)
                finally:
                    det.stop()
            runs[variant].append(result)
            ctx.log(f"throughput: {variant} rep {rep + 1}: {result.per_s:,.0f} windows/s")
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
            f"throughput: naive baseline rep {rep + 1}: {naive['windows_per_s']:,.1f} windows/s"
        )
    defaults = detector_settings(ctx.bootstrap, str(ctx.sim_bundle), topics["binary"], "x")
    naive_runs = [float(r["windows_per_s"]) for r in naives]
    naive = {
        **naives[0],
        "windows": naive_each * cfg.reps,
        "windows_per_s": stats.median(naive_runs),
        "ms_per_window": 1000 / (stats.median(naive_runs) or float("inf")),
        "runs_windows_per_s": naive_runs,
        "alerts": sum(int(r["alerts"]) for r in naives),
    }
    medians = {k: _median_of(v) for k, v in runs.items()}
    per_s = {k: stats.median(r.per_s for r in v) for k, v in runs.items()}

    def paired(a: str, b: str) -> float | None:
        return stats.median_ratio([r.per_s for r in runs[a]], [r.per_s for r in runs[b]])

    return {
        "windows": n,
        "partitions": PARTITIONS,
        "sources": SIM_SOURCES,
        "anomaly_rate": ANOMALY_RATE,
        "window_shape": [model.manifest.window_size, model.manifest.n_channels],
        "preload_seconds": loads,
        "reps": cfg.reps,
        "detector_settings": {
            "max_batch": defaults.max_batch,
            "max_wait_s": defaults.max_wait_s,
            "delivery": defaults.delivery,
            "threshold_method": defaults.threshold.method,
        },
        "variants": {k: {"encoding": e, "kind": c, **o} for k, (e, c, o) in VARIANTS.items()},
        "windows_per_s": per_s,
        "median": {k: {**m.as_dict(), "windows_per_s": per_s[k]} for k, m in medians.items()},
        "all_windows_per_s": {k: [r.per_s for r in v] for k, v in runs.items()},
        "naive": naive,
        "ratios_how": "median over repetitions of the ratio within each repetition "
        "(the variants of one repetition run back to back)",
        "ratios": {
            "detector_binary_vs_consume_only": paired("detector_binary", "consume_only_binary"),
            "detector_json_vs_consume_only_json": paired("detector_json", "consume_only_json"),
            "consume_only_json_vs_read_only_json": paired("consume_only_json", "read_only_json"),
            "detector_binary_batch8192_vs_consume_only": paired(
                "detector_binary_batch8192", "consume_only_binary"
            ),
            "detector_binary_backoff_vs_consume_only": paired(
                "detector_binary_backoff", "consume_only_binary"
            ),
            "detector_binary_state_10s_vs_consume_only": paired(
                "detector_binary_state_10s", "consume_only_binary"
            ),
            "detector_json_vs_binary": paired("detector_json", "detector_binary"),
            "detector_binary_vs_state_10s": paired("detector_binary", "detector_binary_state_10s"),
            "detector_binary_vs_naive": stats.median_ratio(
                [r.per_s for r in runs["detector_binary"]], naive_runs
            ),
            "detector_json_vs_naive": stats.median_ratio(
                [r.per_s for r in runs["detector_json"]], naive_runs
            ),
        },
    }
