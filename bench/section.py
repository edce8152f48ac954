"""What a benchmark section is: one object that runs, renders, sets targets and diagnoses.

A section is a subclass of :class:`Section` in its own module under :mod:`bench.sections`,
listed once in :data:`bench.registry.SECTIONS`. It declares

- ``name`` (its key in the results file and for ``--only``) and ``title``;
- ``result_type``: the pydantic model :meth:`Section.run` returns (read back from JSON);
- ``quick`` and ``full``: how much it measures in each mode (a frozen dataclass);
- ``performance``: True to wait for a quiet machine before it runs;
- ``targets``: the figures it promises, each with a bound and an explanation when missed;

and implements :meth:`Section.run` and :meth:`Section.render`. The runner, the targets
table and the report only iterate the registry.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Generic, Literal, TypeVar

from bench.context import Context
from bench.results import Figures, TargetCheck

__all__ = ["Section", "SectionSkippedError", "Target"]

R = TypeVar("R", bound=Figures)
S = TypeVar("S")


class SectionSkippedError(Exception):
    """A section cannot run here (e.g. its data is missing); the report says why."""


@dataclass(frozen=True, slots=True)
class Target(Generic[R]):
    """One target: a figure of a section's result compared with a bound.

    Attributes:
        key: stable identifier (results file, diagnosis).
        description: what the figure is, for the targets table.
        unit: ``x`` for a ratio, else the figure's unit.
        bound: the required value.
        op: ``>=`` or ``<=``.
        extract: the figure from the section's result (None when it was not measured).
        explain: when missed, a paragraph from the same run's figures on why.
    """

    key: str
    description: str
    unit: str
    bound: float
    op: Literal[">=", "<="]
    extract: Callable[[R], float | None]
    explain: Callable[[R, Target[R]], str] | None = None

    def check(self, section: str, result: R | None) -> TargetCheck:
        """The figure and its verdict (``passed`` None when ``result`` is missing)."""
        value = None if result is None else self.extract(result)
        compare = operator.ge if self.op == ">=" else operator.le
        passed = None if value is None else bool(compare(value, self.bound))
        return TargetCheck(
            key=self.key,
            section=section,
            description=self.description,
            value=value,
            bound=self.bound,
            op=self.op,
            unit=self.unit,
            passed=passed,
        )


class Section(ABC, Generic[R, S]):
    """One section of a benchmark run (see the module docstring)."""

    name: str
    title: str
    result_type: type[R]
    quick: S
    full: S
    performance: bool = False
    targets: tuple[Target[R], ...] = ()

    @abstractmethod
    def run(self, ctx: Context, sizes: S) -> R:
        """Measure; raise :class:`SectionSkippedError` when it cannot run here."""

    @abstractmethod
    def render(self, result: R) -> str:
        """Its part of the BENCHMARKS.md section (a ``####`` heading first)."""

    def sizes(self, mode: str) -> S:
        """How much it measures in ``mode`` (``quick`` or ``full``)."""
        return self.quick if mode == "quick" else self.full

    def sizes_doc(self, mode: str) -> dict[str, Any]:
        """The sizes of ``mode``, for the results file."""
        sizes = self.sizes(mode)
        return asdict(sizes) if is_dataclass(sizes) and not isinstance(sizes, type) else {}

    def read(self, doc: Any) -> R:
        """Its result from a results file."""
        return self.result_type.model_validate(doc)

    def check(self, result: Figures | None) -> list[TargetCheck]:
        """Every target against ``result`` (None: the section did not run)."""
        typed = result if isinstance(result, self.result_type) else None
        return [t.check(self.name, typed) for t in self.targets]

    def diagnose(self, result: Figures | None, missed: set[str]) -> dict[str, str]:
        """Why each missed target was missed, from this result's own figures."""
        if not isinstance(result, self.result_type):
            return {}
        return {
            t.key: t.explain(result, t)
            for t in self.targets
            if t.key in missed and t.explain is not None
        }
