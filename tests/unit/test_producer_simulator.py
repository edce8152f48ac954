"""Simulated streams: realistic normal morphology, anomalies that change it, drift regimes."""

from __future__ import annotations

import numpy as np

from producer.drift import DriftScenario
from producer.ecg import R_FRACTION
from producer.simulate import make_arrays, make_stream


def test_normal_beats_peak_at_r_with_natural_variation() -> None:
    batch = make_arrays("ecg", 400, seed=0, n_sources=4)
    x = batch.values[:, :, 0]
    r = round(R_FRACTION * x.shape[1])
    assert np.all(np.abs(x.argmax(axis=1) - r) <= 3), "the R peak is each beat's maximum"
    peaks = x.max(axis=1)
    assert 0.02 < peaks.std() / abs(peaks.mean()) < 0.5, "amplitudes vary, but not wildly"
    assert not np.allclose(x[0], x[4]), "beats of one source differ from each other"


def test_st_elevation_raises_the_st_segment() -> None:
    normal = make_arrays("ecg", 300, seed=1).values[:, :, 0]
    sick = make_arrays("ecg", 300, seed=1, anomaly_rate=1.0, anomaly_types=["st_elevation"]).values[
        :, :, 0
    ]
    r = round(R_FRACTION * normal.shape[1])
    st = slice(r + 8, r + 25)
    assert sick[:, st].mean() > normal[:, st].mean() + 0.2


def test_sensor_channels_are_correlated_within_a_source() -> None:
    batch = make_arrays("sensor", 200, seed=2, channels=4, n_sources=1)
    series = batch.values.reshape(-1, 4)
    corr = np.corrcoef(series.T)
    off_diagonal = np.abs(corr[~np.eye(4, dtype=bool)])
    assert off_diagonal.max() > 0.5


def test_gradual_drift_moves_amplitude_and_labels_the_regime() -> None:
    drift = DriftScenario("gradual", "amplitude", magnitude=1.0, start=100, length=200)
    windows = list(make_stream("ecg", 400, seed=3, drift=drift))
    early = np.mean([w.values.max() for w in windows[:100]])
    late = np.mean([w.values.max() for w in windows[-100:]])
    assert late > 1.6 * early
    assert windows[0].regime == "baseline"
    assert windows[-1].regime.startswith("drift:gradual")
    assert all(w.label == 0 for w in windows)


def test_a_shorter_stream_is_a_prefix_of_a_longer_one() -> None:
    short = make_arrays("sensor", 700, seed=9, n_sources=3, anomaly_rate=0.05)
    long = make_arrays("sensor", 2500, seed=9, n_sources=3, anomaly_rate=0.05)
    np.testing.assert_array_equal(short.values, long.values[:700])
    assert list(short.anomaly_types) == list(long.anomaly_types[:700])
