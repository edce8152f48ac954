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
from dataclasses import dataclass
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
from bench.markdown import fmt, table
from bench.preload import Preloaded, preload, windows_of
from bench.results import CpuUse, Figures
from bench.section import Section, Target

__all__ = ["Scaling", "ScalingResult", "ScalingSizes"]

PARTITIONS = 4
WARM_WINDOWS = 2_000
SESSION_TIMEOUT_MS = "120000"


@dataclass(frozen=True, slots=True)
class ScalingSizes:
    """Preloaded windows each configuration drains."""

    windows: int


class ProcessesRun(Figures):
    """K detector processes draining the same windows (start-up only for K = 1)."""

    processes: int
    startup_to_first_score_s: float | None = None
    windows: int
    preload_s: float
    seconds: float
    windows_per_s: float
    cpu_seconds_per_process: list[float]
    cpu_cores_per_process: list[float]
    cpu_us_per_window: float
    peak_rss_bytes_per_process: list[int | None]
    cpu_meter: CpuUse
    exit_codes: list[int | None]


class Resources(Figures):
    """One detector process: start-up, memory and CPU."""

    startup_to_first_score_s: float | None
    peak_rss_bytes: int | None
    cpu_cores_while_draining: float
    cpu_us_per_window: float


class ScalingResult(Figures):
    """One process, two processes, their ratio and one process's resources."""

    partitions: int
    encoding: str
    session_timeout_ms: int
    env: dict[str, str]
    one: ProcessesRun
    two: ProcessesRun
    ratio_two_vs_one: float | None
    resources: Resources


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


def _one(ctx: Context, k: int, n: int) -> ProcessesRun:
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
            ctx.workdir,
            instance=i + 1,
            options={"session.timeout.ms": SESSION_TIMEOUT_MS},
        )
        for i in range(k)
    ]
    watcher = CommitWatcher(ctx.bootstrap, names.group, names.windows_topic, PARTITIONS)
    startup_s: float | None = None
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
            startup_s = time.monotonic() - child.started_at
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
        rss = [c.peak_rss_bytes() for c in children]
        exits = [c.stop() for c in children]
        return ProcessesRun(
            processes=k,
            startup_to_first_score_s=startup_s,
            windows=n,
            preload_s=loaded.seconds,
            seconds=seconds,
            windows_per_s=n / seconds,
            cpu_seconds_per_process=cpu,
            cpu_cores_per_process=[c / seconds for c in cpu],
            cpu_us_per_window=sum(cpu) / n * 1e6,
            peak_rss_bytes_per_process=rss,
            cpu_meter=machine,
            exit_codes=exits,
        )
    finally:
        watcher.close()
        for child in children:
            child.stop()


def _explain(r: ScalingResult, _t: Target[ScalingResult]) -> str:
    meter = r.two.cpu_meter
    return (
        f"While two processes drained, the machine was busy "
        f"{fmt(meter.machine, 'num', 2)} of {fmt(meter.cores, 'num', 0)} "
        f"cores (this benchmark's processes and broker {fmt(meter.ours, 'num', 2)}, "
        f"other processes {fmt(meter.others, 'num', 2)}): the second process can only add "
        f"the CPU that is left. CPU per window: one process {fmt(r.one.cpu_us_per_window)} "
        f"µs, two {fmt(r.two.cpu_us_per_window)} µs."
    )


class Scaling(Section[ScalingResult, ScalingSizes]):
    """1 vs 2 detector processes in one group, and one process's resources."""

    name = "scaling"
    title = "Scaling and resources"
    result_type = ScalingResult
    quick = ScalingSizes(windows=40_000)
    full = ScalingSizes(windows=200_000)
    performance = True
    targets = (
        Target(
            "two_vs_one_process",
            "2 detector processes vs 1 (4 partitions)",
            "x",
            1.6,
            ">=",
            lambda r: r.ratio_two_vs_one,
            _explain,
        ),
    )

    def run(self, ctx: Context, sizes: ScalingSizes) -> ScalingResult:
        """One process, then two, on the same number of windows."""
        n = sizes.windows
        one = _one(ctx, 1, n)
        ctx.log(
            f"scaling: 1 process {one.windows_per_s:,.0f} windows/s, start-up "
            f"{fmt(one.startup_to_first_score_s, 's')}, peak RSS "
            f"{fmt(one.peak_rss_bytes_per_process[0], 'mib')}"
        )
        two = _one(ctx, 2, n)
        ctx.log(f"scaling: 2 processes {two.windows_per_s:,.0f} windows/s")
        return ScalingResult(
            partitions=PARTITIONS,
            encoding="binary",
            session_timeout_ms=int(SESSION_TIMEOUT_MS),
            env=TF_SINGLE_THREAD,
            one=one,
            two=two,
            ratio_two_vs_one=stats.ratio(two.windows_per_s, one.windows_per_s),
            resources=Resources(
                startup_to_first_score_s=one.startup_to_first_score_s,
                peak_rss_bytes=one.peak_rss_bytes_per_process[0],
                cpu_cores_while_draining=one.cpu_cores_per_process[0],
                cpu_us_per_window=one.cpu_us_per_window,
            ),
        )

    def render(self, result: ScalingResult) -> str:
        s = result
        rows = []
        for r in (s.one, s.two):
            meter = r.cpu_meter
            rows.append(
                [
                    str(r.processes),
                    fmt(r.windows_per_s, "int"),
                    fmt(r.seconds, "s", 2),
                    " + ".join(fmt(c, "num", 2) for c in r.cpu_cores_per_process),
                    fmt(r.cpu_us_per_window),
                    " + ".join(fmt(b, "mib") for b in r.peak_rss_bytes_per_process),
                    f"{fmt(meter.machine, 'num', 2)} ({fmt(meter.others, 'num', 2)})",
                ]
            )
        res = s.resources
        header = ["processes", "windows/s", "drain", "cores per process", "CPU µs/window"]
        return "\n".join(
            [
                f"#### Scaling and resources: detector processes (`python -m detector run`), "
                f"{fmt(s.one.windows, 'int')} preloaded binary windows, "
                f"{s.partitions} partitions",
                "",
                table([*header, "peak RSS", "machine busy (others), cores"], rows),
                "",
                f"2 vs 1: **{fmt(s.ratio_two_vs_one, 'x', 2)}**. One process: start-up to "
                f"first score {fmt(res.startup_to_first_score_s, 's', 1)} (process start to "
                f"the first scored window, the bundle load and TensorFlow import included), "
                f"peak RSS {fmt(res.peak_rss_bytes, 'mib')}, "
                f"{fmt(res.cpu_cores_while_draining, 'num', 2)} cores while draining. "
                f"Env {s.env}.",
            ]
        )
