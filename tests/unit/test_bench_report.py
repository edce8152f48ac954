"""bench.report: the BENCHMARKS.md section and the results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import diagnose, fmt, markers, render_section, replace_section, write_json
from bench.targets import evaluate


def test_replace_section_appends_then_replaces_keeping_prose() -> None:
    doc = "# Benchmarks\n\nProse written by hand.\n"
    once = replace_section(doc, "quick", "figures v1")
    start, end = markers("quick")
    assert once.startswith(doc.rstrip("\n"))
    assert f"{start}\nfigures v1\n{end}" in once
    twice = replace_section(once + "\nClosing note.\n", "quick", "figures v2")
    assert "figures v1" not in twice
    assert "figures v2" in twice and "Prose written by hand." in twice
    assert twice.rstrip().endswith("Closing note.")
    assert twice.count(start) == 1


def test_sections_of_two_modes_are_independent() -> None:
    doc = replace_section("", "quick", "Q")
    doc = replace_section(doc, "full", "F")
    doc = replace_section(doc, "quick", "Q2")
    assert "Q2" in doc and "F" in doc and "\nQ\n" not in doc
    assert doc.index(markers("quick")[0]) < doc.index(markers("full")[0])


def test_broken_markers_are_refused() -> None:
    start, end = markers("quick")
    with pytest.raises(ValueError):
        replace_section(f"{end}\nx\n{start}\n", "quick", "new")
    with pytest.raises(ValueError):
        replace_section(f"{start}\nx\n", "quick", "new")


def test_fmt() -> None:
    assert fmt(None) == "n/a"
    assert fmt(float("nan"), "ms") == "n/a"
    assert fmt(1234567.8, "int") == "1,234,568"
    assert fmt(0.5, "x", 2) == "0.50x"
    assert fmt(12.34, "ms") == "12.3 ms"
    assert fmt(0.0123, "pct", 1) == "1.2%"
    assert fmt(3 * 2**20, "mib") == "3 MiB"


def _results() -> dict[str, Any]:
    sections: dict[str, Any] = {
        "throughput": {
            "windows": 1000,
            "median": {
                "consume_only_binary": {"windows_per_s": 60_000.0},
                "detector_binary": {
                    "windows_per_s": 20_000.0,
                    "mean_batch": 2000.0,
                    "stage_us_per_window": {"consume": 5.0, "prepare": 6.0, "score": 2.0,
                                            "decide": 4.0, "publish": 30.0},
                },
                "detector_json": {"windows_per_s": 31_000.0},
            },
            "naive": {"windows": 50, "windows_per_s": 12.0},
            "ratios": {"detector_binary_vs_consume_only": 1 / 3, "detector_json_vs_naive": 2583.0},
        },
        "scaling": {"ratio_two_vs_one": 1.9},
    }  # fmt: skip
    results: dict[str, Any] = {
        "mode": "quick",
        "command": "python -m bench --quick",
        "sections": sections,
        "targets": evaluate(sections),
        "machine": {"cpu_count": 2, "versions": {}},
    }
    results["diagnosis"] = diagnose(results)
    return results


def test_diagnosis_explains_only_missed_targets_from_the_run_figures() -> None:
    notes = _results()["diagnosis"]
    assert set(notes) == {"binary_vs_consume_only"}
    assert "publish" in notes["binary_vs_consume_only"]  # the largest stage is named


def test_rendered_section_has_command_verdicts_and_figures() -> None:
    text = render_section(_results())
    assert "`python -m bench --quick`" in text
    assert "**MISS**" in text and "**pass**" in text and "not measured" in text
    assert "20,000" in text  # the detector's binary throughput
    assert "0.33x" in text  # its ratio to the ceiling


def test_write_json_is_atomic_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "results" / "quick.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["quick.json"]


def _drift_method(far_drifted: float, recent: int) -> dict[str, Any]:
    return {
        "window": {"false_alarm_rate": 0.011, "recall": 0.9},
        "window_baseline": {"false_alarm_rate": 0.009},
        "window_drifted": {"false_alarm_rate": far_drifted, "recall": 0.8},
        "false_alarms_per_10k": 12.0,
        "episodes": 40,
        "episodes_detected": 38,
        "episodes_with_opened_alert": 37,
        "detection_delay_windows": {"mean": 1.25},
        "events": {"threshold_recalibrated": 50, "drift_detected": 3, "retrain_recommended": 2},
        "recalibrations_recent": recent,
        "kafka_offline_opened_match": True,
    }


def test_drift_section_has_one_table_and_verdict_per_magnitude() -> None:
    from bench.quality import drift_verdict

    scenarios: dict[str, Any] = {}
    for name, mag, fars in (("moderate", 0.2, (0.029, 0.016)), ("large", 0.5, (0.124, 0.036))):
        methods = {
            "static": _drift_method(fars[0], 0),
            "quantile": _drift_method(fars[1], 7),
            "spot": _drift_method(0.014, 9),
        }
        scenarios[name] = {
            "description": f"{name} words",
            "drift": {"kind": "gradual", "target": "amplitude", "magnitude": mag},
            "methods": methods,
            "verdict": drift_verdict(methods, 0.01),
        }
    results = _results()
    results["sections"]["drift"] = {"target_far": 0.01, "windows": 28800, "scenarios": scenarios}
    text = render_section(results)
    drift = text[text.index("#### Quality: drift scenario") :]
    assert drift.count("| method | FAR |") == 2
    assert "**moderate: gradual amplitude drift of 20%** (moderate words)" in drift
    assert "**large: gradual amplitude drift of 50%** (large words)" in drift
    assert "50 (7 recent-)" in drift and "50 (9 recent-)" in drift
    verdicts = [line for line in drift.splitlines() if line.startswith("Verdict")]
    assert len(verdicts) == 2
    assert "static 2.90% (2.9x, outside)" in verdicts[0]
    assert "static outside: **yes**" in verdicts[0]
    assert "quantile 3.60% (3.6x, outside)" in verdicts[1]
    assert "static outside: **no**" in verdicts[1]
    assert drift.index("moderate words") < drift.index(verdicts[0]) < drift.index("large words")


def test_drift_section_still_renders_a_single_scenario_result() -> None:
    results = _results()
    results["sections"]["drift"] = {
        "target_far": 0.01,
        "drift": {"kind": "gradual", "target": "amplitude", "magnitude": 0.5},
        "methods": {"static": _drift_method(0.124, 0)},
    }
    text = render_section(results)
    assert text.count("| method | FAR |") == 1 and "drift of 50%" in text
    assert "Verdict" not in text


def _latency_phase(rate: int, p50: float, p99: float) -> dict[str, Any]:
    summary = {"n": 100, "p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "max_ms": p99}
    return {
        "rate": rate,
        "achieved_per_s": float(rate),
        "produce_to_alert": summary,
        "produce_to_decision": summary,
    }


def test_latency_shows_the_null_detector_floor_beside_the_detector() -> None:
    results = _results()
    results["sections"]["latency"] = {
        "modes": {"exactly-once": {"phases": [_latency_phase(5000, 44.0, 125.0)]}},
        "null_detector": {"null": True, "phases": [_latency_phase(5000, 17.5, 61.5)]},
        "transaction_floor": {},
    }
    results["targets"] = evaluate(results["sections"])
    results["diagnosis"] = diagnose(results)
    text = render_section(results)
    null_rows = [line for line in text.splitlines() if line.startswith("| exactly-once, null")]
    assert len(null_rows) == 1 and "61.5 ms" in null_rows[0] and "17.5 ms" in null_rows[0]
    note = results["diagnosis"]["p99_eos_5k"]
    assert "125.0 ms" in note and "null detector" in note and "p99 61.5 ms (p50 17.5 ms)" in note
