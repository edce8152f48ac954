"""Detector (and helper) subprocesses: start, watch through /proc and /metrics, stop.

Every child is bound to this process with ``PR_SET_PDEATHSIG`` (it dies if the benchmark is
killed), tracked in a registry, and killed at exit if still alive: no orphans. Children run
in a scratch directory so a stray ``.env`` in the repository cannot change their settings;
``DETECTOR_*`` variables of the caller's environment are dropped for the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from prometheus_client.parser import text_string_to_metric_families

from bench.broker import BenchError
from kafka_local.procs import die_with_parent, stop_process

__all__ = [
    "REPO",
    "Child",
    "clean_env",
    "cpu_seconds",
    "metric_sum",
    "peak_rss_bytes",
]

REPO = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_LIVE: set[Child] = set()


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``DETECTOR_*``, the repo on PYTHONPATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), from /proc; None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM (peak resident set) of ``pid`` in bytes, from /proc; None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def metric_sum(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``, in exposition text."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            if labels and any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            total += sample.value
    return total


class Child:
    """One subprocess (``python -m <module> ...``) with its log in a file.

    Args:
        module: the module to run with ``python -m``.
        args: its arguments.
        log_path: stdout and stderr go here.
        env: extra environment (on top of :func:`clean_env`).
        metrics_port: its /metrics port, if it serves one.
    """

    def __init__(
        self,
        module: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.argv = [sys.executable, "-m", module, *args]
        self.log_path = log_path
        self.env = clean_env(env)
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the process has not been started")
        return self.proc.pid

    def start(self) -> Child:
        """Start it; ``started_at`` is the monotonic time just before the fork."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.log_path.parent,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        log.close()
        _LIVE.add(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`BenchError` with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"{' '.join(self.argv[1:4])} exited with code {self.proc.returncode}:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def http(self, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
        """GET ``path`` from its metrics server: (status, body); (0, "") when unreachable."""
        if self.metrics_port is None:
            raise BenchError("no metrics port")
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), ""
        except (urllib.error.URLError, OSError):
            return 0, ""

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A metric's value from /metrics; None while the server does not answer."""
        status, body = self.http("/metrics")
        if status != 200:
            return None
        return metric_sum(body, name, labels)

    def ready(self) -> bool:
        """True when /readyz answers 200 (partitions assigned, state restored)."""
        return self.http("/readyz")[0] == 200

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    def peak_rss_bytes(self) -> int | None:
        return peak_rss_bytes(self.pid)

    def suspend(self) -> None:
        """SIGSTOP: freeze it (and its librdkafka threads) while something else runs."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL after ``timeout_s``; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        stop_process(proc, timeout_s, resume=True)
        _LIVE.discard(self)
        return proc.returncode

    def __enter__(self) -> Child:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _kill_leftovers() -> None:
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.stop(timeout_s=5)
