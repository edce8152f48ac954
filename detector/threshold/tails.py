"""Tail estimators behind the thresholds: censored empirical quantile, exponential tail, SPOT.

The problem they solve: a threshold for a 1% false-alarm rate must be learnt from normal
windows only, yet the windows it flags are (mostly) normal too. Leaving them out censors the top
1% of the distribution and every recalibration would set the bar lower; letting them in with
their scores lets anomalies raise the bar. The middle way used here:

* A flagged window that opens an episode enters the reference as a **censored** observation:
  "above ``c``", with ``c`` the threshold it exceeded, its score forgotten. Exceedance *counts*
  stay right (no downward walk) but no anomaly's *magnitude* is ever learnt.
* The ``1 - q`` quantile is read off the sample directly when it lies below every censoring
  point (few censored values: the threshold should come down), and otherwise from a tail model
  fitted above an anchor ``t`` with the censored values in its likelihood: exponential for
  ``quantile``, the generalised Pareto distribution for ``spot``.
* Anomalies inflate only the censored count. A **contamination guard** fits an exponential tail
  to the top 10% of the uncensored scores below the lowest censoring point (a sample no flagged
  window, normal or not, can have touched), corrected by :func:`guard_bias` measured on the
  bundle's clean reference, and predicts how many observations normal data would put above that
  point. When the count is beyond ``slack`` times that (plus Poisson noise), the excess is
  anomalies and the prediction replaces the count ("guarded"). The caller turns the guard off
  (``slack=inf``) when the bulk of the scores has moved up, i.e. the excess is drift
  (:class:`detector.threshold.bank.ThresholdBank`).

Under 5% anomalous windows this keeps the threshold within about 5% of where it is without
them; trusting the count would lift it (``test_threshold_calibration.py``). Anomalies scoring
*below* the threshold are unflagged and indistinguishable from normal windows: dense ones just
under the bar (say 5% of traffic within 1.3x of it) do lift it, by design of any learner that
cannot tell them apart.

SPOT (Siffer, Fouque, Termier, Largouet, "Anomaly Detection in Streams with Extreme Value
Theory", KDD 2017) fits GPD(sigma, xi) to the excesses over ``t`` and reads the threshold for a
small risk ``q`` off the tail, extrapolating beyond the data::

    z_q = t + sigma / xi * ((q * n / N_t) ** -xi - 1)     (xi = 0: t - sigma * log(q n / N_t))

The fit maximises the likelihood with Grimshaw's reduction, as in the paper: with
``theta = xi / sigma`` the shape has a closed form, ``xi = (sum log1p(theta * y_i) +
sum log1p(theta * c_j)) / m`` over the ``m`` uncensored excesses ``y_i`` and the censored ones
``c_j`` (with no censored values this is the paper's formula), leaving a one-variable search, done
here on a fixed grid refined once: deterministic, no scipy, tens of microseconds.

Examples:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).exponential(size=20_000)
    >>> round(spot_quantile(x, 1e-3).value, 1)  # true 0.999 quantile: ln(1000) = 6.9
    6.9
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "GpdFit",
    "SpotFit",
    "TailEstimate",
    "empirical_quantile",
    "estimate_threshold",
    "fit_gpd",
    "fit_truncated_exponential",
    "guard_bias",
    "spot_quantile",
]

FloatArray = npt.NDArray[np.floating]
_EMPTY = np.empty(0, dtype=np.float64)

# Grimshaw's variable as u = theta * max(y): u in (-1, 0) gives xi < 0, u > 0 gives xi > 0.
_U_GRID = np.concatenate(
    [
        -(1.0 - np.logspace(-6, 0, 24, endpoint=False)),
        -np.logspace(-1, -5, 12),
        [0.0],
        np.logspace(-5, 4, 45),
    ]
)
_MIN_XI = -0.5  # below this the likelihood is irregular (unbounded for xi <= -1)
_GUARD_FRACTION = 0.1  # the guard's exponential is fitted to the top 10% below the cut
_GUARD_Z = 2.0  # Poisson noise allowance of the guard, in standard deviations


@dataclass(frozen=True, slots=True)
class GpdFit:
    """A generalised Pareto fit to excesses: scale ``sigma`` > 0 and shape ``xi``."""

    sigma: float
    xi: float
    n: int
    loglik: float

    def isf(self, p: float) -> float:
        """The excess exceeded with probability ``p`` (0 < p <= 1)."""
        if abs(self.xi) < 1e-9:
            return -self.sigma * math.log(p)
        return self.sigma / self.xi * (math.pow(p, -self.xi) - 1.0)


@dataclass(frozen=True, slots=True)
class TailEstimate:
    """A threshold estimate and how it was reached.

    Attributes:
        value: the estimate (nan when there was nothing to estimate from).
        path: ``"empirical"`` (read off the sample), ``"tail"`` (tail model with the censored
            values), ``"guarded"`` (capped by the anomaly-free truncated model) or ``"empty"``.
        n: observations, censored ones included.
        censored: censored observations.
        expected_censored: how many a normal tail would give (the guard's prediction), or None
            when the guard did not run.
        t: the tail anchor (nan on the empirical path).
        sigma: tail scale (nan when no tail was fitted).
        xi: tail shape (0 for the exponential tail, nan when no tail was fitted).
    """

    value: float
    path: Literal["empirical", "tail", "guarded", "empty"]
    n: int
    censored: int
    expected_censored: float | None
    t: float
    sigma: float
    xi: float


def empirical_quantile(values: FloatArray, level: float) -> float:
    """The ``level`` quantile with linear interpolation (numpy's default), in O(n).

    Raises:
        ValueError: ``values`` is empty or ``level`` is outside [0, 1].
    """
    n = int(values.shape[0])
    if n == 0:
        raise ValueError("no values")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"level must be in [0, 1], got {level}")
    h = (n - 1) * level
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    part = np.partition(values, [lo, hi]) if hi != lo else np.partition(values, lo)
    a = float(part[lo])
    return a + (h - lo) * (float(part[hi]) - a)


def _profile(u: FloatArray, y: FloatArray, c: FloatArray, m: int) -> tuple[FloatArray, FloatArray]:
    """Profile log-likelihood / m and xi for each ``u`` (scaled so that max(y, c) = 1)."""
    nonzero = u != 0.0
    safe_u = np.where(nonzero, u, 1.0)[:, None]
    a = np.log1p(safe_u * y[None, :]).sum(axis=1)
    b = np.log1p(safe_u * c[None, :]).sum(axis=1) if c.shape[0] else 0.0
    xi = (a + b) / m
    exp_sigma = (float(y.sum()) + float(c.sum())) / m  # the exponential limit at u = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.where(nonzero, np.log(safe_u[:, 0] / xi) - a / m - 1.0, -math.log(exp_sigma) - 1.0)
    xi = np.where(nonzero, xi, 0.0)
    ll = np.where(np.isfinite(ll) & (xi >= _MIN_XI), ll, -np.inf)
    return ll, xi


def fit_gpd(excesses: FloatArray, censored: FloatArray | None = None) -> GpdFit | None:
    """Maximum-likelihood GPD fit (Grimshaw's reduction), optionally with right-censoring.

    Args:
        excesses: observed excesses (> 0).
        censored: excesses known only to be at least these values (>= 0).

    Returns:
        The fit, or None with fewer than 3 observed excesses or all of them equal.
    """
    y = np.asarray(excesses, dtype=np.float64)
    c = _EMPTY if censored is None else np.asarray(censored, dtype=np.float64)
    m = int(y.shape[0])
    if m < 3:
        return None
    scale = max(float(y.max()), float(c.max()) if c.shape[0] else 0.0)
    if not scale > 0.0 or float(y.min()) == float(y.max()):
        return None
    ys, cs = y / scale, c / scale
    ll, _ = _profile(_U_GRID, ys, cs, m)
    best = int(np.argmax(ll))
    if not np.isfinite(ll[best]):
        return None
    u_best = float(_U_GRID[best])
    lo = float(_U_GRID[max(best - 1, 0)])
    hi = float(_U_GRID[min(best + 1, _U_GRID.shape[0] - 1)])
    fine = np.concatenate([np.linspace(lo, u_best, 21), np.linspace(u_best, hi, 21)[1:]])
    ll_f, xi_f = _profile(fine, ys, cs, m)
    k = int(np.argmax(ll_f))  # u_best is on the fine grid, so this is never worse
    u = float(fine[k])
    xi = float(xi_f[k])
    sigma = (xi / u if u != 0.0 else (float(ys.sum()) + float(cs.sum())) / m) * scale
    if not (sigma > 0.0 and math.isfinite(sigma)):
        return None
    return GpdFit(sigma=sigma, xi=xi, n=m, loglik=float(ll_f[k]) * m - m * math.log(scale))


def _phi(u: float) -> float:
    """Mean of a truncated exponential on [0, 1] with rate u: ``1/u - 1/(e^u - 1)``."""
    if abs(u) < 1e-6:
        return 0.5 - u / 12.0
    return 1.0 / u - 1.0 / math.expm1(u)


def fit_truncated_exponential(excesses: FloatArray, upper: float) -> float | None:
    """Rate of an exponential fitted to excesses observed only up to ``upper`` (MLE).

    Returns:
        The rate (<= 0 when the density does not decrease over [0, upper]), or None when
        there are no excesses or ``upper`` is not positive.
    """
    if excesses.shape[0] == 0 or not upper > 0.0:
        return None
    r = min(max(float(excesses.mean()) / upper, 1e-9), 1.0 - 1e-9)
    lo, hi = -200.0, 200.0  # _phi decreases from 1 to 0 over u in (-inf, inf)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _phi(mid) > r:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi) / upper


def _mass_above(clean: FloatArray, cut: float) -> float | None:
    """P(X > cut) from a sample truncated at ``cut``: an exponential fitted to its top 10%.

    A long stretch below the cut keeps the fitted rate steady; a short one lets noise make it
    non-positive, and then nothing can be said. None when the fit fails.
    """
    if clean.shape[0] < 20:
        return None
    t = empirical_quantile(clean, 1.0 - _GUARD_FRACTION)
    y = clean[clean > t] - t
    lam = fit_truncated_exponential(y, cut - t) if y.shape[0] >= 10 else None
    if lam is None or lam <= 0.0:
        return None
    e = math.exp(-lam * (cut - t))
    s = int(y.shape[0]) / int(clean.shape[0])
    return s * e / (1.0 - e + s * e)  # undoes the truncation: P(X > t) * P(X > cut | X > t)


def guard_bias(reference: FloatArray, q: float) -> float:
    """How far the guard's tail model over- or under-states the tail of ``reference``.

    The exponential above the top 10% is a model: for the light tails of reconstruction errors
    (gamma-like) it overstates the mass beyond the cut by about 1.4x, for heavy tails
    (Pareto-like) it understates it by about 2x. Censoring a clean, untruncated sample of the
    same errors (the bundle's reference) at its own ``1 - q`` point and comparing the model's
    mass above the cut with the actual one measures that factor, which the guard then divides
    out. Returns 1 (no correction) for a reference of under 200 scores, and at most 2x
    either way.
    """
    x = np.asarray(reference, dtype=np.float64)
    n = int(x.shape[0])
    if n < 200:
        return 1.0
    # The median over a few cuts (from q, or 10 points above the cut, up to 10%) steadies
    # the estimate from a reference of a few thousand scores.
    base = max(q, 10.0 / n)
    logs = []
    for level in sorted({min(f * base, 0.1) for f in (1.0, 1.5, 2.0, 3.0, 4.0, 5.0)}):
        cut = empirical_quantile(x, 1.0 - level)
        clean = x[x <= cut]
        observed = (n - int(clean.shape[0])) / n
        modelled = _mass_above(clean, cut)
        if modelled is not None and observed > 0.0:
            logs.append(math.log(modelled / observed))
    if not logs:
        return 1.0
    return min(max(math.exp(float(np.median(logs))), 0.5), 2.0)


def estimate_threshold(
    uncensored: FloatArray,
    censor_at: FloatArray,
    q: float,
    *,
    tail: Literal["exponential", "gpd"] = "exponential",
    tail_fraction: float = 0.02,
    min_peaks: int = 30,
    slack: float = 1.5,
    empirical: bool = True,
    guard_bias: float = 1.0,
) -> TailEstimate:
    """The score exceeded with probability ``q``, from a sample with right-censored values.

    Everything is referred to the lowest censoring point ``cut``: the scores at or below it
    form a complete sample of the distribution truncated at ``cut`` (no window that low was
    ever flagged), and every other observation, censored or not, is known to exceed it.

    1. Anchor ``t``: the ``1 - tail_fraction`` quantile of the scores below ``cut`` (at least
       ``3 q`` of them above it).
    2. Guard: an exponential tail fitted to the top 10% of the scores below ``cut``, truncated
       at it (and corrected by ``guard_bias``), predicts how many observations should exceed
       ``cut``. If the actual count is beyond
       ``slack`` times that (and Poisson noise at about 3 sigma), the excess is anomalies: the
       predicted count replaces the actual one ("guarded").
    3. The sample is then the scores below ``cut`` plus that many observations censored at
       ``cut``. The quantile is read off it when it falls below ``cut`` (``empirical``);
       otherwise it comes from a tail above ``t`` fitted with the censored observations in the
       likelihood: exponential, or GPD (SPOT) with ``tail="gpd"``.

    Args:
        uncensored: observed scores (>= 0).
        censor_at: for each censored observation, a value it is known to exceed.
        q: the exceedance probability, in (0, 0.5).
        tail: ``"exponential"`` or ``"gpd"`` above the anchor.
        tail_fraction: share of the sample above the anchor (raised to ``3 q``).
        min_peaks: fewer uncensored excesses than this fit an exponential instead of a GPD.
        slack: how far the censored count may exceed the guard's prediction and still be
            taken as normal (the tail model's own error must fit inside it).
        empirical: read the quantile off the sample when it can be (False: always use the
            tail, as SPOT does).
        guard_bias: the guard model's known overstatement of the tail mass (see
            :func:`guard_bias`); its prediction is divided by this.
    """
    nan = math.nan
    k = int(censor_at.shape[0])
    n = int(uncensored.shape[0]) + k
    if k:
        cut = float(censor_at.min())
        clean = uncensored[uncensored <= cut]
    else:
        cut = math.inf
        clean = uncensored
    n_clean = int(clean.shape[0])
    above = n - n_clean  # observations known to exceed `cut`
    if n_clean == 0:
        return TailEstimate(nan, "empty", n, k, None, nan, nan, nan)
    t = empirical_quantile(clean, 1.0 - min(max(tail_fraction, 3.0 * q), 0.5))
    y = clean[clean > t] - t
    expected = None
    guarded = False
    p_cut = _mass_above(clean, cut) if above else None
    if p_cut is not None:
        p_cut = min(p_cut / guard_bias, 0.5)
        expected = n * p_cut
        limit = slack * expected
        if above > limit + _GUARD_Z * math.sqrt(limit) + 1.0:
            guarded = True
            above = round(n_clean * p_cut / (1.0 - p_cut))
    n_eff = n_clean + above
    h = (n_eff - 1) * (1.0 - q)
    if empirical and h <= n_clean - 1:
        value = empirical_quantile(clean, h / (n_clean - 1) if n_clean > 1 else 0.0)
        return TailEstimate(
            value, "guarded" if guarded else "empirical", n, k, expected, nan, nan, nan
        )
    path: Literal["tail", "guarded"] = "guarded" if guarded else "tail"
    if y.shape[0] == 0:
        return TailEstimate(t, path, n, k, expected, t, nan, nan)
    c = np.full(above, cut - t) if above else _EMPTY
    fit = fit_gpd(y, c) if tail == "gpd" and y.shape[0] >= min_peaks else None
    if fit is None:  # exponential with censoring: sigma = total exposure / observed excesses
        fit = GpdFit((float(y.sum()) + float(c.sum())) / y.shape[0], 0.0, int(y.shape[0]), nan)
    value = t + fit.isf(min(q * n_eff / (y.shape[0] + above), 1.0))
    return TailEstimate(value, path, n, k, expected, t, fit.sigma, fit.xi)


@dataclass(frozen=True, slots=True)
class SpotFit:
    """A SPOT threshold over an uncensored batch: the value, its anchor and GPD fit."""

    value: float
    t: float
    sigma: float
    xi: float
    n_peaks: int


def spot_quantile(
    values: FloatArray, q: float, tail_fraction: float = 0.02, min_peaks: int = 30
) -> SpotFit:
    """The SPOT threshold for risk ``q`` over an uncensored batch (e.g. a bundle reference).

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside (0, 1).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if values.shape[0] == 0:
        raise ValueError("no values")
    est = estimate_threshold(
        values, _EMPTY, q, tail="gpd", tail_fraction=tail_fraction, min_peaks=min_peaks,
        empirical=False,
    )  # fmt: skip
    n_peaks = int(np.count_nonzero(values > est.t)) if math.isfinite(est.t) else 0
    return SpotFit(est.value, est.t, est.sigma, est.xi, n_peaks)
