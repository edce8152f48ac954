"""The issue's targets, declared by the sections, checked through the registry."""

from __future__ import annotations

from bench import registry
from bench.results import Figures, TargetCheck
from tests.unit.test_bench_report import latency, scaling, throughput


def _by_key(checks: list[TargetCheck]) -> dict[str, TargetCheck]:
    return {c.key: c for c in checks}


def _results(**over: Figures) -> dict[str, Figures]:
    results: dict[str, Figures] = {
        "throughput": throughput(binary_vs_ceiling=0.62, json_rate=31_000.0, vs_naive=1500.0),
        "latency": latency(p99_5k=42.0),
        "scaling": scaling(1.7),
    }
    results.update(over)
    return results


def test_every_target_passes_when_its_figure_is_inside_the_bound() -> None:
    checks = _by_key(registry.evaluate(_results()))
    assert set(checks) == {t.key for s in registry.SECTIONS for t in s.targets}
    assert len(checks) == 5
    assert all(c.passed is True for c in checks.values()), checks
    # the latency target reads the 5,000/s phase, not the first one
    assert checks["p99_eos_5k"].value == 42.0
    assert checks["p99_eos_5k"].section == "latency"


def test_targets_fail_on_the_wrong_side_of_the_bound() -> None:
    checks = _by_key(registry.evaluate(_results(scaling=scaling(1.2), latency=latency(51.0))))
    assert checks["two_vs_one_process"].passed is False
    assert checks["p99_eos_5k"].passed is False
    assert checks["binary_vs_consume_only"].passed is True


def test_missing_sections_are_not_measured_never_passed() -> None:
    checks = registry.evaluate({})
    assert checks and all(c.passed is None and c.value is None for c in checks)


def test_section_names_are_unique_and_every_section_renders_its_own_heading() -> None:
    names = registry.names()
    assert len(names) == len(set(names)) == len(registry.SECTIONS)
    for section in registry.SECTIONS:
        assert registry.section(section.name) is section
        assert section.sizes("quick") is section.quick and section.sizes("full") is section.full
