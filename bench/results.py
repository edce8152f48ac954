"""Typed results: the figures sections share, and the document one run writes.

Every result is a frozen pydantic model (:class:`Figures`), so a section's result is read
by attribute, checked by mypy, written as JSON with ``model_dump(mode="json")`` and read
back with ``model_validate``. A section's own result model lives in its module under
:mod:`bench.sections`; :class:`RunResults` holds them by section name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from bench import stats

__all__ = [
    "RESULTS_SCHEMA",
    "BrokerDoc",
    "BundleInfo",
    "ConfusionFigures",
    "CpuUse",
    "DrainFigures",
    "Figures",
    "LatencySummary",
    "MachineFacts",
    "QuietWait",
    "RunResults",
    "TargetCheck",
    "write_json",
]

RESULTS_SCHEMA = 2  # 2: sections' results typed; targets and skips per section


class Figures(BaseModel):
    """Base of every result model: immutable; unknown keys of an older file are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class LatencySummary(Figures):
    """Count and percentiles of latencies in milliseconds (None without samples)."""

    n: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None

    @classmethod
    def of(cls, latencies_ms: list[float]) -> LatencySummary:
        return cls.model_validate(stats.latency_summary(latencies_ms))


class ConfusionFigures(Figures):
    """Window-level counts and rates (:class:`bench.stats.Confusion`)."""

    tp: int
    fp: int
    tn: int
    fn: int
    precision: float | None
    recall: float | None
    false_alarm_rate: float | None

    @classmethod
    def of(cls, confusion: stats.Confusion) -> ConfusionFigures:
        return cls.model_validate(confusion.as_dict())


class CpuUse(Figures):
    """Cores used on average over ``seconds``: the machine, this benchmark, everything else."""

    seconds: float
    cores: float | None = None
    machine: float | None = None
    ours: float | None = None
    others: float | None = None


class DrainFigures(Figures):
    """One timed drain of a preloaded topic (:class:`bench.inproc.DrainResult`)."""

    windows: int
    seconds: float
    windows_per_s: float | None
    batches: int
    mean_batch: float | None
    stage_seconds: dict[str, float]
    stage_us_per_window: dict[str, float | None]
    stage_cpu_us_per_window: dict[str, float | None]


class QuietWait(Figures):
    """The wait for other processes to quieten before a performance section."""

    waited_s: float
    others_cores: float
    quiet: bool


class BundleInfo(Figures):
    """A model bundle a run scored with."""

    path: str
    model_id: str
    arch: str
    window: list[int]
    threshold: float
    target_far: float
    source: str
    metrics: dict[str, Any]
    training_command: str | None = None


class MachineFacts(Figures):
    """Cores, memory, CPU model, OS and the versions of everything measured."""

    timestamp: str
    hostname: str
    cpu_count: int | None
    cpu_affinity: int
    cpu_model: str | None
    memory_bytes: int | None
    memory_available_bytes: int | None
    load_average: list[float]
    os: str
    python: str
    versions: dict[str, str | None]
    broker: str


class BrokerDoc(Figures):
    """The broker a run used."""

    origin: str
    bootstrap_servers: str
    kafka_version: str | None
    start_s: float


class TargetCheck(Figures):
    """One target's figure, bound and verdict (``passed`` None when not measured)."""

    key: str
    section: str
    description: str
    value: float | None
    bound: float
    op: str
    unit: str
    passed: bool | None


class RunResults(Figures):
    """The results file of one run (``bench/results/<mode>.json``).

    ``sections`` holds each section's own result model; reading a file back needs the
    registry to know which model a section's JSON is (:func:`bench.registry.load_results`).
    """

    schema_: int = Field(RESULTS_SCHEMA, alias="schema")
    mode: str
    command: str
    started_at: str
    finished_at: str
    duration_s: float
    results_file: str
    sections_run: list[str]
    machine: MachineFacts
    broker: BrokerDoc
    config: dict[str, Any]
    bundles: dict[str, BundleInfo]
    section_seconds: dict[str, float]
    section_cpu: dict[str, CpuUse]
    quiet_wait: dict[str, QuietWait]
    sections: dict[str, SerializeAsAny[Figures]]
    skipped: dict[str, str]
    errors: dict[str, str]
    targets: list[TargetCheck]
    diagnosis: dict[str, str]

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The document as JSON values, ``schema`` first."""
        return self.model_dump(mode="json", by_alias=True)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` atomically (a .tmp file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
