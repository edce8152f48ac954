"""Pure arithmetic of the benchmarks: percentiles, ratios, detection quality, episodes.

No Kafka, no TensorFlow, no clocks: every function takes plain numbers and returns plain
numbers (or None when a figure is undefined, e.g. a ratio over zero), so the report can say
"n/a" instead of inventing a value.

Examples:
    >>> latency_summary([1.0, 2.0, 3.0, 4.0, 100.0])["p50_ms"]
    3.0
    >>> ratio(50.0, 100.0)
    0.5
    >>> confusion([1, 1, 0, 0], [1, 0, 1, 0]).recall
    0.5
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "Confusion",
    "confusion",
    "detection_delays",
    "episodes",
    "latency_summary",
    "median",
    "median_ratio",
    "per_10k",
    "percentile",
    "rate",
    "ratio",
]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    Same definition as ``numpy.percentile``'s default; None for no values.

    Raises:
        ValueError: ``q`` outside [0, 100].
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = math.ceil(pos)
    if low == high:
        return float(ordered[low])
    frac = pos - low
    return float(ordered[low] * (1.0 - frac) + ordered[high] * frac)


def median(values: Iterable[float]) -> float | None:
    """Median, or None for no values."""
    items = list(values)
    return float(statistics.median(items)) if items else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float | None:
    """Median of the pairwise ratios ``numerators[i] / denominators[i]``.

    Pairs measured back to back share the machine's load at that moment, so the median of
    their ratios is steadier than the ratio of two medians on a noisy host.

    >>> median_ratio([10.0, 30.0], [20.0, 40.0])
    0.625
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    ratios = [r for a, b in zip(numerators, denominators, strict=True) if (r := ratio(a, b))]
    return median(ratios)


def rate(count: int, seconds: float) -> float | None:
    """Events per second, or None for a non-positive duration."""
    if seconds <= 0:
        return None
    return count / seconds


def per_10k(count: int, total: int) -> float | None:
    """``count`` per 10,000 of ``total`` (e.g. false alarms per 10k normal windows)."""
    if total <= 0:
        return None
    return 10_000.0 * count / total


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p95, p99, max and mean of latencies in milliseconds."""
    return {
        "n": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": float(max(latencies_ms)) if latencies_ms else None,
        "mean_ms": float(statistics.fmean(latencies_ms)) if latencies_ms else None,
    }


@dataclass(frozen=True, slots=True)
class Confusion:
    """Window-level detection quality; ``positive`` means anomalous.

    Attributes:
        tp, fp, tn, fn: counts.
        precision: tp / (tp + fp), None when nothing was flagged.
        recall: tp / (tp + fn), None when there is no anomalous window.
        false_alarm_rate: fp / (fp + tn), None when there is no normal window.
    """

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def false_alarm_rate(self) -> float | None:
        return ratio(self.fp, self.fp + self.tn)

    def as_dict(self) -> dict[str, float | int | None]:
        """Counts and rates, for the results file."""
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "false_alarm_rate": self.false_alarm_rate,
        }


def confusion(labels: Sequence[int], flags: Sequence[bool | int]) -> Confusion:
    """Confusion counts of flags against labels (1 anomalous, 0 normal).

    Raises:
        ValueError: the sequences differ in length.
    """
    if len(labels) != len(flags):
        raise ValueError(f"{len(labels)} labels but {len(flags)} flags")
    tp = fp = tn = fn = 0
    for label, flag in zip(labels, flags, strict=True):
        if label and flag:
            tp += 1
        elif label:
            fn += 1
        elif flag:
            fp += 1
        else:
            tn += 1
    return Confusion(tp, fp, tn, fn)


def episodes(labels: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of anomalous windows in one source's ordered labels, as [start, end).

    >>> episodes([0, 1, 1, 0, 1])
    [(1, 3), (4, 5)]
    """
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, label in enumerate(labels):
        if label and start is None:
            start = i
        elif not label and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(labels)))
    return out


def detection_delays(labels: Sequence[int], flags: Sequence[bool | int]) -> list[int | None]:
    """For each ground-truth episode of one source: windows from its start to its first flag.

    0 means the episode's first window was flagged; None means no window of it was.

    >>> detection_delays([0, 1, 1, 0, 1, 1], [0, 0, 1, 0, 0, 0])
    [1, None]
    """
    if len(labels) != len(flags):
        raise ValueError(f"{len(labels)} labels but {len(flags)} flags")
    delays: list[int | None] = []
    for start, end in episodes(labels):
        hit = next((i - start for i in range(start, end) if flags[i]), None)
        delays.append(hit)
    return delays
