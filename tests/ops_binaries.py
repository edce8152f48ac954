"""The real Prometheus and Alertmanager programs for integration tests (Debian's packages,
installed by ``scripts/setup_ops.sh``), each on a free loopback port in a temp dir.

Never a fake: a test that needs one and cannot find it is skipped with the reason, or fails
when ``CI`` is set (the set-up must have installed it there). Each process is bound to the
test process with ``PR_SET_PDEATHSIG`` and stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kafka_local import free_port
from kafka_local.procs import die_with_parent, stop_process

__all__ = [
    "OpsProcess",
    "find_binary",
    "get_json",
    "prom_query",
    "promtool",
    "run_alertmanager",
    "run_prometheus",
]

# Debian names the Alertmanager binary prometheus-alertmanager; upstream tarballs alertmanager.
ALERTMANAGER = ("prometheus-alertmanager", "alertmanager")
PROMETHEUS = ("prometheus",)
PROMTOOL = ("promtool",)


def find_binary(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` on PATH (or in /usr/bin), else None."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
        if found:
            return found
    return None


def _require(names: tuple[str, ...], package: str) -> str:
    path = find_binary(names)
    if path is None:
        reason = (
            f"{names[0]} not found (Debian package {package}; `make setup` installs it as root "
            "where apt-get works, see scripts/setup_ops.sh)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the set-up should have", pytrace=False)
        pytest.skip(reason)
    return path


def promtool() -> str:
    """Path of promtool, or skip/fail as :func:`_require`."""
    return _require(PROMTOOL, "prometheus")


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


@dataclass
class OpsProcess:
    """A running Prometheus or Alertmanager."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        """The end of its log, for assertion messages."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _wait_ready(ops: OpsProcess, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ops.proc.poll() is not None:
            raise AssertionError(f"{what} exited with {ops.proc.returncode}:\n{ops.log_tail()}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(ops.url + "/-/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready within {timeout_s:.0f} s:\n{ops.log_tail()}")


@contextlib.contextmanager
def _run(argv: list[str], workdir: Path, port: int, what: str) -> Iterator[OpsProcess]:
    log = workdir / f"{Path(argv[0]).name}.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
    ops = OpsProcess(proc, f"http://127.0.0.1:{port}", port, log)
    try:
        _wait_ready(ops, what, 60)
        yield ops
    finally:
        stop_process(proc, 10)


@contextlib.contextmanager
def run_alertmanager(
    workdir: Path, config: dict[str, Any], port: int | None = None
) -> Iterator[OpsProcess]:
    """The real Alertmanager with ``config`` (JSON is YAML) on 127.0.0.1, clustering off."""
    binary = _require(ALERTMANAGER, "prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(json.dumps(config, indent=1))
    port = port or free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: one instance, nothing else bound
        "--log.level=warn",
    ]
    with _run(argv, workdir, port, "Alertmanager") as ops:
        yield ops


@contextlib.contextmanager
def run_prometheus(workdir: Path, config: dict[str, Any]) -> Iterator[OpsProcess]:
    """The real Prometheus with ``config`` (JSON is YAML) on a free 127.0.0.1 port."""
    binary = _require(PROMETHEUS, "prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=1))
    port = free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with _run(argv, workdir, port, "Prometheus") as ops:
        yield ops


def prom_query(prometheus: OpsProcess, expr: str) -> list[dict[str, Any]]:
    """An instant query through /api/v1/query; its result vector (empty if no data).

    Raises:
        AssertionError: Prometheus answered with an error (a bad expression, say).
    """
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = get_json(url)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"query {expr!r}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
