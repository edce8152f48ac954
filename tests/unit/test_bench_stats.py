"""bench.stats: the arithmetic behind every benchmark figure."""

from __future__ import annotations

import numpy as np
import pytest

from bench import stats


def test_percentile_matches_numpy_linear_interpolation() -> None:
    values = np.random.default_rng(0).exponential(10.0, size=257).tolist()
    for q in (0, 1, 50, 95, 99, 99.9, 100):
        assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_none_and_bad_q_raises() -> None:
    assert stats.percentile([], 99) is None
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_latency_summary_counts_and_orders() -> None:
    summary = stats.latency_summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert summary["n"] == 5
    assert summary["p50_ms"] == 3.0
    assert summary["max_ms"] == 5.0
    assert summary["mean_ms"] == 3.0
    p95, p99 = summary["p95_ms"], summary["p99_ms"]
    assert p95 is not None and p99 is not None and 3.0 < p95 <= p99 <= 5.0
    assert stats.latency_summary([])["p99_ms"] is None


def test_ratio_rate_and_per_10k_refuse_zero_denominators() -> None:
    assert stats.ratio(3.0, 4.0) == 0.75
    assert stats.ratio(3.0, 0.0) is None
    assert stats.ratio(None, 2.0) is None
    assert stats.rate(500, 2.0) == 250.0
    assert stats.rate(5, 0.0) is None
    assert stats.per_10k(3, 20_000) == 1.5
    assert stats.per_10k(3, 0) is None


def test_confusion_counts_and_rates() -> None:
    labels = [1, 1, 1, 0, 0, 0, 0, 0]
    flags = [1, 1, 0, 1, 0, 0, 0, 0]
    c = stats.confusion(labels, flags)
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 1, 1, 4)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.false_alarm_rate == pytest.approx(1 / 5)
    assert c.as_dict()["false_alarm_rate"] == pytest.approx(0.2)


def test_confusion_undefined_rates_are_none() -> None:
    c = stats.confusion([0, 0], [0, 0])
    assert c.precision is None and c.recall is None and c.false_alarm_rate == 0.0
    with pytest.raises(ValueError):
        stats.confusion([0, 1], [0])


def test_episodes_are_maximal_anomalous_runs() -> None:
    assert stats.episodes([]) == []
    assert stats.episodes([1, 1, 0, 0, 1, 0, 1, 1, 1]) == [(0, 2), (4, 5), (6, 9)]


def test_detection_delays_per_episode() -> None:
    labels = [0, 1, 1, 1, 0, 1, 1, 0, 1]
    flags = [1, 0, 0, 1, 0, 1, 0, 0, 0]
    # the first flag (a false alarm before any episode) does not count
    assert stats.detection_delays(labels, flags) == [2, 0, None]


def test_median_ratio_pairs_runs_measured_together() -> None:
    # a slow second repetition slows both variants; pairing keeps the ratio at 0.5
    assert stats.median_ratio([50.0, 20.0, 45.0], [100.0, 40.0, 90.0]) == 0.5
    assert stats.median_ratio([1.0], [0.0]) is None
    with pytest.raises(ValueError):
        stats.median_ratio([1.0, 2.0], [1.0])
