"""What every section of a benchmark run shares: the broker, names, the model, progress output."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.broker import BrokerInfo
from bench.config import ModeConfig

__all__ = ["BenchModel", "Context"]


@dataclass(frozen=True, slots=True)
class BenchModel:
    """A bundle loaded once per run: the scorer (``detector.model``) and its manifest."""

    path: Path
    scorer: Any
    manifest: Any
    load_s: float


@dataclass(slots=True)
class Context:
    """Shared state of one benchmark run.

    Attributes:
        broker: the broker in use.
        tag: the run's unique prefix for topics and groups.
        cfg: sizes of this mode.
        sim_bundle: bundle trained on simulated ECG (throughput, latency, scaling, drift).
        ecg_bundle: bundle trained on ECG5000 (the replay), None when the data is missing.
        workdir: scratch folder of the run (child processes' logs and reports).
        started: monotonic time the run started (progress lines show the elapsed time).
    """

    broker: BrokerInfo
    tag: str
    cfg: ModeConfig
    sim_bundle: Path
    ecg_bundle: Path | None
    workdir: Path = Path(".")
    started: float = field(default_factory=time.monotonic)
    _models: dict[Path, BenchModel] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def name(self, what: str) -> str:
        """A topic or group name unique to this run."""
        return f"{self.tag}-{what}"

    def log(self, message: str) -> None:
        """A progress line on stdout, with the run's elapsed time."""
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", flush=True)
        sys.stdout.flush()

    def model(self, path: Path) -> BenchModel:
        """Load (once) and warm up the bundle at ``path`` with ``detector.model.load_bundle``."""
        if path not in self._models:
            from detector.model import load_bundle

            t0 = time.perf_counter()
            loaded = load_bundle(path)
            # every batch size the variants use (max_batch up to 8192)
            loaded.warmup(8192, largest=None)
            self._models[path] = BenchModel(path, loaded, loaded.manifest, time.perf_counter() - t0)
        return self._models[path]
