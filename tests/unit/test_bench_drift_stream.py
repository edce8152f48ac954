"""The drift scenario: simulated beats with anomaly episodes spliced in, two magnitudes."""

from __future__ import annotations

import numpy as np

from bench import stats
from bench.data import SIM_SOURCES, sim_batches, train_rounds
from bench.drift_stream import DRIFT_SCENARIOS, EPISODE_LEN, drift_stream
from bench.quality import MethodFigures
from bench.sections.drift import drift_verdict
from producer.simulate import make_arrays
from tests.unit.test_bench_report import drift_method


def test_episodes_replace_whole_beats_and_carry_their_truth() -> None:
    rounds, train_windows = 300, 320
    stream, drift = drift_stream(rounds, train_windows, 0.5)
    s = SIM_SOURCES
    assert len(stream) == s * rounds and drift.kind == "gradual"
    assert drift.magnitude == 0.5
    # the stream starts after the bundle's training rounds
    assert int(stream.seqs[0]) == train_rounds(train_windows) == 20
    assert drift.start == 20 + 90
    labels = stream.labels.astype(int)
    types = np.asarray(stream.anomaly_types)
    assert labels.sum() > 0
    assert ((types != "none") == (labels == 1)).all()
    # per source (rounds are interleaved), every episode is 3-12 consecutive windows of a type
    for source in range(s):
        own = labels[source::s].tolist()
        for start, end in stats.episodes(own):
            assert EPISODE_LEN[0] <= end - start <= EPISODE_LEN[1] or end == len(own)
            assert len(set(types[source::s][start:end])) == 1
    assert list(stream.source_ids[:3]) == ["ecg-0", "ecg-1", "ecg-2"]
    assert stream.regimes[0] == "baseline" and stream.regimes[-1].startswith("drift:gradual")


def test_streams_skip_exactly_the_training_rounds() -> None:
    train = make_arrays("ecg", 5 * SIM_SOURCES, seed=101, n_sources=SIM_SOURCES)
    whole = next(sim_batches(8 * SIM_SOURCES))
    after = next(sim_batches(3 * SIM_SOURCES, skip_rounds=5))
    np.testing.assert_array_equal(whole.values[: len(train)], train.values)
    np.testing.assert_array_equal(after.values, whole.values[len(train) :])
    assert after.seqs[0] == 5 and len(after) == 3 * SIM_SOURCES


def test_both_magnitudes_carry_the_same_episodes_and_differ_only_in_drift() -> None:
    assert {k: v[0] for k, v in DRIFT_SCENARIOS.items()} == {"moderate": 0.2, "large": 0.5}
    small, d_small = drift_stream(200, 320, 0.2)
    large, d_large = drift_stream(200, 320, 0.5)
    assert (d_small.magnitude, d_large.magnitude) == (0.2, 0.5)
    assert (d_small.start, d_small.length) == (d_large.start, d_large.length)
    np.testing.assert_array_equal(small.labels, large.labels)
    assert small.anomaly_types == large.anomaly_types and small.regimes == large.regimes
    base = np.asarray([r == "baseline" for r in small.regimes])
    # identical before the drift, larger beats once it has ramped up
    np.testing.assert_array_equal(small.values[base], large.values[base])
    assert small.regimes[-1] != "baseline"
    end = slice(-SIM_SOURCES, None)  # the last round
    assert np.abs(large.values[end]).mean() > np.abs(small.values[end]).mean() * 1.1


def _methods(
    static: float | None, quantile: float | None, spot: float | None
) -> dict[str, MethodFigures]:
    return {
        m: drift_method(far, 0)
        for m, far in (("static", static), ("quantile", quantile), ("spot", spot))
    }


def test_verdict_passes_only_when_adaptive_hold_the_band_and_static_does_not() -> None:
    ok = drift_verdict(_methods(0.124, 0.016, 0.014), 0.01)
    assert ok.passed is True
    assert ok.methods["quantile"].within and not ok.methods["static"].within
    assert abs((ok.methods["static"].x_target or 0.0) - 12.4) < 1e-9
    # an adaptive method at 3.6x the target misses, and so does a static that holds it
    assert drift_verdict(_methods(0.124, 0.036, 0.014), 0.01).passed is False
    assert drift_verdict(_methods(0.015, 0.016, 0.014), 0.01).passed is False
    # too few alarms is outside the band too
    assert drift_verdict(_methods(0.124, 0.004, 0.014), 0.01).passed is False
    # the band's edges are inside
    assert drift_verdict(_methods(0.03, 0.005, 0.02), 0.01).passed is True
    assert drift_verdict(_methods(0.124, 0.016, None), 0.01).passed is None
