"""The targets the issues set, checked against one run's figures, with a diagnosis when missed.

Every target is a ratio or figure from the same run. A target whose figure is missing (its
section failed or was skipped) is "not measured", never passed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TARGETS", "Target", "dig", "evaluate"]


def dig(doc: Any, *path: str | int) -> Any:
    """``doc[p0][p1]...``, or None as soon as a step is missing.

    >>> dig({"a": [{"b": 3}]}, "a", 0, "b"), dig({"a": {}}, "a", "b", "c")
    (3, None)
    """
    node = doc
    for key in path:
        in_dict = isinstance(node, dict) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)
        if not (in_dict or in_list):
            return None
        node = node[key]
    return node


def _phase(sections: dict[str, Any], delivery: str, rate: int) -> dict[str, Any] | None:
    for phase in dig(sections, "latency", "modes", delivery, "phases") or []:
        if phase.get("rate") == rate:
            found: dict[str, Any] = phase
            return found
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """One target: a figure extracted from the sections, compared with a bound."""

    key: str
    description: str
    unit: str
    bound: float
    op: str  # ">=" or "<="
    extract: Callable[[dict[str, Any]], float | None]

    def check(self, sections: dict[str, Any]) -> dict[str, Any]:
        value = self.extract(sections)
        compare = operator.ge if self.op == ">=" else operator.le
        passed = None if value is None else bool(compare(value, self.bound))
        return {
            "key": self.key,
            "description": self.description,
            "value": value,
            "bound": self.bound,
            "op": self.op,
            "unit": self.unit,
            "passed": passed,
        }


def _p99_eos_5k(sections: dict[str, Any]) -> float | None:
    phase = _phase(sections, "exactly-once", 5000)
    value = dig(phase, "produce_to_alert", "p99_ms") if phase else None
    return float(value) if value is not None else None


def _num(*path: str | int) -> Callable[[dict[str, Any]], float | None]:
    def extract(sections: dict[str, Any]) -> float | None:
        value = dig(sections, *path)
        return float(value) if isinstance(value, int | float) else None

    return extract


TARGETS: tuple[Target, ...] = (
    Target(
        "binary_vs_consume_only",
        "Detector with binary windows vs the consume-only ceiling",
        "x",
        0.5,
        ">=",
        _num("throughput", "ratios", "detector_binary_vs_consume_only"),
    ),
    Target(
        "json_windows_per_s",
        "Detector with JSON windows (this machine)",
        "windows/s",
        30_000,
        ">=",
        _num("throughput", "median", "detector_json", "windows_per_s"),
    ),
    Target(
        "detector_vs_naive",
        "Detector (JSON) vs the naive per-message baseline (JSON)",
        "x",
        1000,
        ">=",
        _num("throughput", "ratios", "detector_json_vs_naive"),
    ),
    Target(
        "p99_eos_5k",
        "p99 produce-to-alert at 5,000 windows/s, exactly-once",
        "ms",
        50,
        "<=",
        _p99_eos_5k,
    ),
    Target(
        "two_vs_one_process",
        "2 detector processes vs 1 (4 partitions)",
        "x",
        1.6,
        ">=",
        _num("scaling", "ratio_two_vs_one"),
    ),
)


def evaluate(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target's figure, bound and verdict (``passed`` None when not measured)."""
    return [t.check(sections) for t in TARGETS]
