"""The service's seams: its Kafka edge closes on every path, and nothing outside the
package reaches into the private names of the service, its pipeline or the Kafka edge.

A start that fails (the broker refusing to initialise transactions, say) must still close
the clients it opened: ``detector run`` builds the service in a ``with`` block for that.
(Fakes of the confluent-kafka clients, from :mod:`tests.unit.kafka_fakes`.)
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from detector.errors import KafkaUnavailableError
from detector.kafka.io import KafkaEdge, KafkaIO
from detector.service import DetectorService, build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest
from tests.unit.kafka_fakes import FakeBroker, FakeClients, FakeConsumer, FakeProducer, kafka_error

REPO = Path(__file__).resolve().parents[2]
# The classes whose private names nothing outside their modules may touch, by module.
GUARDED = {
    "detector/service.py": {"DetectorService"},
    "detector/batch_pipeline.py": {"BatchPipeline"},
    "detector/kafka/io.py": {"KafkaIO"},
    "detector/kafka/consumer.py": {"InputConsumer"},
    "detector/kafka/publisher.py": {"TransactionalPublisher"},
    "detector/kafka/admin.py": {"TopicAdmin"},
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def guarded_names() -> tuple[set[str], set[str]]:
    """(the guarded classes, the private attribute and method names they define)."""
    classes: set[str] = set()
    names: set[str] = set()
    for path, wanted in GUARDED.items():
        for node in ast.walk(ast.parse((REPO / path).read_text())):
            if isinstance(node, ast.ClassDef) and node.name in wanted:
                classes.add(node.name)
                for inner in ast.walk(node):
                    if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                        if _private(inner.name):
                            names.add(inner.name)
                    elif isinstance(inner, ast.Attribute) and _private(inner.attr):
                        if isinstance(inner.value, ast.Name) and inner.value.id == "self":
                            names.add(inner.attr)
                    elif isinstance(inner, ast.AnnAssign | ast.Assign):
                        targets = [inner.target] if isinstance(inner, ast.AnnAssign) else []
                        targets += inner.targets if isinstance(inner, ast.Assign) else []
                        names |= {
                            t.id for t in targets if isinstance(t, ast.Name) and _private(t.id)
                        }
    return classes, names


def private_access(source: str, classes: set[str], names: set[str]) -> list[str]:
    """Where ``source`` touches a guarded class's private name: ``x._name`` on anything but
    ``self`` (or on ``self`` in a subclass of a guarded class), and private names imported
    from the guarded modules."""
    tree = ast.parse(source)
    modules = {path.removesuffix(".py").replace("/", ".") for path in GUARDED}
    found: list[str] = []

    def visit(node: ast.AST, in_subclass: bool) -> None:
        if isinstance(node, ast.ClassDef):
            bases = {
                b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
            }
            in_subclass = bool(bases & classes)
        elif isinstance(node, ast.Attribute) and node.attr in names:
            on_self = isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            if in_subclass or not on_self:
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            found.extend(
                f"line {node.lineno}: import {a.name}" for a in node.names if _private(a.name)
            )
        for child in ast.iter_child_nodes(node):
            visit(child, in_subclass)

    visit(tree, False)
    return found


def test_the_guard_sees_private_access_and_nothing_else() -> None:
    classes, names = guarded_names()
    assert {"_take_up", "_publishing", "_stop", "_held", "_producer"} <= names
    source = """
from detector.service import _Publishing, build_service
service._stop.set()
io.input._held = ()
class Edge(KafkaIO):
    def f(self):
        self._n_state = 1
class Fake:
    def f(self):
        self._producer = None
        self.other._held = 1
"""
    found = private_access(source, classes, names)
    assert [f.split(":")[0] for f in found] == ["line 2", "line 3", "line 4", "line 7", "line 11"]


def test_no_test_nor_bench_touches_a_private_name_of_the_service_or_the_kafka_edge() -> None:
    classes, names = guarded_names()
    offenders = {}
    for folder in ("tests", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.resolve() == Path(__file__).resolve():
                continue
            found = private_access(path.read_text(), classes, names)
            if found:
                offenders[str(path.relative_to(REPO))] = found
    assert offenders == {}


def _settings(**extra: Any) -> DetectorSettings:
    return DetectorSettings(  # type: ignore[call-arg]
        _env_file=None, bundle="unused", metrics_port=None, **extra
    )


def _refusing_broker() -> tuple[FakeClients, FakeConsumer, FakeProducer]:
    """Clients whose producer cannot initialise transactions (the broker refuses)."""
    broker = FakeBroker()
    consumer, producer = FakeConsumer(broker, []), FakeProducer(broker)
    producer.fail["init_transactions"] = [kafka_error(KafkaError._TIMED_OUT, retriable=True)]
    return FakeClients(broker, consumers=[consumer], producers=[producer]), consumer, producer


def test_a_service_whose_start_fails_closes_its_clients_on_leaving_the_block() -> None:
    clients, _, producer = _refusing_broker()

    def edge(settings: DetectorSettings, **callbacks: Any) -> KafkaEdge:
        return KafkaIO(settings, create_client=clients, **callbacks)

    service = build_service(_settings(), MeanScorer(), make_manifest(), io=edge)
    with pytest.raises(KafkaUnavailableError, match="init_transactions failed"), service:
        service.start()
    assert producer.calls == ["init_transactions", "flush"]  # flushed, then dropped
    assert clients.admin.created  # it got that far: topics, then transactions


def test_detector_run_closes_the_clients_when_its_start_fails(
    monkeypatch: pytest.MonkeyPatch, fresh_structlog: None
) -> None:
    """The CLI path: ``detector run`` with a broker that refuses transactions exits 3 (the
    broker is unavailable) and leaves no client open."""
    from detector.__main__ import EXIT_UNAVAILABLE
    from detector.__main__ import main as detector_main

    clients, _, producer = _refusing_broker()
    real_build = build_service

    def fake_build(settings: DetectorSettings) -> DetectorService:
        def edge(s: DetectorSettings, **callbacks: Any) -> KafkaEdge:
            return KafkaIO(s, create_client=clients, **callbacks)

        return real_build(settings, MeanScorer(), make_manifest(), io=edge)

    monkeypatch.setattr("detector.service.build_service", fake_build)
    argv = ["run", "--bundle", "unused", "--bootstrap-servers", "127.0.0.1:9"]
    assert detector_main(argv) == EXIT_UNAVAILABLE
    assert producer.calls == ["init_transactions", "flush"]


def test_closing_the_edge_closes_every_client_even_if_one_close_fails() -> None:
    broker = FakeBroker()

    class BrokenClose(FakeConsumer):
        def close(self) -> None:
            super().close()
            raise RuntimeError("close failed")

    consumer, producer = BrokenClose(broker, []), FakeProducer(broker)
    clients = FakeClients(broker, consumers=[consumer], producers=[producer])
    io = KafkaIO(_settings(), create_client=clients)
    with pytest.raises(RuntimeError, match="close failed"), io:
        io.start(5)
        assert io.consume(10, 0) == []  # joined: partition 0 assigned
        assert io.assigned_partitions() == [0]
    assert consumer.closed
    assert producer.calls[-1] == "flush"
