"""bench.procs and bench.machine: /proc readings and the /metrics parser."""

from __future__ import annotations

import os
import time

import pytest

from bench.machine import CpuMeter
from bench.procs import REPO, clean_env, cpu_seconds, metric_sum, peak_rss_bytes

EXPOSITION = """\
# HELP detector_windows_total Input records by outcome.
# TYPE detector_windows_total counter
detector_windows_total{outcome="scored"} 1500.0
detector_windows_total{outcome="dead_letter"} 7.0
# HELP detector_ready 1 when consuming.
# TYPE detector_ready gauge
detector_ready 1.0
"""


def test_metric_sum_filters_by_name_and_labels() -> None:
    assert metric_sum(EXPOSITION, "detector_windows_total", {"outcome": "scored"}) == 1500.0
    assert metric_sum(EXPOSITION, "detector_windows_total") == 1507.0
    assert metric_sum(EXPOSITION, "detector_ready") == 1.0
    assert metric_sum(EXPOSITION, "detector_missing") == 0.0


def test_proc_readings_of_this_process() -> None:
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    cpu = cpu_seconds(os.getpid())
    rss = peak_rss_bytes(os.getpid())
    assert cpu is not None and cpu > 0
    assert rss is not None and rss > 1 << 20


def test_proc_readings_of_a_missing_process_are_none() -> None:
    assert cpu_seconds(2**22 + 12345) is None
    assert peak_rss_bytes(2**22 + 12345) is None


def test_cpu_meter_sees_our_own_work() -> None:
    meter = CpuMeter().start()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    got = meter.stop()
    ours, machine, seconds = got.ours, got.machine, got.seconds
    assert ours is not None and machine is not None and seconds is not None
    # cores x seconds = CPU seconds: the 0.2 s we burnt (ticks are 10 ms), however contended
    assert ours * seconds == pytest.approx(0.2, abs=0.05)
    assert machine * seconds >= 0.15


def test_clean_env_drops_detector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_MAX_BATCH", "7")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = clean_env({"X": "1"})
    assert "DETECTOR_MAX_BATCH" not in env and env["X"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
