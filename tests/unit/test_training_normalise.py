"""Normalisation fitted per channel on normal windows, applied as the detector applies it."""

from __future__ import annotations

import numpy as np
import pytest

from training.normalise import default_method, fit_normalisation


def test_normalisation_minmax_and_standard_per_channel() -> None:
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(5, 2, (40, 8)), rng.uniform(-1, 3, (40, 8))], axis=-1)
    mm = fit_normalisation(x, "minmax")
    assert mm.offset == pytest.approx([x[..., 0].min(), x[..., 1].min()], rel=1e-6)
    scaled = mm.apply(x)
    assert scaled.min() == pytest.approx(0, abs=1e-6) and scaled.max() == pytest.approx(1, abs=1e-6)
    st = fit_normalisation(x, "standard").apply(x)
    np.testing.assert_allclose(st.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(st.std(axis=(0, 1)), 1, atol=1e-4)
    const = fit_normalisation(np.ones((3, 4, 1)), "standard")
    assert const.scale == [1.0]
    with pytest.raises(ValueError, match="N >= 1"):
        fit_normalisation(np.zeros((0, 4, 1)), "minmax")


def test_defaults_follow_the_tutorial_for_ecg5000() -> None:
    assert default_method("ecg5000") == "minmax"
    assert default_method("csv") == default_method("npz") == "standard"


def test_manifest_values_are_exactly_what_float32_scoring_uses() -> None:
    x = np.random.default_rng(1).normal(3.3, 1.7, size=(30, 10, 1))
    norm = fit_normalisation(x, "standard")
    assert np.float32(norm.offset[0]) == norm.offset[0]
    assert np.float32(norm.scale[0]) == norm.scale[0]


def test_centred_windows_ignore_each_windows_level() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(5.0, 1.0, size=(50, 16, 2)).astype(np.float32)
    norm = fit_normalisation(normal, "standard", centre=True)
    assert norm.centre
    assert np.allclose(norm.offset, 0.0, atol=1e-5)  # centred windows have mean 0
    window = normal[:1]
    drifted = window + np.array([40.0, -7.0], dtype=np.float32)  # both channels moved
    assert np.allclose(norm.apply(window), norm.apply(drifted), atol=1e-4)
    plain = fit_normalisation(normal, "standard")
    assert not np.allclose(plain.apply(window), plain.apply(drifted), atol=1e-2)
