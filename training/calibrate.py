"""Threshold calibration to a target false-alarm rate, from held-out normal scores.

The scores come from normal training windows that the scoring model never saw (out-of-fold,
see :mod:`training.train`). Two estimators of the ``1 - target_far`` quantile:

* ``empirical``: the sample quantile. Unbiased, but at 1 % it rests on the few largest
  scores.
* ``gpd``: peaks over threshold. A generalised Pareto distribution is fitted to the
  excesses over the ``1 - tail_fraction`` quantile and the quantile is read from the fitted
  tail (Pickands-Balkema-de Haan). It uses the whole tail, not its last few points, and
  falls back to ``empirical`` when there are too few excesses or the fit fails.

Pure numpy and scipy: no TensorFlow.

Examples:
    >>> import numpy as np
    >>> scores = np.random.default_rng(0).exponential(size=20_000)
    >>> value = calibrate(scores, 0.01, "empirical").value
    >>> abs(value - 4.605) < 0.15  # the 99th percentile of exp(1) is ln(100) = 4.605
    True
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import numpy.typing as npt

from detector.bundle import ReferenceErrors, ThresholdRecommendation

__all__ = [
    "MIN_RESOLVED_EXCEEDANCES",
    "MIN_TAIL_EXCESSES",
    "ThresholdMethod",
    "calibrate",
    "gpd_quantile",
    "reference_errors",
]

ThresholdMethod = Literal["empirical", "gpd"]
MIN_TAIL_EXCESSES = 30
# A rate is resolved by a sample when it puts at least this many of the sample above the
# threshold (the same rule as the detector's thresholds, detector.threshold.adaptive).
MIN_RESOLVED_EXCEEDANCES = 5
REFERENCE_LEVELS = (0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def gpd_quantile(
    scores: npt.NDArray[np.floating], level: float, tail_fraction: float = 0.1
) -> float | None:
    """The ``level`` quantile of ``scores`` read from a GPD fitted to the upper tail.

    Args:
        scores: held-out normal scores.
        level: e.g. 0.99.
        tail_fraction: share of the scores above the GPD's threshold ``u``; must exceed
            ``1 - level``.

    Returns:
        The quantile, or None when there are fewer than :data:`MIN_TAIL_EXCESSES` excesses
        or the fit fails or is degenerate.
    """
    from scipy import stats

    x = np.asarray(scores, dtype=np.float64)
    if not 0 < 1 - level < tail_fraction < 1:
        raise ValueError(f"need 0 < 1 - level < tail_fraction < 1, got {level}, {tail_fraction}")
    u = float(np.quantile(x, 1 - tail_fraction))
    excess = x[x > u] - u
    if excess.size < MIN_TAIL_EXCESSES or not np.ptp(excess) > 0:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            shape, _, scale = stats.genpareto.fit(excess, floc=0)
    except (ValueError, RuntimeError, FloatingPointError):
        return None
    if not (math.isfinite(shape) and math.isfinite(scale) and scale > 0):
        return None
    tail_share = excess.size / x.size  # the empirical share above u (ties make it < fraction)
    q = u + float(stats.genpareto.ppf(1 - (1 - level) / tail_share, shape, loc=0, scale=scale))
    return q if math.isfinite(q) else None


def calibrate(
    scores: npt.NDArray[np.floating],
    target_far: float,
    method: ThresholdMethod = "gpd",
    tail_fraction: float = 0.1,
) -> ThresholdRecommendation:
    """The threshold whose exceedance rate on normal data is ``target_far``.

    Args:
        scores: held-out normal scores (never used to train the scoring model).
        target_far: the false-alarm rate to promise, in (0, 1).
        method: ``empirical`` or ``gpd`` (falls back to empirical, and says so).
        tail_fraction: the GPD's tail share; raised to ``10 * target_far`` if smaller.

    Raises:
        ValueError: no scores, or ``target_far`` outside (0, 1).
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no held-out normal scores to calibrate on")
    if not 0 < target_far < 1:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    level = 1 - target_far
    empirical = float(np.quantile(x, level))
    value, how = empirical, f"empirical {level:g} quantile"
    if method == "gpd":
        fraction = min(0.5, max(tail_fraction, 10 * target_far))
        fitted = gpd_quantile(x, level, fraction) if fraction > target_far else None
        if fitted is not None:
            value, how = fitted, f"GPD tail fit (top {fraction:g}) {level:g} quantile"
        else:
            how = f"empirical {level:g} quantile (GPD fit not possible)"
    return ThresholdRecommendation(
        value=value,
        target_far=target_far,
        method=how,
        n_samples=int(x.size),
        resolvable=x.size * target_far >= MIN_RESOLVED_EXCEEDANCES,
        min_resolvable_far=MIN_RESOLVED_EXCEEDANCES / x.size,
    )


def reference_errors(
    scores: npt.NDArray[np.floating],
    how: str,
    target_far: float,
    max_sample: int = 2000,
    seed: int = 0,
) -> ReferenceErrors:
    """The manifest's reference distribution: quantiles and a sample of ``scores``.

    Args:
        scores: held-out normal scores.
        how: where they came from, e.g. ``"out-of-fold, 5 folds"``.
        target_far: its ``1 - target_far`` quantile is always among the quantiles.
        max_sample: keep at most this many scores (a seeded random subset, sorted).
        seed: for the subset.
    """
    x = np.asarray(scores, dtype=np.float64)
    levels = sorted({*REFERENCE_LEVELS, round(1 - target_far, 6)})
    quantiles = {f"{lv:g}": float(np.quantile(x, lv)) for lv in levels}
    sample = x
    if x.size > max_sample:
        sample = np.random.default_rng(seed).choice(x, size=max_sample, replace=False)
    return ReferenceErrors(
        n=int(x.size), how=how, quantiles=quantiles, sample=[float(v) for v in np.sort(sample)]
    )
