"""Simulated streams: realistic normal morphology, anomalies that change it, drift regimes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from producer.anomalies import ECG_ANOMALIES, SENSOR_ANOMALIES
from producer.ecg import R_FRACTION
from producer.errors import ProducerInputError
from producer.scenarios import DriftScenario
from producer.simulate import make_arrays, make_batches, make_stream


def _ecg(n: int, seed: int, kind: str | None = None, sources: int = 1) -> np.ndarray:
    types = None if kind is None else [kind]
    rate = 0.0 if kind is None else 1.0
    batch = make_arrays(
        "ecg", n, seed=seed, n_sources=sources, anomaly_rate=rate, anomaly_types=types
    )
    return batch.values[:, :, 0].astype(np.float64)


R = round(R_FRACTION * 140)


def test_normal_beats_peak_at_r_with_natural_variation() -> None:
    x = _ecg(400, seed=0, sources=4)
    assert np.all(np.abs(x.argmax(axis=1) - R) <= 3), "the R peak is each beat's maximum"
    peaks = x.max(axis=1)
    assert 0.02 < peaks.std() / abs(peaks.mean()) < 0.5, "amplitudes vary, but not wildly"
    assert not np.allclose(x[0], x[4]), "beats of one source differ from each other"


def test_normal_beats_have_p_before_and_t_after_the_qrs() -> None:
    x = _ecg(300, seed=4)
    baseline = np.median(x[:, :10], axis=1, keepdims=True)
    y = x - baseline
    p_region = y[:, R - 40 : R - 10]
    t_region = y[:, R + 15 : R + 75]
    assert np.median(p_region.max(axis=1)) > 0.05, "a positive P wave precedes the QRS"
    assert np.median(t_region.max(axis=1)) > 0.15, "a positive T wave follows it"
    s_wave = y[:, R + 1 : R + 8].min(axis=1)
    assert np.median(s_wave) < -0.05, "an S dip follows the R peak"


def test_heart_rate_varies_so_the_t_wave_moves() -> None:
    x = _ecg(400, seed=5)
    t_peak = x[:, R + 15 :].argmax(axis=1)
    assert t_peak.std() > 1.0, "beat-to-beat timing is not frozen"


def test_st_elevation_raises_the_st_segment() -> None:
    normal = _ecg(300, seed=1)
    sick = _ecg(300, seed=1, kind="st_elevation")
    st = slice(R + 8, R + 25)
    assert sick[:, st].mean() > normal[:, st].mean() + 0.2


def test_st_depression_lowers_the_st_segment() -> None:
    normal = _ecg(300, seed=1)
    sick = _ecg(300, seed=1, kind="st_depression")
    st = slice(R + 8, R + 25)
    assert sick[:, st].mean() < normal[:, st].mean() - 0.15


def test_missing_p_wave_removes_the_bump_before_the_qrs() -> None:
    def p_height(x: np.ndarray) -> np.ndarray:
        base = np.median(x[:, :10], axis=1)
        return x[:, R - 40 : R - 10].max(axis=1) - base

    assert np.median(p_height(_ecg(300, seed=2, kind="missing_p_wave"))) < 0.5 * np.median(
        p_height(_ecg(300, seed=2))
    )


def test_premature_beats_have_a_wide_qrs_and_an_inverted_t() -> None:
    def qrs_width(x: np.ndarray) -> np.ndarray:
        peak = x.max(axis=1, keepdims=True)
        return (x > 0.5 * peak).sum(axis=1)

    normal, ectopic = _ecg(200, seed=3), _ecg(200, seed=3, kind="premature_beat")
    assert np.median(qrs_width(ectopic)) > 2 * np.median(qrs_width(normal))
    assert np.median(ectopic[:, R + 25 :].min(axis=1)) < -0.2, "T is inverted"


def test_ecg_noise_bursts_add_high_frequency_energy() -> None:
    def roughness(x: np.ndarray) -> np.ndarray:
        # The burst covers a quarter of the beat or more: the 80th percentile lies in it.
        return np.percentile(np.abs(np.diff(x, n=2, axis=1)), 80, axis=1)

    normal, noisy = _ecg(200, seed=6), _ecg(200, seed=6, kind="noise_burst")
    assert np.median(roughness(noisy)) > 3 * np.median(roughness(normal))


def _sensor(kind: str | None, n: int = 200, seed: int = 7) -> np.ndarray:
    rate = 0.0 if kind is None else 1.0
    types = None if kind is None else [kind]
    batch = make_arrays(
        "sensor", n, seed=seed, channels=4, window=64, anomaly_rate=rate, anomaly_types=types
    )
    return batch.values.astype(np.float64)


def test_sensor_channels_are_correlated_within_a_source() -> None:
    batch = make_arrays("sensor", 200, seed=2, channels=4, n_sources=1)
    series = batch.values.reshape(-1, 4)
    corr = np.corrcoef(series.T)
    off_diagonal = np.abs(corr[~np.eye(4, dtype=bool)])
    assert off_diagonal.max() > 0.5


def test_sensor_series_is_seasonal_and_continuous_across_windows() -> None:
    x = make_arrays("sensor", 300, seed=3, channels=2, window=64).values.reshape(-1, 2)
    jumps = np.abs(np.diff(x, axis=0))
    boundary = jumps[63::64]
    inside = np.delete(jumps, np.s_[63::64], axis=0)
    assert boundary.mean() < 2 * inside.mean(), "no jump where one window meets the next"
    c = x[:, 0] - x[:, 0].mean()
    spectrum = np.abs(np.fft.rfft(c)) ** 2
    assert spectrum[1:].max() > 20 * np.median(spectrum[1:]), "a dominant seasonal period"


def test_sensor_spike_is_an_outlier_sample() -> None:
    def peak_z(x: np.ndarray) -> np.ndarray:
        d = np.abs(np.diff(x, axis=1))
        return (d.max(axis=1) / np.median(d, axis=1)).max(axis=1)

    assert np.median(peak_z(_sensor("spike"))) > 3 * np.median(peak_z(_sensor(None)))


def test_sensor_stuck_value_freezes_a_channel() -> None:
    def longest_flat(x: np.ndarray) -> np.ndarray:
        flat = np.diff(x, axis=1) == 0
        return flat.sum(axis=1).max(axis=1)

    assert np.all(longest_flat(_sensor("stuck_value")) >= 40)
    assert np.all(longest_flat(_sensor(None)) <= 2)


def test_sensor_level_shift_moves_one_channel_for_good() -> None:
    def shift(x: np.ndarray) -> np.ndarray:
        d = np.abs(np.diff(x, axis=1))
        return (d.max(axis=1) / np.median(d, axis=1)).max(axis=1)

    assert np.median(shift(_sensor("level_shift"))) > 3 * np.median(shift(_sensor(None)))


def test_sensor_frequency_change_adds_zero_crossings() -> None:
    def crossings(x: np.ndarray) -> np.ndarray:
        c = x - x.mean(axis=1, keepdims=True)
        return (np.diff(np.sign(c), axis=1) != 0).sum(axis=1).mean(axis=1)

    smooth = make_arrays("sensor", 100, seed=8, channels=4).values  # keeps the same noise
    fast = make_arrays(
        "sensor", 100, seed=8, channels=4, anomaly_rate=1.0, anomaly_types=["frequency_change"]
    ).values
    assert crossings(fast).mean() > crossings(smooth).mean()


def test_sensor_broken_correlation_turns_a_channel_against_the_others() -> None:
    normal, broken = _sensor(None, n=300), _sensor("broken_correlation", n=300)

    def corr_matrix(x: np.ndarray) -> np.ndarray:
        c = x - x.mean(axis=1, keepdims=True)
        c /= np.linalg.norm(c, axis=1, keepdims=True) + 1e-12
        return np.einsum("ntc,ntd->ncd", c, c)

    reference = np.sign(corr_matrix(normal).mean(axis=0))
    mask = ~np.eye(4, dtype=bool)

    def agreement(x: np.ndarray) -> np.ndarray:
        return (np.sign(corr_matrix(x)) == reference)[:, mask].mean(axis=1)

    assert agreement(broken).mean() < agreement(normal).mean() - 0.15


def test_gradual_drift_moves_amplitude_and_labels_the_regime() -> None:
    drift = DriftScenario("gradual", "amplitude", magnitude=1.0, start=100, length=200)
    windows = list(make_stream("ecg", 400, seed=3, drift=drift))
    early = np.mean([w.values.max() for w in windows[:100]])
    late = np.mean([w.values.max() for w in windows[-100:]])
    assert late > 1.6 * early
    assert windows[0].regime == "baseline"
    assert windows[-1].regime.startswith("drift:gradual")
    levels = [float(w.regime.split(":")[2]) for w in windows if w.regime != "baseline"]
    assert levels == sorted(levels) and levels[-1] == 1.0
    assert all(w.label == 0 for w in windows)


@pytest.mark.parametrize("target", ["baseline", "noise"])
def test_step_drift_changes_the_target_from_its_start(target: str) -> None:
    drift = DriftScenario("step", target, magnitude=2.0, start=50)
    batch = make_arrays("sensor", 100, seed=4, channels=2, drift=drift)
    before, after = batch.values[:50], batch.values[50:]
    if target == "baseline":
        assert after.mean() - before.mean() > 1.0
    else:
        rough = lambda x: np.abs(np.diff(x, n=2, axis=1)).mean()  # noqa: E731
        assert rough(after) > 2 * rough(before)
    assert set(batch.regimes[:50]) == {"baseline"} and set(batch.regimes[50:]) == {"drift:step"}


def test_recurring_drift_alternates_regimes_per_source() -> None:
    drift = DriftScenario("recurring", "amplitude", start=10, length=5)
    batch = make_arrays("ecg", 60, seed=1, n_sources=2, drift=drift)
    per_source = [r for r, s in zip(batch.regimes, batch.source_ids, strict=True) if s == "ecg-0"]
    assert per_source == ["baseline"] * 10 + (["drift:recurring"] * 5 + ["baseline"] * 5) * 2


def test_a_shorter_stream_is_a_prefix_of_a_longer_one() -> None:
    short = make_arrays("sensor", 700, seed=9, n_sources=3, anomaly_rate=0.05)
    long = make_arrays("sensor", 2500, seed=9, n_sources=3, anomaly_rate=0.05)
    np.testing.assert_array_equal(short.values, long.values[:700])
    assert list(short.anomaly_types) == list(long.anomaly_types[:700])


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = make_arrays("ecg", 300, seed=1, anomaly_rate=0.1, n_sources=2)
    b = make_arrays("ecg", 300, seed=1, anomaly_rate=0.1, n_sources=2)
    c = make_arrays("ecg", 300, seed=2, anomaly_rate=0.1, n_sources=2)
    assert a.values.tobytes() == b.values.tobytes()
    assert list(a.anomaly_types) == list(b.anomaly_types)
    assert not np.allclose(a.values, c.values)


def test_sources_interleave_with_increasing_seq_from_zero() -> None:
    batch = make_arrays("sensor", 2600, seed=0, n_sources=7, window=16, channels=2)
    assert list(batch.source_ids[:8]) == [f"sensor-{i}" for i in range(7)] + ["sensor-0"]
    for source in set(batch.source_ids):
        seqs = batch.seqs[np.asarray(batch.source_ids) == source]
        assert seqs[0] == 0 and np.all(np.diff(seqs) == 1)
    assert Counter(batch.source_ids) == {
        f"sensor-{i}": c for i, c in enumerate([372] * 3 + [371] * 4)
    }


@pytest.mark.parametrize(("kind", "types"), [("ecg", ECG_ANOMALIES), ("sensor", SENSOR_ANOMALIES)])
def test_injected_anomaly_rate_and_types_are_as_asked(kind: str, types: tuple[str, ...]) -> None:
    n, rate = 6000, 0.05
    batch = make_arrays(
        kind, n, seed=11, anomaly_rate=rate, n_sources=3, window=32 if kind == "sensor" else None
    )  # type: ignore[arg-type]
    # Binomial(6000, 0.05): sd = 16.9 windows; 5 sd either side.
    assert abs(int(batch.labels.sum()) - n * rate) < 5 * np.sqrt(n * rate * (1 - rate))
    labelled = Counter(t for t, lbl in zip(batch.anomaly_types, batch.labels, strict=True) if lbl)
    assert set(labelled) == set(types), "every type is injected, nothing else"
    assert all(
        t == "none" for t, lbl in zip(batch.anomaly_types, batch.labels, strict=True) if not lbl
    )


def test_sensor_profile_is_shared_across_seeds() -> None:
    a = make_arrays("sensor", 400, seed=1, channels=3).values.reshape(-1, 3)
    b = make_arrays("sensor", 400, seed=2, channels=3).values.reshape(-1, 3)
    other = make_arrays("sensor", 400, seed=1, channels=3, profile=5).values.reshape(-1, 3)
    assert np.allclose(a.mean(axis=0), b.mean(axis=0), atol=0.6), "same machine type"
    assert not np.allclose(a.mean(axis=0), other.mean(axis=0), atol=0.6), "another type"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"anomaly_types": ["gremlins"]}, "unknown ecg anomaly type 'gremlins'"),
        ({"anomaly_rate": 1.5}, "anomaly rate must be within [0, 1]"),
        ({"n_sources": 0}, "at least one source"),
        ({"window": 8}, "at least 16 samples"),
        ({"channels": 3}, "one channel"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_impossible_parameters_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ProducerInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_batches("ecg", 10, **kwargs)  # type: ignore[arg-type]


def test_drift_parameters_are_checked() -> None:
    with pytest.raises(ProducerInputError, match="unknown drift"):
        DriftScenario("sideways")  # type: ignore[arg-type]
    with pytest.raises(ProducerInputError, match="length >= 1"):
        DriftScenario("gradual", length=0)
