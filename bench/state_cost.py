"""``python -m bench.state_cost``: what exactly-once state costs, paired runs on a real broker.

Exactly-once state (``state_interval_s`` 0, the default) puts the threshold state of every
source a batch touched into that batch's transaction; the former default wrote it every 10 s.
This preloads simulated binary windows once (as the throughput section does) and drains them
with the in-process detector, alternating the two settings (order swapped every pair, so a
slow drift of the machine's load falls on both), for each threshold method asked. Wall-clock
rates on a shared machine are noisy; CPU per window (this process and the broker's JVM) is
less so. Prints (and with ``--out`` writes) a JSON document: per variant the runs, their
medians, and state records and bytes written; per method the median of the paired ratios.

Example::

    python -m bench.state_cost --sim-bundle ~/.cache/vae-stream-detector/bench/sim-ecg-<key>
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

PARTITIONS = 4
INTERVALS = (0.0, 10.0)  # exactly-once state; the former default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.state_cost", description=__doc__)
    parser.add_argument("--sim-bundle", type=Path, required=True, help="simulated-ECG bundle")
    parser.add_argument("--windows", type=int, default=30_000, help="preloaded windows")
    parser.add_argument("--pairs", type=int, default=6, help="paired runs per method")
    parser.add_argument("--methods", default="adaptive,quantile", help="threshold methods")
    parser.add_argument("--max-batch", type=int, default=2048)
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    return parser


def _state_written(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records, value bytes) on a state topic."""
    from bench.broker import read_topic

    fetched = read_topic(bootstrap, topic, timeout_s=60)
    return len(fetched), sum(len(value or b"") for _p, _o, _k, value, _h in fetched)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for key, value in {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import orjson

    from bench import stats
    from bench.broker import create_topics, open_broker, run_tag
    from bench.config import QUICK, create_output_topics, detector_settings, topic_names
    from bench.context import Context
    from bench.data import SIM_SOURCES, sim_batches, train_rounds
    from bench.inproc import InProcessDetector
    from bench.machine import CpuMeter
    from bench.preload import preload, windows_of
    from detector.log import configure_logging

    configure_logging("ERROR", "json")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    n = args.windows
    with open_broker() as broker:
        ctx = Context(broker, run_tag(), QUICK, args.sim_bundle, None)
        topic = ctx.name("state-cost")
        create_topics(ctx.bootstrap, {topic: PARTITIONS})
        stream = sim_batches(
            n, skip_rounds=train_rounds(QUICK.sim_train_windows), anomaly_rate=0.01
        )
        preload(ctx.bootstrap, topic, windows_of(stream), "binary")
        model = ctx.model(args.sim_bundle)
        runs: dict[str, list[dict[str, float]]] = {}
        for rep in range(args.pairs):
            for method in methods:
                order = INTERVALS if rep % 2 == 0 else INTERVALS[::-1]
                for interval in order:
                    variant = f"{method}_state_{interval:g}s"
                    run = ctx.name(f"sc-{method}-{interval:g}-{rep}")
                    create_output_topics(ctx.bootstrap, run, PARTITIONS)
                    settings = detector_settings(
                        ctx.bootstrap,
                        str(args.sim_bundle),
                        topic,
                        run,
                        partitions=PARTITIONS,
                        threshold={"method": method},
                        state_interval_s=interval,
                        max_batch=args.max_batch,
                    )
                    det = InProcessDetector(settings, model.scorer, model.manifest, expect=n)
                    meter = CpuMeter([broker.pid] if broker.pid else []).start()
                    det.start()
                    try:
                        result = det.wait(60 + n / 1000)
                    finally:
                        cpu = meter.stop()
                        det.stop()
                    records, size = _state_written(ctx.bootstrap, topic_names(run)["state"])
                    ours = (cpu.ours or 0.0) * cpu.seconds
                    runs.setdefault(variant, []).append(
                        {
                            "windows_per_s": result.per_s,
                            "cpu_us_per_window": ours / n * 1e6,
                            "batches": result.batches,
                            "state_records": records,
                            "state_bytes": size,
                            "others_cores": cpu.others or 0.0,
                        }
                    )
                    ctx.log(f"{variant} rep {rep + 1}: {result.per_s:,.0f} windows/s")

    def med(variant: str, key: str) -> float | None:
        return stats.median(r[key] for r in runs[variant])

    def paired(a: str, b: str, key: str) -> float | None:
        return stats.median_ratio([r[key] for r in runs[a]], [r[key] for r in runs[b]])

    doc: dict[str, Any] = {
        "command": "python -m bench.state_cost " + " ".join(sys.argv[1:] if argv is None else argv),
        "windows": n,
        "partitions": PARTITIONS,
        "sources": SIM_SOURCES,
        "max_batch": args.max_batch,
        "pairs": args.pairs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "median": {v: {k: med(v, k) for k in runs[v][0]} for v in runs},
        "ratios_exactly_once_vs_10s": {
            m: {
                key: paired(f"{m}_state_0s", f"{m}_state_10s", key)
                for key in ("windows_per_s", "cpu_us_per_window")
            }
            for m in methods
        },
        "runs": runs,
    }
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
