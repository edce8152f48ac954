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
from tests.kafka_helpers import consume_records, create_topic, unique_name, wait_until

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
