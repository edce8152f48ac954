"""Facts about the machine and the software, and how busy the machine was during a measurement.

The CPU meter separates this benchmark's processes (itself, its children, the broker it
started) from everything else running on the machine: on a shared host that figure is what
explains an outlier.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.procs import cpu_seconds
from bench.results import CpuUse, MachineFacts

__all__ = ["CpuMeter", "machine_facts"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _meminfo_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _first(version: object) -> str:
    """confluent-kafka's version()/libversion() give (text, int) or, in some builds, text."""
    if isinstance(version, tuple):
        return str(version[0])
    return str(version)


def machine_facts(kafka_version: str | None, broker_origin: str) -> MachineFacts:
    """Cores, memory, CPU model, OS, and the versions of everything measured."""
    import confluent_kafka
    import numpy

    version = getattr(confluent_kafka, "version", lambda: None)

    try:
        import tensorflow as tf

        tf_version: str | None = tf.__version__
    except ImportError:
        tf_version = None
    java = None
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home).name
    return MachineFacts(
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
        cpu_count=os.cpu_count(),
        cpu_affinity=len(os.sched_getaffinity(0)),
        cpu_model=_cpu_model(),
        memory_bytes=_meminfo_bytes("MemTotal"),
        memory_available_bytes=_meminfo_bytes("MemAvailable"),
        load_average=list(os.getloadavg()),
        os=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        versions={
            "tensorflow": tf_version,
            "keras": _version("keras"),
            "numpy": numpy.__version__,
            "confluent_kafka": _first(version()),
            "librdkafka": _first(confluent_kafka.libversion()),
            "kafka_broker": kafka_version,
            "orjson": _version("orjson"),
            "pydantic": _version("pydantic"),
            "java_home": java,
        },
        broker=broker_origin,
    )


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(slots=True)
class _Mark:
    wall: float
    busy: int
    total: int
    own: float
    pids: dict[int, float]


class CpuMeter:
    """CPU used between :meth:`start` and :meth:`stop`: by the machine, by us, by the rest.

    Args:
        pids: live processes of ours that are not our children reaped by then (the broker
            JVM, running detector processes); our own and reaped children's CPU comes from
            ``os.times()``.
    """

    def __init__(self, pids: Iterable[int] = ()) -> None:
        self._pids = list(pids)
        self._start: _Mark | None = None

    def _mark(self) -> _Mark:
        import time

        busy, total = _busy_jiffies()
        return _Mark(
            time.monotonic(),
            busy,
            total,
            _own_cpu_s(),
            {p: cpu_seconds(p) or 0.0 for p in self._pids},
        )

    def start(self) -> CpuMeter:
        self._start = self._mark()
        return self

    def stop(self) -> CpuUse:
        """Cores used on average: ``machine``, ``ours``, ``others``; and ``cores`` available."""
        assert self._start is not None
        a, b = self._start, self._mark()
        wall = b.wall - a.wall
        if wall <= 0:
            return CpuUse(seconds=0.0)
        cores = os.cpu_count() or 1
        # jiffies are per CPU: busy share of all jiffies times the core count
        machine = (b.busy - a.busy) / max(1, b.total - a.total) * cores
        ours = b.own - a.own
        for pid, before in a.pids.items():
            after = b.pids.get(pid)
            if after is not None and after >= before:
                ours += after - before
        ours_cores = ours / wall
        return CpuUse(
            seconds=wall,
            cores=float(cores),
            machine=machine,
            ours=ours_cores,
            others=max(0.0, machine - ours_cores),
        )
