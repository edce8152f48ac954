"""The ``kafka-local`` command on its own: start, serve, stop, and leave nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from confluent_kafka import Producer

from kafka_local.broker import sweep_stale_workdirs
from kafka_local.clients import consume_records, create_topic, unique_name, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _read_line_matching(stream: object, pattern: str, lines: list[str]) -> re.Match[str]:
    assert hasattr(stream, "readline")
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError("kafka-local exited before printing:\n" + "".join(lines))
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match


def test_cli_serves_a_client_and_stops_without_leftovers() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "kafka_local"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _serve_and_stop(proc)


def _serve_and_stop(proc: subprocess.Popen[str]) -> None:
    try:
        out: list[str] = []
        err: list[str] = []
        address = _read_line_matching(proc.stdout, r"KAFKA_BOOTSTRAP_SERVERS=(\S+)", out).group(1)
        ready = _read_line_matching(proc.stderr, r"ready \(pid (\d+), logs (\S+)\)", err)
        jvm_pid, workdir = int(ready.group(1)), Path(ready.group(2)).parent.parent
        assert _alive(jvm_pid)

        topic = create_topic(address, unique_name("cli"))
        producer = Producer({"bootstrap.servers": address})
        producer.produce(topic, key=b"k", value=b"hello")
        assert producer.flush(30) == 0
        (msg,) = consume_records(address, topic, 1)
        assert (msg.key(), msg.value()) == (b"k", b"hello")

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not _alive(jvm_pid), "the broker JVM survived kafka-local's stop"
        assert not workdir.exists(), f"{workdir} (data and lock) was left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_broker_dies_with_its_owner_even_on_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import pathlib, time
                from kafka_local import LocalKafka
                k = LocalKafka()
                k.start()
                pathlib.Path({str(pid_file)!r} + ".dir").write_text(str(k.workdir))
                pathlib.Path({str(pid_file)!r}).write_text(str(k.pid))
                time.sleep(600)
                """
            ),
        ],
        cwd=REPO,
    )
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", 120, "the broker")
        jvm_pid = int(pid_file.read_text())
        assert _alive(jvm_pid)
        owner.kill()  # SIGKILL: no atexit, no finally
        owner.wait(10)
        wait_until(lambda: not _alive(jvm_pid), 30, f"JVM {jvm_pid} to die with its owner")
        # Its folder could not be removed by the dead owner; the next start sweeps it.
        workdir = Path(Path(f"{pid_file}.dir").read_text())
        assert workdir in sweep_stale_workdirs()
        assert not workdir.exists()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kafka_local", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ready(proc: subprocess.Popen[str]) -> tuple[str, int]:
    """The address and JVM pid a starting kafka-local prints."""
    address = _read_line_matching(proc.stdout, r"KAFKA_BOOTSTRAP_SERVERS=(\S+)", []).group(1)
    jvm_pid = int(_read_line_matching(proc.stderr, r"ready \(pid (\d+),", []).group(1))
    return address, jvm_pid


def _produce_one(address: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": address})
    producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def test_cli_restarts_in_place_refuses_a_taken_port_and_notices_its_jvm_dying(
    tmp_path: Path,
) -> None:
    from kafka_local import free_port

    data, port = tmp_path / "kafka", free_port()
    procs: list[subprocess.Popen[str]] = []
    try:
        # A first run keeps its data directory when stopped.
        procs.append(first := _start_cli("--data-dir", str(data), "--port", str(port)))
        address, _ = _ready(first)
        assert address == f"127.0.0.1:{port}"
        topic = create_topic(address, unique_name("kept"))
        _produce_one(address, topic, b"before the restart")
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 0
        assert "data kept in" in (first.stderr.read() if first.stderr else "")
        assert (data / "kafka-local.json").exists()

        # A second run on it is the same broker again: same port (recorded), same records.
        procs.append(second := _start_cli("--data-dir", str(data)))
        address2, jvm_pid = _ready(second)
        assert address2 == address
        (msg,) = consume_records(address, topic, 1)
        assert msg.value() == b"before the restart"

        # A broker already on the port: refused at once, not "ready" beside a dead JVM.
        taken = subprocess.run(
            [sys.executable, "-m", "kafka_local", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert taken.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in taken.stderr
        assert "ready (pid" not in taken.stderr and "KAFKA_BOOTSTRAP_SERVERS" not in taken.stdout
        assert second.poll() is None and _alive(jvm_pid)

        # Its JVM dies: kafka-local says so and exits non-zero.
        os.kill(jvm_pid, signal.SIGKILL)
        assert second.wait(timeout=30) == 1
        err = second.stderr.read() if second.stderr else ""
        assert "the Kafka JVM exited with code -9" in err, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_the_python_api_restarts_a_broker_in_place_and_after_a_crash(tmp_path: Path) -> None:
    from kafka_local import LocalKafka

    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    try:
        address = kafka.start()
        topic = create_topic(address, unique_name("api"))
        _produce_one(address, topic, b"one")
        first_pid = kafka.pid
        assert kafka.restart() == address
        assert kafka.pid not in (None, first_pid)
        _produce_one(address, topic, b"two")

        # A crash: the JVM is SIGKILLed; the object notices, and starts it again in place.
        assert kafka.pid is not None and kafka.exit_code is None
        os.kill(kafka.pid, signal.SIGKILL)
        wait_until(lambda: kafka.exit_code is not None, 30, "the JVM's death to be noticed")
        assert kafka.exit_code == -signal.SIGKILL and kafka.pid is None
        assert kafka.start() == address
        assert [m.value() for m in consume_records(address, topic, 2)] == [b"one", b"two"]
    finally:
        kafka.stop()
    assert (tmp_path / "kafka" / "data" / "meta.properties").exists(), "a data_dir is kept"
