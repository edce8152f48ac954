"""Per-source thresholds calibrated to a target false-alarm rate (part of the pure core).

:class:`ThresholdBank` (:mod:`~detector.threshold.bank`) owns every source's threshold; the
estimators (:mod:`~detector.threshold.adaptive`, :mod:`~detector.threshold.tails`), the drift
tests (:mod:`~detector.threshold.drift`), the value types (:mod:`~detector.threshold.types`)
and the snapshot codec (:mod:`~detector.threshold.state`) are its parts.
"""

from detector.threshold.bank import ThresholdBank
from detector.threshold.types import ThresholdConfig, ThresholdInfo

__all__ = ["ThresholdBank", "ThresholdConfig", "ThresholdInfo"]
