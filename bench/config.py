"""What the quick and full modes share, and the detector settings every scenario starts from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bench.broker import create_topics
from detector.kafka.publisher import TXN_RETRY_BACKOFF
from detector.settings import DetectorSettings
from kafka_local.clients import merge_overrides

__all__ = [
    "FULL",
    "LIBRDKAFKA_BACKOFF",
    "MODES",
    "QUICK",
    "TXN_BACKOFF",
    "Mode",
    "ModeConfig",
    "create_output_topics",
    "detector_settings",
    "topic_names",
]

Mode = Literal["quick", "full"]


@dataclass(frozen=True, slots=True)
class ModeConfig:
    """What every section of a mode shares: the bundles it scores with.

    How much each section measures is the section's own ``sizes`` (:mod:`bench.sections`).

    Attributes:
        mode: ``quick`` (under 3 minutes with broker start) or ``full``.
        sim_train_windows: normal simulated windows to train the simulated-ECG bundle on.
        sim_fit_args: ``training fit`` arguments for that bundle.
        ecg_fit_args: ``training fit`` arguments for the ECG5000 bundle.
    """

    mode: Mode
    sim_train_windows: int
    sim_fit_args: tuple[str, ...]
    ecg_fit_args: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COMMON_FIT = ("--no-plots", "--quiet")
# librdkafka retries AddOffsetsToTxn after retry.backoff.ms when the coordinator still
# finishes the previous commit (CONCURRENT_TRANSACTIONS): with librdkafka's default, 100 ms,
# every back-to-back batch pays it. The detector's producer uses 5 ms (detector.kafka.publisher);
# this benchmark measures librdkafka's default beside it, to show what the setting buys.
TXN_BACKOFF = {k: str(v) for k, v in TXN_RETRY_BACKOFF.items()}  # the detector's
LIBRDKAFKA_BACKOFF = {"retry.backoff.ms": "100", "retry.backoff.max.ms": "1000"}
_QUICK_FIT = ("--epochs", "15", "--folds", "2", "--no-baseline", *_COMMON_FIT)

QUICK = ModeConfig(
    mode="quick",
    sim_train_windows=3_000,
    # a small budget: the quick mode must finish in 3 minutes from a fresh clone
    sim_fit_args=(*_QUICK_FIT, "--format", "npz"),
    ecg_fit_args=(*_QUICK_FIT, "--format", "ecg5000"),
)

FULL = ModeConfig(
    mode="full",
    sim_train_windows=6_000,
    sim_fit_args=("--format", "npz", "--epochs", "60", "--folds", "3", *_COMMON_FIT),
    # the training defaults: the model the project ships
    ecg_fit_args=("--format", "ecg5000", *_COMMON_FIT),
)
MODES: dict[str, ModeConfig] = {"quick": QUICK, "full": FULL}


def topic_names(prefix: str) -> dict[str, str]:
    """Output topic names of one detector run (alerts, events, dead letters, state)."""
    return {
        "alerts": f"{prefix}-alerts",
        "events": f"{prefix}-events",
        "dead_letters": f"{prefix}-dlq",
        "state": f"{prefix}-state",
    }


def create_output_topics(bootstrap: str, run: str, partitions: int) -> None:
    """Create one run's output topics as the detector would, and wait for their leaders.

    The detector creates missing topics itself, but reads the state topic's watermarks right
    after: on a freshly created topic that can fail with NOT_LEADER_FOR_PARTITION (see
    BENCHMARKS.md), so the benchmark creates them first.
    """
    names = topic_names(run)
    create_topics(
        bootstrap,
        {names["alerts"]: partitions, names["dead_letters"]: partitions, names["events"]: 1},
    )
    create_topics(
        bootstrap,
        {names["state"]: partitions},
        config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    )


def detector_settings(
    bootstrap: str,
    bundle: str,
    windows_topic: str,
    run: str,
    *,
    partitions: int = 4,
    **overrides: Any,
) -> DetectorSettings:
    """Settings for one detector run: its own group, instance and output topics.

    Args:
        bootstrap: the broker.
        bundle: model bundle directory.
        windows_topic: the (preloaded) input topic.
        run: unique name of this run (prefix of its group and output topics).
        partitions: partitions of the topics the detector creates.
        overrides: any other :class:`DetectorSettings` field (nested groups as dicts merge).
    """
    base: dict[str, Any] = {
        "bundle": bundle,
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {"windows": windows_topic, "partitions": partitions, **topic_names(run)},
        "group_id": f"{run}-group",
        "instance_id": f"{run}-1",
        "metrics_port": None,
        "startup_timeout_s": 60,
        "log_level": "WARNING",
    }
    return DetectorSettings(_env_file=None, **merge_overrides(base, overrides))
