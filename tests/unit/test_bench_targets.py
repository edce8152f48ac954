"""bench.targets: the issue's targets checked against a run's sections."""

from __future__ import annotations

from typing import Any

from bench.targets import TARGETS, dig, evaluate


def _sections(**over: Any) -> dict[str, Any]:
    sections: dict[str, Any] = {
        "throughput": {
            "ratios": {"detector_binary_vs_consume_only": 0.62, "detector_json_vs_naive": 1500.0},
            "median": {"detector_json": {"windows_per_s": 31_000.0}},
        },
        "latency": {
            "modes": {
                "exactly-once": {
                    "phases": [
                        {"rate": 1000, "produce_to_alert": {"p99_ms": 80.0}},
                        {"rate": 5000, "produce_to_alert": {"p99_ms": 42.0}},
                    ]
                }
            }
        },
        "scaling": {"ratio_two_vs_one": 1.7},
    }
    sections.update(over)
    return sections


def _by_key(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in results}


def test_every_target_passes_when_its_figure_is_inside_the_bound() -> None:
    results = _by_key(evaluate(_sections()))
    assert set(results) == {t.key for t in TARGETS}
    assert all(r["passed"] is True for r in results.values()), results
    # the latency target reads the 5,000/s phase, not the first one
    assert results["p99_eos_5k"]["value"] == 42.0


def test_targets_fail_on_the_wrong_side_of_the_bound() -> None:
    sections = _sections(scaling={"ratio_two_vs_one": 1.2})
    sections["latency"]["modes"]["exactly-once"]["phases"][1]["produce_to_alert"]["p99_ms"] = 51.0
    results = _by_key(evaluate(sections))
    assert results["two_vs_one_process"]["passed"] is False
    assert results["p99_eos_5k"]["passed"] is False
    assert results["binary_vs_consume_only"]["passed"] is True


def test_missing_sections_are_not_measured_never_passed() -> None:
    results = _by_key(evaluate({}))
    assert all(r["passed"] is None and r["value"] is None for r in results.values())


def test_dig_walks_dicts_and_lists() -> None:
    doc = {"a": [{"b": 1}, {"b": 2}]}
    assert dig(doc, "a", 1, "b") == 2
    assert dig(doc, "a", 5, "b") is None
    assert dig(doc, "x") is None
