"""A one-node Apache Kafka (KRaft) broker on the local JVM, for tests and the offline demo.

No Docker needed: the jars come from Maven Central (:mod:`kafka_local.jars`), storage is
formatted in a fresh temporary folder (or a data directory of the caller's, kept between
runs), and the JVM listens on loopback ports.

The JVM cannot outlive its owner: it is started with ``PR_SET_PDEATHSIG`` = SIGKILL (Linux),
so it dies with the Python process that started it even if that process is SIGKILLed; a
normal exit stops it with SIGTERM (clean shutdown) and removes its temporary folder, lock
included.

A broker can be stopped and started again in place, on the same port and data: its data
directory keeps the cluster id (``meta.properties``) and the ports (``kafka-local.json``), so
a second start skips formatting and clients reconnect to the same address. A start fails at
once when the port is taken, or when the broker that answers is not the JVM it started; a
JVM that dies later is reported by :attr:`LocalKafka.exit_code`.

Examples:
    >>> with LocalKafka() as kafka:                      # doctest: +SKIP
    ...     print(kafka.bootstrap_servers)
    127.0.0.1:40123
    >>> kafka = LocalKafka(data_dir=Path("kafka-data"), port=9092)  # doctest: +SKIP
    >>> kafka.start(); kafka.restart(); kafka.stop()     # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka_local.jars import DEFAULT_KAFKA_VERSION, BrokerSetupError, ensure_kafka_jars
from kafka_local.procs import die_with_parent, stop_process

__all__ = ["LocalKafka", "free_port", "port_in_use", "sweep_stale_workdirs"]

_PREFIX = "kafka-local-"
_OWNER_FILE = "owner.pid"
_IDENTITY_FILE = "kafka-local.json"  # cluster id and ports, kept with the data


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


def port_in_use(port: int) -> bool:
    """True if something listens on (or holds) 127.0.0.1:``port``.

    Bound with SO_REUSEADDR, as the JVM binds: connections of a stopped broker lingering
    in TIME_WAIT do not count, a listening socket does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id storage was formatted with, or None if it was not formatted."""
    meta = data_dir / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    raise BrokerSetupError(f"{meta} has no cluster.id; remove the data directory to start over")


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
    """Start, stop and restart a single-node Kafka broker.

    Args:
        version: Apache Kafka version to run (resolved with Maven on first use).
        port: client port; when None, the one recorded in ``data_dir`` or a free one.
        heap: JVM maximum heap, e.g. ``"1g"``.
        data_dir: where storage, logs, the cluster id and the ports go; kept on stop, so a
            later start (of this object or of another one on the same folder) brings the
            same broker back. None: a fresh temporary folder, removed on :meth:`stop`.
    """

    def __init__(
        self,
        version: str = DEFAULT_KAFKA_VERSION,
        port: int | None = None,
        heap: str = "1g",
        data_dir: Path | None = None,
    ) -> None:
        self.version = version
        self.heap = heap
        self._own_workdir = data_dir is None
        if data_dir is None:
            sweep_stale_workdirs()
            data_dir = Path(tempfile.mkdtemp(prefix=_PREFIX))
            (data_dir / _OWNER_FILE).write_text(str(os.getpid()))
        else:
            data_dir = data_dir.expanduser().resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = data_dir
        identity = self._read_identity()
        self.port: int = port or identity.get("port") or free_port()
        self.controller_port: int = identity.get("controller_port") or free_port()
        self.cluster_id: str = identity.get("cluster_id") or _new_cluster_id()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        """The broker's folder: storage (``data/``), logs, properties, identity."""
        return self.workdir

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs (None when stopped or dead)."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def exit_code(self) -> int | None:
        """The JVM's exit code if it exited without :meth:`stop` (it died), else None."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        """The broker's own log."""
        return self.workdir / "logs" / "server.log"

    def _read_identity(self) -> dict[str, Any]:
        path = self.workdir / _IDENTITY_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BrokerSetupError(f"unreadable {path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _write_identity(self) -> None:
        identity = {
            "cluster_id": self.cluster_id,
            "port": self.port,
            "controller_port": self.controller_port,
            "version": self.version,
        }
        (self.workdir / _IDENTITY_FILE).write_text(json.dumps(identity, indent=2) + "\n")

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

    def _check_ports(self) -> None:
        """Fail at once when the client port is taken (the JVM would die on BindException
        while another broker there answered for it); move a taken controller port."""
        if port_in_use(self.port):
            raise BrokerSetupError(
                f"port {self.port} on 127.0.0.1 is already in use (another broker?); "
                "choose another --port or stop what listens there"
            )
        if port_in_use(self.controller_port):
            # Only this broker talks to its controller listener: any free port will do.
            self.controller_port = free_port()

    def _format(self, base: list[str], props: Path, data_dir: Path) -> None:
        """Format storage unless it is formatted already (a restart), keeping its id."""
        formatted = _formatted_cluster_id(data_dir)
        if formatted is not None:
            self.cluster_id = formatted
            return
        fmt = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id}",
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

    def start(self, timeout_s: float = 120.0) -> str:
        """Format storage (first start only), start the JVM and wait until it answers.

        Returns:
            The bootstrap address.

        Raises:
            BrokerSetupError: jars, Java or formatting failed, the port is taken, the JVM
                exited, another broker answered in its place, or it did not answer within
                ``timeout_s`` (the log's tail is in the message).
        """
        if self._proc is not None:
            if self._proc.poll() is None:
                return self.bootstrap_servers
            self._proc = None  # it died: start it again
        libs = ensure_kafka_jars(self.version)
        self._check_ports()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        data_dir = self.workdir / "data"
        props = self.workdir / "server.properties"
        props.write_text(_server_properties(self.port, self.controller_port, data_dir))
        base = self._java_base(libs)
        self._format(base, props, data_dir)
        self._write_identity()
        stdout = (self.workdir / "logs" / "stdout.log").open("ab")
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
            self._stop_jvm(30.0)
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
            except Exception:
                meta = None
            if meta is not None and meta.brokers:
                if meta.cluster_id != self.cluster_id:
                    raise BrokerSetupError(
                        f"another Kafka broker (cluster {meta.cluster_id}) answers on "
                        f"{self.bootstrap_servers}, not the one started here "
                        f"(cluster {self.cluster_id}):\n" + self._log_tail()
                    )
                return
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

    def describe_exit(self) -> str:
        """A message for a JVM that died: its exit code and the log's tail."""
        return f"the Kafka JVM exited with code {self.exit_code}:\n{self._log_tail()}"

    def _stop_jvm(self, timeout_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``).

        A temporary folder is removed; a ``data_dir`` is kept for the next start.
        """
        self._stop_jvm(timeout_s)
        if self._own_workdir and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash would (the data stays; :meth:`start` recovers it)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def restart(self, timeout_s: float = 120.0, *, down_s: float = 0.0) -> str:
        """Stop the JVM cleanly and start it again on the same port and data.

        Args:
            timeout_s: start-up budget, as :meth:`start`.
            down_s: how long the broker stays down in between (an outage's length).

        Returns:
            The bootstrap address (unchanged).
        """
        self._stop_jvm(30.0)
        if down_s > 0:
            time.sleep(down_s)
        return self.start(timeout_s)

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
