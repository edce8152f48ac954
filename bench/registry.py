"""The sections of a benchmark run, in run order: the one list of them.

Adding a section: write ``bench/sections/<name>.py`` with a :class:`bench.section.Section`
subclass, and add an instance to :data:`SECTIONS`. The command line (``--only``), the
runner, the targets, the diagnosis and the report all iterate this tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.results import Figures, RunResults, TargetCheck
from bench.section import Section
from bench.sections.drift import Drift
from bench.sections.ecg5000 import Ecg5000
from bench.sections.latency import Latency
from bench.sections.scaling import Scaling
from bench.sections.throughput import Throughput

__all__ = ["SECTIONS", "diagnose", "evaluate", "load_results", "names", "section"]

SECTIONS: tuple[Section[Any, Any], ...] = (
    Throughput(),
    Ecg5000(),
    Drift(),
    Latency(),
    Scaling(),
)


def names() -> list[str]:
    """Every section's name, in run order."""
    return [s.name for s in SECTIONS]


def section(name: str) -> Section[Any, Any]:
    """The section called ``name``.

    Raises:
        KeyError: no section has that name.
    """
    for s in SECTIONS:
        if s.name == name:
            return s
    raise KeyError(name)


def evaluate(results: Mapping[str, Figures]) -> list[TargetCheck]:
    """Every section's targets against its result (``passed`` None where it did not run)."""
    return [check for s in SECTIONS for check in s.check(results.get(s.name))]


def diagnose(results: Mapping[str, Figures], targets: list[TargetCheck]) -> dict[str, str]:
    """A paragraph per missed target, from its own section's figures."""
    missed = {t.key for t in targets if t.passed is False}
    notes: dict[str, str] = {}
    for s in SECTIONS:
        notes.update(s.diagnose(results.get(s.name), missed))
    return notes


def load_results(path: Path) -> RunResults:
    """A results file written by :func:`bench.runner.run`, each section's result typed."""
    import json

    doc: dict[str, Any] = json.loads(path.read_text())
    raw = doc.get("sections") or {}
    sections = {name: section(name).read(value) for name, value in raw.items()}
    return RunResults.model_validate({**doc, "sections": sections})
