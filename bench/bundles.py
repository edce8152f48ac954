"""The model bundles the benchmarks score with, trained by the project's own ``training fit``.

Two bundles: one trained on simulated normal ECG beats (the throughput, latency, scaling and
drift scenarios send simulated beats) and one on ECG5000's training split (the replay). Each
is trained once and cached outside the repository, keyed by everything that could change it
(the training code, the data, the arguments): ``$BENCH_CACHE`` or
``~/.cache/vae-stream-detector/bench``. Missing bundles are trained in parallel while the
broker starts. ``--sim-bundle`` / ``--ecg-bundle`` use given bundles instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.broker import BenchError
from bench.data import SIM_SEED, SIM_SOURCES
from bench.procs import REPO, clean_env
from kafka_local.procs import die_with_parent

__all__ = ["BundleJob", "bundle_cache", "cache_key", "write_sim_npz"]


def bundle_cache() -> Path:
    """Where trained bundles are kept between runs."""
    env = os.environ.get("BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vae-stream-detector" / "bench"


def cache_key(parts: list[str], files: list[Path]) -> str:
    """A short digest of ``parts`` and the contents of ``files`` (missing files count too)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    for path in sorted(files):
        digest.update(str(path.name).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:16]


def _training_sources() -> list[Path]:
    return [
        *sorted((REPO / "training").rglob("*.py")),
        REPO / "detector" / "bundle.py",
        REPO / "detector" / "model.py",
    ]


def write_sim_npz(path: Path, n: int) -> None:
    """``n`` simulated normal ECG beats (no anomaly, no drift) in training's npz layout."""
    from producer.simulate import make_arrays

    batch = make_arrays("ecg", n, seed=SIM_SEED, n_sources=SIM_SOURCES)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        windows=batch.values.astype(np.float32),
        labels=np.zeros(len(batch), dtype=np.int8),
        channel_names=np.asarray(batch.channel_names),
    )


class BundleJob:
    """One bundle: cached, or trained by ``python -m training fit`` in a subprocess.

    Args:
        name: bundle name (cache folder prefix).
        data: the training data file (its contents key the cache).
        fit_args: ``training fit`` arguments besides ``--data`` and ``--out``.
        key_parts: anything else that changes the bundle (e.g. how ``data`` was generated).
        make_data: writes ``data`` first when it is generated (called only if training).
    """

    def __init__(
        self,
        name: str,
        data: Path,
        fit_args: list[str],
        key_parts: list[str] | None = None,
        make_data: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.data = data
        self.fit_args = fit_args
        # generated data is keyed by its generator's code, a file by its contents
        inputs = sorted((REPO / "producer").rglob("*.py")) if make_data else [data]
        files = [*_training_sources(), *inputs]
        key = cache_key([name, *fit_args, *(key_parts or [])], files)
        self.path = bundle_cache() / f"{name}-{key}"
        self._make_data = make_data
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch = bundle_cache() / f".{name}-{key}-{os.getpid()}"
        self._started = 0.0
        self.how = "cached"

    @property
    def cached(self) -> bool:
        return (self.path / "manifest.json").is_file()

    def command(self) -> list[str]:
        """The training command line (also recorded in the results)."""
        return [
            "python",
            "-m",
            "training",
            "fit",
            "--data",
            str(self.data),
            *self.fit_args,
            "--out",
            str(self._scratch / "bundle"),
        ]

    def start(self) -> BundleJob:
        """Start training unless the bundle is cached."""
        if self.cached:
            return self
        if not (REPO / "training" / "__main__.py").is_file():
            raise BenchError("training/ has no CLI: pass --sim-bundle and --ecg-bundle")
        if self._make_data is not None:
            self._make_data()
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch.mkdir(parents=True)
        log = (self._scratch / "training.log").open("wb")
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            [sys.executable, *self.command()[1:]],
            cwd=self._scratch,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        log.close()
        return self

    def result(self, timeout_s: float = 3600.0) -> Path:
        """Wait for training (if any); the bundle folder.

        Raises:
            BenchError: training failed or took longer than ``timeout_s``.
        """
        if self._proc is None:
            return self.path
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            self._proc.kill()
            raise BenchError(f"training {self.name} took over {timeout_s:.0f} s") from exc
        finally:
            proc, self._proc = self._proc, None
        out = self._scratch / "bundle"
        if code != 0 or not (out / "manifest.json").is_file():
            tail = (self._scratch / "training.log").read_text(errors="replace").splitlines()
            raise BenchError(
                f"training {self.name} failed (exit {proc.returncode}):\n" + "\n".join(tail[-20:])
            )
        if self.path.exists():
            shutil.rmtree(self.path)
        out.rename(self.path)
        shutil.rmtree(self._scratch, ignore_errors=True)
        self.how = f"trained in {time.monotonic() - self._started:.0f} s"
        return self.path

    def kill(self) -> None:
        """Stop a training still running (the benchmark is failing)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        shutil.rmtree(self._scratch, ignore_errors=True)
