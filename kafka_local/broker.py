"""A one-node Apache Kafka (KRaft) broker on the local JVM, for tests and the offline demo.

No Docker needed: the jars come from Maven Central (:mod:`kafka_local.jars`), storage is
formatted in a fresh temporary folder, and the JVM listens on free loopback ports.

The JVM cannot outlive its owner: it is started with ``PR_SET_PDEATHSIG`` = SIGKILL (Linux),
so it dies with the Python process that started it even if that process is SIGKILLed; a
normal exit stops it with SIGTERM (clean shutdown) and removes its folder, lock included.

Examples:
    >>> with LocalKafka() as kafka:                      # doctest: +SKIP
    ...     print(kafka.bootstrap_servers)
    127.0.0.1:40123
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path
from types import TracebackType

from kafka_local.jars import DEFAULT_KAFKA_VERSION, BrokerSetupError, ensure_kafka_jars
from kafka_local.procs import die_with_parent, stop_process

__all__ = ["LocalKafka", "free_port", "sweep_stale_workdirs"]

_PREFIX = "kafka-local-"
_OWNER_FILE = "owner.pid"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_workdirs(root: Path | None = None) -> list[Path]:
    """Remove temporary broker folders whose owning process is gone (e.g. it was SIGKILLed).

    Returns:
        The folders removed.
    """
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(_PREFIX + "*"):
        owner = path / _OWNER_FILE
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        # Without these two, init_transactions() times out on a single node.
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


class LocalKafka:
    """Start and stop a throwaway single-node Kafka broker.

    Args:
        version: Apache Kafka version to run (resolved with Maven on first use).
        port: client port; a free one when None.
        heap: JVM maximum heap, e.g. ``"1g"``.
        workdir: where storage and logs go; a fresh temporary folder (removed on stop) when None.
    """

    def __init__(
        self,
        version: str = DEFAULT_KAFKA_VERSION,
        port: int | None = None,
        heap: str = "1g",
        workdir: Path | None = None,
    ) -> None:
        self.version = version
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap = heap
        self._own_workdir = workdir is None
        if workdir is None:
            sweep_stale_workdirs()
            workdir = Path(tempfile.mkdtemp(prefix=_PREFIX))
            (workdir / _OWNER_FILE).write_text(str(os.getpid()))
        self.workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        """The broker's own log."""
        return self.workdir / "logs" / "server.log"

    def _java_base(self, libs: Path) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerSetupError("'java' is not on PATH; Kafka 4.x needs Java 17 or newer")
        log_config = self.workdir / "log4j2.properties"
        log_config.write_text(
            resources.files("kafka_local").joinpath("log4j2.properties").read_text()
        )
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            "-cp",
            f"{libs}/*",
        ]

    def start(self, timeout_s: float = 120.0) -> str:
        """Format storage, start the JVM and wait until the broker answers.

        Returns:
            The bootstrap address.

        Raises:
            BrokerSetupError: jars, Java, formatting or start-up failed, or the broker did
                not answer within ``timeout_s`` (the log's tail is in the message).
        """
        if self._proc is not None:
            return self.bootstrap_servers
        libs = ensure_kafka_jars(self.version)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        data_dir = self.workdir / "data"
        props = self.workdir / "server.properties"
        props.write_text(_server_properties(self.port, self.controller_port, data_dir))
        base = self._java_base(libs)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise BrokerSetupError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        stdout = (self.workdir / "logs" / "stdout.log").open("wb")
        self._proc = subprocess.Popen(
            [*base, "kafka.Kafka", str(props)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        stdout.close()
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def _wait_ready(self, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerSetupError(
                    f"the Kafka JVM exited with code {self._proc.returncode} during start-up:\n"
                    + self._log_tail()
                )
            try:
                meta = admin.list_topics(timeout=2)
                if meta.brokers:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise BrokerSetupError(
                    f"Kafka did not answer on {self.bootstrap_servers} within {timeout_s:.0f} s:\n"
                    + self._log_tail()
                )
            time.sleep(0.25)

    def _log_tail(self, lines: int = 25) -> str:
        texts = []
        for path in (self.workdir / "logs" / "stdout.log", self.log_file):
            if path.exists():
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts) or "(no log output)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``) and remove its folder."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout_s)
        if self._own_workdir and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
