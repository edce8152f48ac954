"""bench.offline: per-window decisions of the pure core, replayed as the service decides."""

from __future__ import annotations

import numpy as np

from bench.config import detector_settings
from bench.offline import replay
from detector.core import BatchDecider
from detector.threshold import ThresholdBank
from tests.unit.helpers import MeanScorer, make_manifest, record


def test_replay_flags_every_window_above_the_static_threshold() -> None:
    manifest = make_manifest(threshold=1.0)
    levels = np.random.default_rng(0).uniform(0.0, 2.0, size=300)
    records = [record(i, float(v), source=f"s{i % 3}") for i, v in enumerate(levels)]
    settings = detector_settings("127.0.0.1:9", ".", "windows", "t", threshold={"method": "static"})
    out = replay(settings, MeanScorer(), manifest, records)
    assert out.flags == [bool(v > 1.0) for v in levels]
    assert out.scores == [float(np.float32(v)) for v in levels]
    assert set(out.thresholds) == {1.0}
    assert out.dead_letters == 0


def test_replay_alerts_equal_a_whole_batch_decision() -> None:
    """One window at a time or all at once: the same alerts (the core is batch-invariant)."""
    manifest = make_manifest(threshold=1.0)
    rng = np.random.default_rng(1)
    levels = np.where(rng.random(400) < 0.1, 1.5, 0.5)
    records = [record(i, float(v), source=f"s{i % 4}") for i, v in enumerate(levels)]
    settings = detector_settings("127.0.0.1:9", ".", "windows", "t", threshold={"method": "static"})
    out = replay(settings, MeanScorer(), manifest, records)
    bank = ThresholdBank(settings.threshold, manifest.reference_errors.sample, 1.0)
    core = BatchDecider(manifest, bank, settings.lifecycle)
    prepared = core.prepare(records)
    decided = core.decide(prepared, MeanScorer().score(prepared.batch), 0)
    opened = {a.alert_id for a in decided.alerts if a.state.value == "opened"}
    assert opened and out.alert_ids == opened
    assert sum(out.alerts.values()) == len(decided.alerts)
