"""Synthetic multichannel sensor windows: correlated channels, seasonality, noise.

Each source is a continuous multichannel series cut into consecutive windows. The sources are
a fleet of one machine type: they share the channel structure, each varies it slightly and has
its own phase and noise level. ``C`` channels mix ``K = ceil(C / 2)`` latent factors (so
channels are correlated); each factor is a seasonal sinusoid (period 0.6-3 windows) plus a
slow mean-reverting level; each channel adds its own white noise, then an offset and a
scale::

    x[t, c] = offset[c] + scale[c] * (sum_k W[c, k] * z[t, k] + noise_sd * e[t, c])

Anomalies made here (they need the generator's internals): ``frequency_change`` (the seasonal
factors speed up 2.5-4x inside the window, phase-continuous at its start) and
``broken_correlation`` (one channel's factor part is mirrored around its window mean, so it
moves against the channels it used to follow). The others are applied to the finished
window by :func:`producer.anomalies.apply_sensor_anomaly`.

Examples:
    >>> import numpy as np
    >>> from producer.scenarios import DriftScenario
    >>> gen = SensorGenerator(n_sources=1, window=32, channels=3, rng=np.random.default_rng(0))
    >>> no_drift = DriftScenario().effect(np.zeros((1, 4), dtype=np.int64))
    >>> gen.generate(np.random.default_rng(1), np.full((1, 4), "none"), no_drift).shape
    (1, 4, 32, 3)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from producer.anomalies import apply_sensor_anomaly
from producer.generator import WindowGenerator
from producer.scenarios import DriftEffect

__all__ = ["SensorGenerator"]

GENERATED_HERE = ("frequency_change", "broken_correlation")


class SensorGenerator(WindowGenerator):
    """Windows for ``n_sources`` sources; each call continues every source's series.

    :meth:`generate` returns (S, R, window, channels) samples; drift ``amplitude`` multiplies
    the signal's deviation from its offset, ``baseline`` is in channel scales.

    Args:
        n_sources: number of independent sources (machines).
        window: samples per window.
        channels: channels per window.
        rng: draws each source's variations (phase, noise level, small structure changes).
        profile: seeds the machine type, the channel structure every source shares (mixing,
            offsets, scales, periods); independent of the stream's seed so that a model
            trained on one seed's windows fits another seed's stream of the same profile.
    """

    def __init__(
        self,
        n_sources: int,
        window: int,
        channels: int,
        rng: np.random.Generator,
        profile: int = 0,
    ) -> None:
        if window < 4:
            raise ValueError(f"a sensor window needs at least 4 samples, got {window}")
        if channels < 1:
            raise ValueError(f"need at least one channel, got {channels}")
        s, c = n_sources, channels
        k = max(1, (c + 1) // 2)
        super().__init__(n_sources, window)
        self.channels = channels
        # A fleet of machines of one type: the channel structure (mixing, offsets, scales,
        # periods) is shared, each source varies it a little and has its own phase and noise.
        machine = np.random.default_rng([profile, c, window])
        mix = machine.normal(0.0, 1.0, (c, k))
        offset = machine.normal(0.0, 5.0, c)
        scale = machine.uniform(0.5, 2.0, c)
        period = machine.uniform(0.6, 3.0, k) * window
        season_amp = machine.uniform(0.7, 1.3, k)
        mix = mix[None] + rng.normal(0.0, 0.05, (s, c, k))
        self._mix = mix / np.linalg.norm(mix, axis=2, keepdims=True)
        self._offset = offset[None] + rng.normal(0.0, 0.2, (s, c))
        self._scale = scale[None] * rng.uniform(0.9, 1.1, (s, c))
        self._period = period[None] * rng.uniform(0.9, 1.1, (s, k))
        self._phase = rng.uniform(0.0, 2 * np.pi, (s, k))
        self._season_amp = season_amp[None] * rng.uniform(0.9, 1.1, (s, k))
        self._noise_sd = rng.uniform(0.05, 0.1, s)
        self._knot = rng.normal(0.0, 0.3, (s, k))
        self._start = rng.integers(0, 10 * window, s).astype(np.float64)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """``ch0``, ``ch1``, ..."""
        return tuple(f"ch{i}" for i in range(self.channels))

    def generate(
        self, rng: np.random.Generator, anomaly_types: npt.NDArray[np.str_], effect: DriftEffect
    ) -> npt.NDArray[np.float32]:
        s, rounds = anomaly_types.shape
        length = self.window
        k = self._knot.shape[1]
        knots = np.empty((s, k, rounds + 1))
        knots[:, :, 0] = self._knot
        shocks = rng.normal(0.0, 0.25, (s, k, rounds))
        for r in range(rounds):
            knots[:, :, r + 1] = 0.85 * knots[:, :, r] + shocks[:, :, r]
        self._knot = knots[:, :, rounds].copy()

        tau = np.arange(length, dtype=np.float64)
        ramp = (tau / length)[None, None, :, None]
        k0 = knots[:, :, :-1].transpose(0, 2, 1)[:, :, None, :]  # (S, R, 1, K)
        k1 = knots[:, :, 1:].transpose(0, 2, 1)[:, :, None, :]
        slow = k0 + (k1 - k0) * ramp  # (S, R, T, K)

        win_start = self._start[:, None] + length * np.arange(rounds)[None, :]  # (S, R)
        self._start = self._start + length * rounds
        period = self._period[:, None, None, :]
        phase0 = 2 * np.pi * win_start[..., None, None] / period + self._phase[:, None, None, :]
        speed = np.ones((s, rounds))
        fast = anomaly_types == "frequency_change"
        speed[fast] = rng.uniform(2.5, 4.0, int(fast.sum()))
        angle = phase0 + 2 * np.pi * speed[..., None, None] * tau[None, None, :, None] / period
        season = self._season_amp[:, None, None, :] * np.sin(angle)

        latent = np.einsum("srtk,sck->srtc", season + slow, self._mix)
        for i, r in zip(*np.nonzero(anomaly_types == "broken_correlation"), strict=True):
            ch = int(rng.integers(self.channels))
            part = latent[i, r, :, ch]
            latent[i, r, :, ch] = 2 * part.mean() - part

        noise_sd = self._noise_sd[:, None] * effect.noise  # (S, R)
        eps = rng.normal(0.0, 1.0, latent.shape) * noise_sd[..., None, None]
        scale = self._scale[:, None, None, :]
        values = self._offset[:, None, None, :] + scale * (
            effect.amplitude[..., None, None] * latent + eps + effect.baseline[..., None, None]
        )
        for i, r in zip(*np.nonzero(anomaly_types != "none"), strict=True):
            kind = str(anomaly_types[i, r])
            if kind not in GENERATED_HERE:
                apply_sensor_anomaly(
                    rng, values[i, r], kind, self._scale[i], float(self._noise_sd[i])
                )
        out: npt.NDArray[np.float32] = values.astype(np.float32)
        return out
