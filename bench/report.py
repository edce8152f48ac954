"""The generated BENCHMARKS.md section of one run: the run's facts, targets, then each section.

Pure: a :class:`~bench.results.RunResults` in, text out. Each section renders its own part
(:meth:`bench.section.Section.render`); performance sections come first, then quality,
each group in registry order.
"""

from __future__ import annotations

from bench import registry
from bench.markdown import fmt, table, verdict
from bench.results import RunResults, TargetCheck

__all__ = ["render_section", "summary"]


def _machine_line(results: RunResults) -> str:
    m = results.machine
    v = m.versions
    load: list[float | None] = [*m.load_average] or [None]
    return (
        f"{m.cpu_count} cores ({m.cpu_model}), "
        f"{fmt(m.memory_bytes, 'mib')} RAM, {m.os}; Python {m.python}, "
        f"TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, numpy {v.get('numpy')}, "
        f"confluent-kafka {v.get('confluent_kafka')} / librdkafka {v.get('librdkafka')}, "
        f"Kafka {v.get('kafka_broker') or 'external'} ({m.broker}); "
        f"load average at start {fmt(load[0], 'num', 2)}"
    )


def _load_line(results: RunResults, key: str) -> str:
    cpu = results.section_cpu.get(key)
    quiet = results.quiet_wait.get(key)
    waited = (
        f"waited {fmt(quiet.waited_s, 's', 0)} for other processes to quieten "
        f"(then {fmt(quiet.others_cores, 'num', 2)} cores); "
        if quiet
        else ""
    )
    return (
        f"_Section: {fmt(results.section_seconds.get(key), 's', 0)}; {waited}the machine was "
        f"busy {fmt(cpu.machine if cpu else None, 'num', 2)} of "
        f"{fmt(cpu.cores if cpu else None, 'num', 0)} cores on average, "
        f"{fmt(cpu.others if cpu else None, 'num', 2)} of them other processes._"
    )


def _target_row(t: TargetCheck) -> list[str]:
    ratio = t.unit == "x"
    measured = fmt(t.value, "x" if ratio else "num", 2 if ratio else 1)
    bound = fmt(t.bound, "num", 1 if t.bound < 10 else 0)
    return [
        t.description,
        measured + ("" if ratio else f" {t.unit}"),
        f"{t.op} {bound}" + ("x" if ratio else f" {t.unit}"),
        verdict(t.passed),
    ]


def render_section(results: RunResults) -> str:
    """The Markdown section of one run."""
    lines = [
        f"### {results.mode.capitalize()} run",
        "",
        f"Command: `{results.command}` · {results.started_at} · "
        f"{fmt(results.duration_s, 's', 0)} including broker start · results: "
        f"`{results.results_file}`",
        "",
        f"Machine: {_machine_line(results)}.",
        "",
        "Models: "
        + "; ".join(f"{k}: {v.model_id} ({v.arch}, {v.source})" for k, v in results.bundles.items())
        + ".",
        "",
        "#### Targets",
        "",
        table(
            ["target", "measured", "required", "result"],
            [_target_row(t) for t in results.targets],
        ),
    ]
    if results.diagnosis:
        lines += ["", "Why targets were missed (from this run's own figures):", ""]
        lines += [f"- `{k}`: {v}" for k, v in results.diagnosis.items()]
    ordered = sorted(registry.SECTIONS, key=lambda s: not s.performance)  # stable
    for s in ordered:
        result = results.sections.get(s.name)
        if result is not None:
            lines += ["", s.render(s.read(result)), "", _load_line(results, s.name)]
        elif s.name in results.skipped:
            lines += ["", f"#### {s.title}", "", f"Skipped: {results.skipped[s.name]}"]
        elif s.name in results.errors:
            lines += ["", f"#### {s.name}", "", f"Failed: {results.errors[s.name]}"]
    return "\n".join(lines) + "\n"


def summary(results: RunResults) -> str:
    """The run's targets and failures, for the terminal."""
    lines = ["", f"== bench {results.mode}: targets =="]
    for t in results.targets:
        word = {True: "pass", False: "MISS", None: "not measured"}[t.passed]
        lines.append(
            f"  {word:>12}  {t.description}: {fmt(t.value, 'num', 2)} {t.unit} "
            f"(required {t.op} {fmt(t.bound, 'num', 1)})"
        )
    for name, reason in results.skipped.items():
        lines.append(f"  section {name} skipped: {reason}")
    for name, err in results.errors.items():
        lines.append(f"  section {name} FAILED: {err}")
    lines.append(f"  results: {results.results_file}  ({fmt(results.duration_s, 's', 0)})")
    return "\n".join(lines)
