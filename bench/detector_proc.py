"""The detector as its own process (``python -m detector run``), as operators run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.broker import wait_until
from bench.config import topic_names
from bench.procs import Child
from kafka_local import free_port

__all__ = ["TF_SINGLE_THREAD", "DetectorRun", "detector_child", "null_detector_child", "wait_ready"]

# One TensorFlow thread per pool: a tiny model gains nothing from more on a 2-core machine
# shared with the broker, and idle pool threads that spin steal the CPU.
TF_SINGLE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


@dataclass(frozen=True, slots=True)
class DetectorRun:
    """Names of one detector run: input topic, group and output topics prefix."""

    windows_topic: str
    run: str
    partitions: int = 4

    @property
    def group(self) -> str:
        return f"{self.run}-group"

    @property
    def alerts_topic(self) -> str:
        return topic_names(self.run)["alerts"]


def detector_child(
    bootstrap: str,
    bundle: Path,
    names: DetectorRun,
    log_dir: Path,
    *,
    instance: int = 1,
    delivery: str = "exactly-once",
    threshold_method: str | None = None,
    max_batch: int | None = None,
    max_wait_s: float | None = None,
    options: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Child:
    """A detector process (not started) with its own metrics port and log file."""
    topics = topic_names(names.run)
    args = [
        "run",
        "--bundle",
        str(bundle),
        "--bootstrap-servers",
        bootstrap,
        "--windows-topic",
        names.windows_topic,
        "--alerts-topic",
        topics["alerts"],
        "--events-topic",
        topics["events"],
        "--dead-letter-topic",
        topics["dead_letters"],
        "--state-topic",
        topics["state"],
        "--partitions",
        str(names.partitions),
        "--group-id",
        names.group,
        "--instance-id",
        f"{names.run}-{instance}",
        "--delivery",
        delivery,
        "--log-format",
        "json",
        "--startup-timeout-s",
        "90",
    ]
    if threshold_method is not None:
        args += ["--threshold-method", threshold_method]
    if max_batch is not None:
        args += ["--max-batch", str(max_batch)]
    if max_wait_s is not None:
        args += ["--max-wait-s", str(max_wait_s)]
    for key, value in (options or {}).items():
        args += ["-X", f"{key}={value}"]
    port = free_port()
    args += ["--metrics-port", str(port)]
    return Child(
        "detector",
        args,
        log_dir / f"{names.run}-{instance}.log",
        env={**TF_SINGLE_THREAD, **(env or {})},
        metrics_port=port,
    )


def null_detector_child(
    bootstrap: str, names: DetectorRun, log_dir: Path, *, delivery: str = "exactly-once"
) -> Child:
    """A :mod:`bench.null_detector` process (not started): the detector's Kafka loop, no work."""
    port = free_port()
    args = [
        *("--bootstrap", bootstrap, "--windows-topic", names.windows_topic),
        *("--run", names.run, "--partitions", str(names.partitions), "--delivery", delivery),
        *("--metrics-port", str(port)),
    ]
    return Child("bench.null_detector", args, log_dir / f"{names.run}-null.log", metrics_port=port)


def wait_ready(children: list[Child], timeout_s: float) -> None:
    """Wait until every child answers /readyz (exits early with its log if one dies)."""

    def all_ready() -> bool:
        for child in children:
            child.check_alive()
        return all(child.ready() for child in children)

    wait_until(all_ready, timeout_s, "detector processes to be ready")
