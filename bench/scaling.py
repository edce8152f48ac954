"""Scaling (1 vs 2 detector processes in one group) and the detector process's resources.

Each configuration gets a fresh 4-partition topic and consumer group. Its K processes start,
join the group and settle (every partition assigned, a warm-up prefix scored by each), then
are frozen with SIGSTOP while N windows are preloaded (so the producer takes no CPU from
them), and thawed with SIGCONT: the clock runs from the thaw to the moment the group's
committed offsets cover every window. Static membership and a long session timeout keep the
frozen members in the group. The one-process run also gives start-up time to first score
(the topic holds the warm-up prefix before it starts), peak RSS (VmHWM) and CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from bench import stats
from bench.broker import CommitWatcher, create_topics, wait_until
from bench.config import create_output_topics
from bench.context import Context
from bench.data import sim_batches, train_rounds
from bench.detector_proc import TF_SINGLE_THREAD, DetectorRun, detector_child, wait_ready
from bench.machine import CpuMeter
from bench.preload import Preloaded, preload, windows_of

__all__ = ["run_scaling"]

PARTITIONS = 4
WARM_WINDOWS = 2_000
SESSION_TIMEOUT_MS = "120000"


def _group_settled(bootstrap: str, group: str, members: int) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        desc: Any = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except Exception:
        return False
    if desc.state != ConsumerGroupState.STABLE or len(desc.members) != members:
        return False
    parts = [len(m.assignment.topic_partitions) for m in desc.members]
    return sum(parts) == PARTITIONS and min(parts) > 0


def _load(ctx: Context, topic: str, n: int, seed: int) -> Preloaded:
    # seed picks the part of the patients' stream: beats after the training rounds
    skip = train_rounds(ctx.cfg.sim_train_windows) + seed
    stream = sim_batches(n, skip_rounds=skip, anomaly_rate=0.01)
    return preload(ctx.bootstrap, topic, windows_of(stream), "binary")


def _one(ctx: Context, k: int, n: int, workdir: Path) -> dict[str, Any]:
    names = DetectorRun(ctx.name(f"scale{k}-windows"), ctx.name(f"scale{k}"), PARTITIONS)
    create_topics(ctx.bootstrap, {names.windows_topic: PARTITIONS})
    create_output_topics(ctx.bootstrap, names.run, PARTITIONS)
    if k == 1:  # start-up is timed to the first score: the data must be there first
        _load(ctx, names.windows_topic, WARM_WINDOWS, seed=0)
    children = [
        detector_child(
            ctx.bootstrap,
            ctx.sim_bundle,
            names,
            workdir,
            instance=i + 1,
            options={"session.timeout.ms": SESSION_TIMEOUT_MS},
        )
        for i in range(k)
    ]
    watcher = CommitWatcher(ctx.bootstrap, names.group, names.windows_topic, PARTITIONS)
    out: dict[str, Any] = {"processes": k}
    try:
        for child in children:
            child.start()
        if k == 1:
            child = children[0]

            def scored() -> bool:
                child.check_alive()
                value = child.metric("detector_windows_total", {"outcome": "scored"})
                return value is not None and value > 0

            wait_until(scored, 180, "the first scored window")
            assert child.started_at is not None
            out["startup_to_first_score_s"] = time.monotonic() - child.started_at
        wait_ready(children, 180)
        wait_until(
            lambda: _group_settled(ctx.bootstrap, names.group, k), 120, f"{k} members settled"
        )
        if k > 1:
            _load(ctx, names.windows_topic, WARM_WINDOWS, seed=0)
        watcher.wait(WARM_WINDOWS, 120, "the warm-up prefix")
        for child in children:
            child.suspend()
        loaded = _load(ctx, names.windows_topic, n, seed=WARM_WINDOWS // 16 + 1)
        target = WARM_WINDOWS + n
        pids = [c.pid for c in children] + ([ctx.broker.pid] if ctx.broker.pid else [])
        cpu_before = [c.cpu_seconds() or 0.0 for c in children]
        meter = CpuMeter(pids).start()
        t0 = time.monotonic()
        for child in children:
            child.resume()
        watcher.wait(target, 60 + n / 1000, f"{n} windows committed")
        seconds = time.monotonic() - t0
        machine = meter.stop()
        cpu = [(c.cpu_seconds() or 0.0) - b for c, b in zip(children, cpu_before, strict=True)]
        out.update(
            {
                "windows": n,
                "preload_s": loaded.seconds,
                "seconds": seconds,
                "windows_per_s": n / seconds,
                "cpu_seconds_per_process": cpu,
                "cpu_cores_per_process": [c / seconds for c in cpu],
                "cpu_us_per_window": sum(cpu) / n * 1e6,
                "peak_rss_bytes_per_process": [c.peak_rss_bytes() for c in children],
                "cpu_meter": machine,
            }
        )
        exits = [c.stop() for c in children]
        out["exit_codes"] = exits
    finally:
        watcher.close()
        for child in children:
            child.stop()
    return out


def run_scaling(ctx: Context, workdir: Path) -> dict[str, Any]:
    """One process, then two, on the same number of windows."""
    n = ctx.cfg.scaling_windows
    one = _one(ctx, 1, n, workdir)
    ctx.log(
        f"scaling: 1 process {one['windows_per_s']:,.0f} windows/s, start-up "
        f"{one['startup_to_first_score_s']:.1f} s, peak RSS "
        f"{(one['peak_rss_bytes_per_process'][0] or 0) / 2**20:.0f} MiB"
    )
    two = _one(ctx, 2, n, workdir)
    ctx.log(f"scaling: 2 processes {two['windows_per_s']:,.0f} windows/s")
    return {
        "partitions": PARTITIONS,
        "encoding": "binary",
        "session_timeout_ms": int(SESSION_TIMEOUT_MS),
        "env": TF_SINGLE_THREAD,
        "one": one,
        "two": two,
        "ratio_two_vs_one": stats.ratio(two["windows_per_s"], one["windows_per_s"]),
        "resources": {
            "startup_to_first_score_s": one["startup_to_first_score_s"],
            "peak_rss_bytes": one["peak_rss_bytes_per_process"][0],
            "cpu_cores_while_draining": one["cpu_cores_per_process"][0],
            "cpu_us_per_window": one["cpu_us_per_window"],
        },
    }
