"""bench.report and the sections' renderers: the BENCHMARKS.md section and the results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import registry
from bench.latency import FloorFigures, LatencyRun, PhaseLatency
from bench.markdown import fmt, markers, replace_section
from bench.naive import NaiveRun
from bench.quality import DelayFigures, MethodFigures
from bench.report import render_section
from bench.results import (
    BrokerDoc,
    ConfusionFigures,
    CpuUse,
    DrainFigures,
    Figures,
    LatencySummary,
    MachineFacts,
    RunResults,
    write_json,
)
from bench.sections.drift import DriftResult, DriftSpec, EpisodeSpec, ScenarioResult, drift_verdict
from bench.sections.latency import LatencyDetector, LatencyResult
from bench.sections.scaling import ProcessesRun, Resources, ScalingResult
from bench.sections.throughput import VARIANTS, DetectorDefaults, ThroughputResult


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


# -- typed results to render ---------------------------------------------------------------


def drain(rate: float, stage_us: dict[str, float | None] | None = None) -> DrainFigures:
    return DrainFigures(
        windows=1000,
        seconds=1000 / rate,
        windows_per_s=rate,
        batches=1 if stage_us else 0,
        mean_batch=2000.0 if stage_us else None,
        stage_seconds={},
        stage_us_per_window=stage_us or {},
        stage_cpu_us_per_window={},
    )


def throughput(
    binary_vs_ceiling: float = 1 / 3, json_rate: float = 31_000.0, vs_naive: float = 2583.0
) -> ThroughputResult:
    stage = {"consume": 5.0, "prepare": 6.0, "score": 2.0, "decide": 4.0, "publish": 30.0}
    median = {
        "consume_only_binary": drain(60_000.0),
        "detector_binary": drain(60_000.0 * binary_vs_ceiling, stage),
        "detector_json": drain(json_rate),
    }
    return ThroughputResult(
        windows=1000,
        partitions=4,
        sources=16,
        anomaly_rate=0.01,
        window_shape=[140, 1],
        preload_seconds={},
        reps=1,
        detector_settings=DetectorDefaults(
            max_batch=2048, max_wait_s=0.02, delivery="exactly-once", threshold_method="adaptive"
        ),
        variants=VARIANTS,
        windows_per_s={k: v.windows_per_s for k, v in median.items()},
        median=median,
        all_windows_per_s={},
        naive=NaiveRun(
            windows=50, seconds=4.0, windows_per_s=12.0, ms_per_window=83.0, alerts=0, how="-"
        ),
        ratios_how="-",
        ratios={
            "detector_binary_vs_consume_only": binary_vs_ceiling,
            "detector_json_vs_naive": vs_naive,
        },
    )


def _summary(p50: float, p99: float) -> LatencySummary:
    return LatencySummary(n=100, p50_ms=p50, p95_ms=p99, p99_ms=p99, max_ms=p99)


def _phase(rate: int, p50: float, p99: float) -> PhaseLatency:
    s = _summary(p50, p99)
    return PhaseLatency(
        rate=rate, achieved_per_s=float(rate), seconds=3.0, sent=3 * rate,
        produce_to_alert=s, produce_to_decision=s,
    )  # fmt: skip


def _run(phases: list[PhaseLatency], null: bool = False) -> LatencyRun:
    return LatencyRun(
        delivery="exactly-once", null=null, max_wait_s=None, options={}, sent=1, alerts_read=1,
        reader_errors=[], drain_after_last_send_s=0.1, detector_cpu_cores=0.5, phases=phases,
    )  # fmt: skip


def latency(p99_5k: float, null_p99: float | None = None) -> LatencyResult:
    eos = _run([_phase(1000, 20.0, 80.0), _phase(5000, 44.0, p99_5k)])
    return LatencyResult(
        sources=16,
        anomaly_rate=0.04,
        warm_fraction=0.2,
        encoding="binary",
        detector=LatencyDetector(max_batch=2048, max_wait_s=0.02, resolve_after_windows=1, env={}),
        modes={"exactly-once": eos},
        null_detector=None if null_p99 is None else _run([_phase(5000, 17.5, null_p99)], True),
        tuned=[],
        transaction_floor={"at-least-once": FloorFigures(batch=_summary(1.0, 3.0))},
    )


def _processes(k: int, rate: float) -> ProcessesRun:
    return ProcessesRun(
        processes=k, windows=1000, preload_s=1.0, seconds=1000 / rate, windows_per_s=rate,
        cpu_seconds_per_process=[1.0] * k, cpu_cores_per_process=[0.9] * k,
        cpu_us_per_window=100.0, peak_rss_bytes_per_process=[2**28] * k,
        cpu_meter=CpuUse(seconds=1.0, cores=2.0, machine=1.9, ours=1.7, others=0.2),
        exit_codes=[0] * k,
    )  # fmt: skip


def scaling(ratio: float) -> ScalingResult:
    one, two = _processes(1, 10_000.0), _processes(2, 10_000.0 * ratio)
    return ScalingResult(
        partitions=4, encoding="binary", session_timeout_ms=120000, env={}, one=one, two=two,
        ratio_two_vs_one=ratio,
        resources=Resources(
            startup_to_first_score_s=4.0, peak_rss_bytes=2**28, cpu_cores_while_draining=0.9,
            cpu_us_per_window=100.0,
        ),
    )  # fmt: skip


def run_results(sections: dict[str, Figures]) -> RunResults:
    targets = registry.evaluate(sections)
    return RunResults(
        mode="quick", command="python -m bench --quick", started_at="t0", finished_at="t1",
        duration_s=60.0, results_file="bench/results/quick.json", sections_run=list(sections),
        machine=MachineFacts(
            timestamp="t0", hostname="h", cpu_count=2, cpu_affinity=2, cpu_model="cpu",
            memory_bytes=2**33, memory_available_bytes=2**32, load_average=[0.5, 0.5, 0.5],
            os="Linux", python="3.11", versions={}, broker="local-jvm",
        ),
        broker=BrokerDoc(origin="local-jvm", bootstrap_servers="b:1", kafka_version="4", start_s=1),
        config={}, bundles={}, section_seconds={}, section_cpu={}, quiet_wait={},
        sections=sections, skipped={}, errors={}, targets=targets,
        diagnosis=registry.diagnose(sections, targets),
    )  # fmt: skip


def _results() -> RunResults:
    return run_results({"throughput": throughput(), "scaling": scaling(1.9)})


def test_diagnosis_explains_only_missed_targets_from_the_run_figures() -> None:
    notes = _results().diagnosis
    assert set(notes) == {"binary_vs_consume_only"}
    assert "publish" in notes["binary_vs_consume_only"]  # the largest stage is named


def test_json_diagnosis_reads_its_bound_from_the_target() -> None:
    notes = run_results({"throughput": throughput(json_rate=12_000.0)}).diagnosis
    assert "30,000 windows/s leaves 33 µs per window" in notes["json_windows_per_s"]


def test_rendered_section_has_command_verdicts_and_figures() -> None:
    text = render_section(_results())
    assert "`python -m bench --quick`" in text
    assert "**MISS**" in text and "**pass**" in text and "not measured" in text
    assert "20,000" in text  # the detector's binary throughput
    assert "0.33x" in text  # its ratio to the ceiling
    # performance sections first, then quality; sections that did not run are left out
    assert text.index("#### Throughput") < text.index("#### Scaling")
    assert "#### Latency" not in text


def test_results_file_round_trips_through_the_registry(tmp_path: Path) -> None:
    results = run_results(
        {"throughput": throughput(), "latency": latency(60.0, 61.5), "scaling": scaling(1.9)}
    )
    path = tmp_path / "quick.json"
    write_json(path, results.to_json())
    assert json.loads(path.read_text())["schema"] == 2
    back = registry.load_results(path)
    assert back == results
    assert isinstance(back.sections["latency"], LatencyResult)
    assert render_section(back) == render_section(results)


def test_write_json_is_atomic_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "results" / "quick.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["quick.json"]


def _confusion(far: float | None, recall: float) -> ConfusionFigures:
    return ConfusionFigures(
        tp=1, fp=1, tn=1, fn=1, precision=0.5, recall=recall, false_alarm_rate=far
    )


def drift_method(far_drifted: float | None, recent: int) -> MethodFigures:
    return MethodFigures(
        window=_confusion(0.011, 0.9),
        window_baseline=_confusion(0.009, 0.9),
        window_drifted=_confusion(far_drifted, 0.8),
        episodes=40,
        episodes_detected=38,
        episodes_with_opened_alert=37,
        episodes_by_type={},
        detection_delay_windows=DelayFigures(mean=1.25, p50=1.0, p95=3.0, max=4),
        alerts_opened=40,
        alerts_opened_on_normal=3,
        false_alarms_per_10k=12.0,
        events={"threshold_recalibrated": 50, "drift_detected": 3, "retrain_recommended": 2},
        recalibrations_by_estimator={},
        recalibrations_recent=recent,
        retrain_recommended=2,
        offline_alerts={},
        kafka_offline_opened_match=True,
        kafka_opened_not_offline=0,
        offline_opened_not_kafka=0,
    )


def test_drift_section_has_one_table_and_verdict_per_magnitude() -> None:
    scenarios: dict[str, ScenarioResult] = {}
    for name, mag, fars in (("moderate", 0.2, (0.029, 0.016)), ("large", 0.5, (0.124, 0.036))):
        methods = {
            "static": drift_method(fars[0], 0),
            "quantile": drift_method(fars[1], 7),
            "spot": drift_method(0.014, 9),
        }
        scenarios[name] = ScenarioResult(
            windows=28800,
            drift=DriftSpec(kind="gradual", target="amplitude", magnitude=mag, start=1, length=2),
            target_far=0.01,
            anomalous_windows=100,
            drifted_windows=200,
            methods=methods,
            description=f"{name} words",
            verdict=drift_verdict(methods, 0.01),
        )
    drift = DriftResult(
        sources=16, first_seq=188, rounds_per_source=1800, windows=28800, anomalous_windows=100,
        episodes=EpisodeSpec(start_probability=0.006, length_windows=[3, 12], types=["a"], seed=1),
        target_far=0.01, far_band=[0.5, 2.0], scenarios=scenarios,
    )  # fmt: skip
    text = render_section(run_results({"throughput": throughput(), "drift": drift}))
    drift_text = text[text.index("#### Quality: drift scenario") :]
    assert text.index("#### Throughput") < text.index("#### Quality: drift")
    assert drift_text.count("| method | FAR |") == 2
    assert "**moderate: gradual amplitude drift of 20%** (moderate words)" in drift_text
    assert "**large: gradual amplitude drift of 50%** (large words)" in drift_text
    assert "50 (7 recent-)" in drift_text and "50 (9 recent-)" in drift_text
    verdicts = [line for line in drift_text.splitlines() if line.startswith("Verdict")]
    assert len(verdicts) == 2
    assert "static 2.90% (2.9x, outside)" in verdicts[0]
    assert "static outside: **yes**" in verdicts[0]
    assert "quantile 3.60% (3.6x, outside)" in verdicts[1]
    assert "static outside: **no**" in verdicts[1]
    assert (
        drift_text.index("moderate words")
        < drift_text.index(verdicts[0])
        < drift_text.index("large words")
    )


def test_latency_shows_the_null_detector_floor_beside_the_detector() -> None:
    results = run_results({"latency": latency(125.0, null_p99=61.5)})
    text = render_section(results)
    null_rows = [line for line in text.splitlines() if line.startswith("| exactly-once, null")]
    assert len(null_rows) == 1 and "61.5 ms" in null_rows[0] and "17.5 ms" in null_rows[0]
    note = results.diagnosis["p99_eos_5k"]
    assert "125.0 ms" in note and "null detector" in note and "p99 61.5 ms (p50 17.5 ms)" in note


def test_a_skipped_section_says_why() -> None:
    results = run_results({}).model_copy(update={"skipped": {"ecg5000": "no data here"}})
    text = render_section(results)
    assert "#### Quality: ECG5000 replay\n\nSkipped: no data here" in text
