"""One benchmark run: broker, bundles, the registry's sections, targets, results, Markdown."""

from __future__ import annotations

import argparse
import contextlib
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import registry
from bench.broker import BrokerInfo, open_broker, run_tag
from bench.bundles import BundleJob, write_sim_npz
from bench.config import MODES, ModeConfig
from bench.context import Context
from bench.data import SIM_SEED, ecg5000_path
from bench.machine import CpuMeter, machine_facts
from bench.markdown import fmt, replace_section
from bench.report import render_section, summary
from bench.results import (
    BrokerDoc,
    BundleInfo,
    CpuUse,
    Figures,
    QuietWait,
    RunResults,
    write_json,
)
from bench.section import Section, SectionSkippedError
from detector.bundle import read_manifest

__all__ = ["run"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _bundle_info(path: Path, source: str, command: str | None) -> BundleInfo:
    m = read_manifest(path)
    return BundleInfo(
        path=str(path),
        model_id=m.model_id,
        arch=m.arch,
        window=[m.window_size, m.n_channels],
        threshold=m.threshold.value,
        target_far=m.threshold.target_far,
        source=source,
        metrics=m.metrics,
        training_command=command,
    )


def _bundle_jobs(args: argparse.Namespace, cfg: ModeConfig, workdir: Path) -> list[BundleJob]:
    jobs: list[BundleJob] = []
    if args.sim_bundle is None:
        npz = workdir / "sim-train.npz"
        jobs.append(
            BundleJob(
                "sim-ecg",
                npz,
                list(cfg.sim_fit_args),
                [f"n={cfg.sim_train_windows}", f"seed={SIM_SEED}"],
                make_data=lambda: write_sim_npz(npz, cfg.sim_train_windows),
            )
        )
    data = ecg5000_path()
    if args.ecg_bundle is None and data.is_file():
        jobs.append(BundleJob("ecg5000", data, list(cfg.ecg_fit_args)))
    return jobs


def _bundles(
    args: argparse.Namespace, jobs: list[BundleJob], log: Callable[[str], None]
) -> tuple[Path, Path | None, dict[str, BundleInfo]]:
    by_name = {job.name: job for job in jobs}
    info: dict[str, BundleInfo] = {}
    paths: dict[str, Path | None] = {}
    for name, given, label in (
        ("sim-ecg", args.sim_bundle, "simulated ECG"),
        ("ecg5000", args.ecg_bundle, "ECG5000"),
    ):
        job = by_name.get(name)
        if given is not None:
            path, how, command = given.resolve(), "given", None
        elif job is not None:
            path = job.result()
            how, command = job.how, " ".join(job.command()[:-2])
        else:
            paths[name] = None
            continue
        paths[name] = path
        info[label] = _bundle_info(path, how, command)
        log(f"bundles: {label} {info[label].model_id} ({how})")
    sim = paths["sim-ecg"]
    assert sim is not None
    return sim, paths["ecg5000"], info


QUIET_CORES = 0.3


def _await_quiet(ctx: Context, budget_s: float) -> QuietWait:
    """Wait (at most ``budget_s``) until other processes use under QUIET_CORES cores.

    On a shared host a neighbour's burst ruins a throughput figure; waiting it out is cheap.
    Returns what was seen, for the results file.
    """
    pids = [ctx.broker.pid] if ctx.broker.pid else []
    started = time.monotonic()
    while True:
        meter = CpuMeter(pids).start()
        time.sleep(1.0)
        others = meter.stop().others or 0.0
        waited = time.monotonic() - started
        if others < QUIET_CORES or waited >= budget_s:
            if waited > 1.5:
                ctx.log(f"waited {waited:.0f} s for other processes ({others:.2f} cores now)")
            return QuietWait(waited_s=waited, others_cores=others, quiet=others < QUIET_CORES)


def _section(
    section: Section[Any, Any], ctx: Context, mode: str
) -> tuple[Figures | None, str | None, str | None]:
    """(result, skipped reason, error) of one section; a failure never stops the run."""
    try:
        return section.run(ctx, section.sizes(mode)), None, None
    except SectionSkippedError as exc:
        ctx.log(f"{section.name}: skipped: {exc}")
        return None, str(exc), None
    except Exception as exc:
        ctx.log(f"{section.name}: FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        return None, None, f"{type(exc).__name__}: {exc}"


def run(mode: str, only: list[str], command: str, args: argparse.Namespace, workdir: Path) -> int:
    """Run the sections in ``only``; write the results and (for a whole run) the Markdown."""
    from detector.log import configure_logging

    configure_logging("WARNING", "json")
    cfg = MODES[mode]
    started_at, t0 = _now(), time.monotonic()
    partial = set(only) != set(registry.names())
    print(f"bench: {command} ({mode} mode)", flush=True)
    sections: dict[str, Figures] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    cpu: dict[str, CpuUse] = {}
    seconds: dict[str, float] = {}
    quiet: dict[str, QuietWait] = {}
    jobs = _bundle_jobs(args, cfg, workdir)
    for job in jobs:
        if not job.cached:
            print(f"[bench    0.0s] bundles: training {job.name} (cached for later runs)")
        job.start()
    with contextlib.ExitStack() as cleanup:
        for job in jobs:
            cleanup.callback(job.kill)
        broker = cleanup.enter_context(open_broker())
        ctx = Context(broker, run_tag(), cfg, Path("."), None, workdir, started=t0)
        ctx.log(
            f"broker: {broker.origin} at {broker.bootstrap_servers}"
            + (f", started in {broker.start_s:.1f} s" if broker.start_s else "")
        )
        machine = machine_facts(broker.kafka_version, broker.origin)
        sim, ecg, bundles = _bundles(args, jobs, ctx.log)
        ctx.sim_bundle, ctx.ecg_bundle = sim, ecg
        for section in registry.SECTIONS:
            name = section.name
            if name not in only:
                continue
            if section.performance and args.wait_quiet > 0:
                quiet[name] = _await_quiet(ctx, args.wait_quiet)
            ctx.log(f"{name}: starting")
            meter = CpuMeter([broker.pid] if broker.pid else []).start()
            began = time.monotonic()
            result, skip, error = _section(section, ctx, mode)
            seconds[name] = time.monotonic() - began
            cpu[name] = meter.stop()
            if result is not None:
                sections[name] = result
            if skip is not None:
                skipped[name] = skip
            if error is not None:
                errors[name] = error
            ctx.log(
                f"{name}: done in {seconds[name]:.0f} s (machine busy "
                f"{fmt(cpu[name].machine, 'num', 2)} cores, other processes "
                f"{fmt(cpu[name].others, 'num', 2)})"
            )
    out_file = args.out / (f"{mode}-partial.json" if partial else f"{mode}.json")
    targets = registry.evaluate(sections)
    results = RunResults(
        mode=mode,
        command=command,
        started_at=started_at,
        finished_at=_now(),
        duration_s=time.monotonic() - t0,
        results_file=str(out_file),
        sections_run=only,
        machine=machine,
        broker=_broker_doc(broker),
        config={
            **cfg.as_dict(),
            "sections": {s.name: s.sizes_doc(mode) for s in registry.SECTIONS},
        },
        bundles=bundles,
        section_seconds=seconds,
        section_cpu=cpu,
        quiet_wait=quiet,
        sections=sections,
        skipped=skipped,
        errors=errors,
        targets=targets,
        diagnosis=registry.diagnose(sections, targets),
    )
    write_json(out_file, results.to_json())
    if not partial:
        doc = args.markdown.read_text() if args.markdown.is_file() else ""
        args.markdown.write_text(replace_section(doc, mode, render_section(results)))
    print(summary(results), flush=True)
    if not partial:
        print(f"  BENCHMARKS.md section '{mode}' updated", flush=True)
    return 1 if errors else 0


def _broker_doc(broker: BrokerInfo) -> BrokerDoc:
    return BrokerDoc(
        origin=broker.origin,
        bootstrap_servers=broker.bootstrap_servers,
        kafka_version=broker.kafka_version,
        start_s=broker.start_s,
    )
