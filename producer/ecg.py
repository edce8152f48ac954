"""Synthetic ECG beats: P-QRS-T morphology with natural variation.

Each window is one cardiac cycle resampled to ``window`` samples (140 by default, as in
ECG5000), with the R peak at a fixed fraction of the window (:data:`R_FRACTION`). Waves are
Gaussian bumps in time relative to the R peak (McSharry et al.'s ECGSYN idea):

* heart rate per source 58-85 bpm, with respiratory sinus arrhythmia and a slow random walk;
  wave timing follows the rate (PR and QT shorten at higher rates, QT after Bazett);
* per-source amplitude and P/T sizes, per-beat jitter of every wave;
* baseline wander (a respiration-like sinusoid, continuous across beats) and white noise.

Anomalies change the generation of a beat: ``premature_beat`` (early, no P wave, wide and
tall QRS, inverted T), ``st_elevation`` / ``st_depression`` (a raised or lowered ST segment),
``missing_p_wave``, ``noise_burst`` (a burst of muscle-like noise over part of the beat).

Examples:
    >>> import numpy as np
    >>> from producer.scenarios import DriftScenario
    >>> gen = EcgGenerator(n_sources=2, window=140, rng=np.random.default_rng(0))
    >>> types = np.full((2, 3), "none")
    >>> no_drift = DriftScenario().effect(np.zeros((2, 3), dtype=np.int64))
    >>> beats = gen.generate(np.random.default_rng(1), types, no_drift)
    >>> beats.shape, int(beats[0, 0].argmax()) == gen.r_index
    ((2, 3, 140), True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from producer.generator import WindowGenerator
from producer.scenarios import DriftEffect

__all__ = ["ECG_WINDOW", "R_FRACTION", "EcgGenerator"]

ECG_WINDOW = 140
R_FRACTION = 0.4  # where the R peak sits in the window

F64 = npt.NDArray[np.float64]


def _gauss(tau: F64, amp: F64, mu: F64, sd: F64) -> F64:
    """Gaussian waves: ``tau`` (..., L); ``amp``, ``mu``, ``sd`` (...)."""
    z = (tau - mu[..., None]) / sd[..., None]
    out: F64 = amp[..., None] * np.exp(-0.5 * z * z)
    return out


def _sigmoid(x: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


class EcgGenerator(WindowGenerator):
    """Beats for ``n_sources`` sources; each call continues every source's rhythm.

    :meth:`generate` returns (S, R, window) beats in millivolts; drift ``amplitude`` multiplies
    the waves, ``baseline`` is in units of the source's R amplitude.

    Args:
        n_sources: number of independent sources (patients).
        window: samples per beat.
        rng: draws the per-source constants (heart rate, amplitudes, noise level ...).
    """

    def __init__(self, n_sources: int, window: int, rng: np.random.Generator) -> None:
        if window < 16:
            raise ValueError(f"an ECG window needs at least 16 samples, got {window}")
        super().__init__(n_sources, window)
        s = n_sources
        self.r_index = round(R_FRACTION * window)
        self._hr0 = rng.uniform(58.0, 85.0, s)
        self._rsa = rng.uniform(1.0, 4.0, s)
        self._f_resp = rng.uniform(0.2, 0.33, s)
        self._phi_resp = rng.uniform(0.0, 2 * np.pi, s)
        self._gain = rng.uniform(0.8, 1.3, s)
        self._p_size = rng.uniform(0.8, 1.2, s)
        self._t_size = rng.uniform(0.8, 1.2, s)
        self._bw_amp = rng.uniform(0.02, 0.08, s)
        self._bw_freq = rng.uniform(0.15, 0.3, s)
        self._bw_phase = rng.uniform(0.0, 2 * np.pi, s)
        self._noise_sd = rng.uniform(0.008, 0.02, s)
        self._time = rng.uniform(0.0, 60.0, s)  # seconds since each source's recording began
        self._walk = np.zeros(s)  # slow heart-rate random walk, bpm

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The one ECG lead."""
        return ("ecg",)

    def _rhythm(
        self, rng: np.random.Generator, premature: npt.NDArray[np.bool_]
    ) -> tuple[F64, F64]:
        """Per-beat RR interval (s) and beat time (s), shapes (S, R); advances the clock."""
        s, rounds = premature.shape
        rr = np.empty((s, rounds))
        start = np.empty((s, rounds))
        shocks = rng.normal(0.0, 0.8, (s, rounds))
        jitter = rng.normal(0.0, 1.0, (s, rounds))
        early = rng.uniform(0.6, 0.75, (s, rounds))
        for r in range(rounds):
            self._walk = 0.92 * self._walk + shocks[:, r]
            resp = np.sin(2 * np.pi * self._f_resp * self._time + self._phi_resp)
            hr = np.clip(self._hr0 + self._walk + self._rsa * resp + jitter[:, r], 45.0, 140.0)
            beat_rr = 60.0 / hr
            beat_rr = np.where(premature[:, r], beat_rr * early[:, r], beat_rr)
            rr[:, r] = beat_rr
            start[:, r] = self._time
            self._time = self._time + beat_rr
        return rr, start

    def generate(
        self, rng: np.random.Generator, anomaly_types: npt.NDArray[np.str_], effect: DriftEffect
    ) -> npt.NDArray[np.float32]:
        s, rounds = anomaly_types.shape
        shape = (s, rounds)
        premature = anomaly_types == "premature_beat"
        rr, beat_start = self._rhythm(rng, premature)
        length = self.window
        frac = np.arange(length) / length - R_FRACTION
        tau = frac[None, None, :] * rr[..., None]  # seconds from the R peak

        def jit(sd: float) -> F64:
            return rng.normal(1.0, sd, shape)

        gain = self._gain[:, None]
        p_amp = 0.12 * self._p_size[:, None] * jit(0.08)
        p_mu = -(0.12 + 0.06 * rr) * jit(0.03)
        q_amp = -0.10 * jit(0.1)
        r_amp = 1.0 * jit(0.04)
        s_amp = -0.22 * jit(0.1)
        qrs_sd = 0.0105 * jit(0.05)
        t_amp = 0.30 * self._t_size[:, None] * jit(0.08)
        t_mu = (0.4 * np.sqrt(rr) - 0.09) * jit(0.03)
        t_sd = 0.045 * jit(0.06)

        no_p = premature | (anomaly_types == "missing_p_wave")
        p_amp = np.where(no_p, 0.0, p_amp)
        widen = np.where(premature, rng.uniform(2.5, 3.5, shape), 1.0)
        qrs_sd = qrs_sd * widen
        r_amp = np.where(premature, r_amp * rng.uniform(1.1, 1.4, shape), r_amp)
        s_amp = np.where(premature, s_amp * 2.0, s_amp)
        t_amp = np.where(premature, -rng.uniform(0.3, 0.5, shape), t_amp)
        t_mu = np.where(premature, t_mu + 0.05, t_mu)

        beats = _gauss(tau, p_amp, p_mu, np.full(shape, 0.022))
        beats += _gauss(tau, q_amp, -2.6 * qrs_sd, qrs_sd)
        beats += _gauss(tau, r_amp, np.zeros(shape), qrs_sd)
        beats += _gauss(tau, s_amp, 2.6 * qrs_sd, qrs_sd)
        beats += _gauss(tau, t_amp, t_mu, t_sd)

        st_sign = np.where(anomaly_types == "st_elevation", 1.0, 0.0) - np.where(
            anomaly_types == "st_depression", 1.0, 0.0
        )
        st_rows = np.nonzero(st_sign)
        if st_rows[0].size:
            height = st_sign[st_rows] * rng.uniform(0.15, 0.3, st_rows[0].size)
            j_point = 2.6 * qrs_sd[st_rows] + 0.02
            t_rows = tau[st_rows]
            plateau = _sigmoid((t_rows - j_point[:, None]) / 0.005) * _sigmoid(
                (t_mu[st_rows][:, None] - t_rows) / 0.02
            )
            beats[st_rows] += height[:, None] * plateau

        beats *= (gain * effect.amplitude)[..., None]
        abs_time = beat_start[..., None] + rr[..., None] * (frac[None, None, :] + R_FRACTION)
        wander = self._bw_amp[:, None, None] * np.sin(
            2 * np.pi * self._bw_freq[:, None, None] * abs_time + self._bw_phase[:, None, None]
        )
        beats += wander + (effect.baseline * gain)[..., None]
        noise_sd = self._noise_sd[:, None] * effect.noise
        beats += rng.normal(0.0, 1.0, beats.shape) * noise_sd[..., None]

        for i, r in zip(*np.nonzero(anomaly_types == "noise_burst"), strict=True):
            seg = int(length * rng.uniform(0.25, 0.45))
            pos = int(rng.integers(0, length - seg + 1))
            beats[i, r, pos : pos + seg] += rng.normal(0.0, rng.uniform(0.08, 0.2), seg)
        return beats.astype(np.float32)
