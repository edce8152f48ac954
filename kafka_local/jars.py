"""Resolve Apache Kafka's broker jars from Maven Central with Maven, into a cache.

The cache lives outside the repository (``$KAFKA_LOCAL_CACHE`` or
``~/.cache/vae-stream-detector/kafka``), one folder per version, marked complete only after
Maven succeeded, and guarded by a file lock so concurrent callers resolve once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_KAFKA_VERSION", "BrokerSetupError", "cache_root", "ensure_kafka_jars"]

DEFAULT_KAFKA_VERSION = "4.3.1"
_COMPLETE = ".complete"


class BrokerSetupError(RuntimeError):
    """The local broker could not be set up or started."""


def cache_root() -> Path:
    """Where resolved jars are kept."""
    env = os.environ.get("KAFKA_LOCAL_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "vae-stream-detector" / "kafka"


def ensure_kafka_jars(version: str = DEFAULT_KAFKA_VERSION, cache: Path | None = None) -> Path:
    """Return a folder holding the broker's runtime jars, resolving them first if needed.

    Raises:
        BrokerSetupError: Maven is missing or could not resolve the artifacts.
    """
    root = (cache or cache_root()) / version
    libs = root / "libs"
    if (root / _COMPLETE).exists():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / _COMPLETE).exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerSetupError(
                "Maven ('mvn') is not on PATH; it is needed once to fetch Kafka's jars "
                "(apt-get install maven), or point KAFKA_BOOTSTRAP_SERVERS at a running broker"
            )
        pom = root / "pom.xml"
        pom.write_text(resources.files("kafka_local").joinpath("pom.xml").read_text())
        if libs.exists():
            shutil.rmtree(libs)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise BrokerSetupError(f"Maven could not resolve Kafka {version}:\n" + "\n".join(tail))
        jars = sorted(p.name for p in libs.glob("*.jar"))
        if not any(name.startswith(f"kafka_2.13-{version}") for name in jars):
            raise BrokerSetupError(f"Maven finished but {libs} has no kafka_2.13-{version}.jar")
        (root / _COMPLETE).write_text("\n".join(jars) + "\n")
    return libs
