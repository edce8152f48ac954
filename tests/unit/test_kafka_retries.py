"""Kafka errors on the running path are retried with back-off (issue 14, D1), no broker needed.

The transaction of a batch is always left resolved (committed, or aborted) whatever fails in
it, and rewinding and restoring state after a failed batch are retried until they succeed,
as when a restarted broker answers ``NOT_COORDINATOR`` while it loads. Against a real broker
restarted under load: tests/integration/test_broker_restart.py.
"""

from __future__ import annotations

import threading
import time

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from detector.core import InputRecord
from detector.errors import KafkaUnavailableError, PublishError
from detector.kafka.io import KafkaIO
from detector.service import DetectorService, build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest, record
from tests.unit.kafka_fakes import (
    FakeBroker,
    FakeClients,
    FakeConsumer,
    FakeProducer,
    InstantStop,
    kafka_error,
)
from tests.unit.test_service_pipeline import ScriptedKafka, _ids, _levels

TIMED_OUT = KafkaError._TIMED_OUT
NOT_COORDINATOR = KafkaError.NOT_COORDINATOR


def _io(
    delivery: str = "exactly-once",
    stop: threading.Event | None = None,
    clients: FakeClients | None = None,
) -> tuple[KafkaIO, FakeProducer, FakeBroker]:
    """The real KafkaIO over fakes (``clients``: its producers in the order it creates
    them), back-off waits returning at once; the first producer and the broker."""
    settings = DetectorSettings(_env_file=None, bundle="unused", delivery=delivery)  # type: ignore[call-arg]
    if clients is None:
        clients = FakeClients(FakeBroker())
    if not clients.producers:
        clients.producers.append(FakeProducer(clients.broker))
    first = clients.producers[0]
    io = KafkaIO(settings, stop=stop or InstantStop(), create_client=clients)
    return io, first, clients.broker


def _publish(io: KafkaIO) -> None:
    io.publish([(b"s1", b"alert")], [], [], [], 0, [TopicPartition("windows", 0, 7)], object())


def test_a_commit_whose_outcome_is_unknown_is_retried_not_abandoned() -> None:
    io, producer, broker = _io()
    producer.fail["commit_transaction"] = [
        kafka_error(TIMED_OUT, retriable=True),
        kafka_error(TIMED_OUT, retriable=True),
    ]
    _publish(io)
    assert producer.calls.count("commit_transaction") == 3
    assert "abort_transaction" not in producer.calls
    assert broker.committed == {0: 7} and len(broker.records("alerts")) == 1


def test_an_abortable_failure_is_aborted() -> None:
    io, producer, broker = _io()
    producer.fail["commit_transaction"] = [kafka_error(NOT_COORDINATOR, abortable=True)]
    with pytest.raises(PublishError) as failed:
        _publish(io)
    assert failed.value.retriable
    assert producer.calls[-1] == "abort_transaction"
    assert broker.committed == {} and broker.outputs == []
    _publish(io)  # the producer is ready for the batch's replay
    assert broker.committed == {0: 7}


def test_an_abort_that_fails_gets_the_producer_replaced() -> None:
    """After a broker restart librdkafka's abort can wait for messages it lost; the new
    producer's initialisation aborts the transaction on the coordinator instead."""
    broker = FakeBroker()
    new = FakeProducer(broker)
    io, producer, _ = _io(clients=FakeClients(broker, producers=[FakeProducer(broker), new]))
    producer.fail["commit_transaction"] = [kafka_error(KafkaError._INCONSISTENT, abortable=True)]
    producer.fail["abort_transaction"] = [kafka_error(TIMED_OUT, retriable=True)]
    with pytest.raises(PublishError) as failed:
        _publish(io)
    assert failed.value.retriable
    assert io.publisher.producer is new and new.calls == ["init_transactions"]
    assert broker.committed == {} and broker.outputs == []
    _publish(io)
    assert broker.committed == {0: 7}


@pytest.mark.parametrize("step", ["produce", "send_offsets_to_transaction"])
def test_a_failure_inside_the_transaction_aborts_it(step: str) -> None:
    io, producer, broker = _io()
    producer.fail[step] = [kafka_error(KafkaError._STATE)]
    with pytest.raises(PublishError) as failed:
        _publish(io)
    assert failed.value.retriable
    assert producer.calls[-1] == "abort_transaction"
    assert broker.outputs == []


def test_a_fatal_error_is_not_retried() -> None:
    io, producer, _ = _io()
    producer.fail["commit_transaction"] = [kafka_error(KafkaError._FENCED, fatal=True)]
    with pytest.raises(PublishError) as failed:
        _publish(io)
    assert not failed.value.retriable
    assert "abort_transaction" not in producer.calls


def test_an_abort_that_fails_fatally_but_not_fenced_gets_the_producer_replaced() -> None:
    """Seen after a broker restart: send_offsets failed, then the abort failed with a fatal
    INVALID_TXN_STATE. Only this producer instance is dead; a new one recovers the batch."""
    broker = FakeBroker()
    new = FakeProducer(broker)
    io, producer, _ = _io(clients=FakeClients(broker, producers=[FakeProducer(broker), new]))
    producer.fail["send_offsets_to_transaction"] = [kafka_error(KafkaError._TRANSPORT)]
    producer.fail["abort_transaction"] = [kafka_error(KafkaError.INVALID_TXN_STATE, fatal=True)]
    with pytest.raises(PublishError) as failed:
        _publish(io)
    assert failed.value.retriable
    assert io.publisher.producer is new and new.calls == ["init_transactions"]
    _publish(io)
    assert broker.committed == {0: 7}


def test_a_fenced_abort_still_stops_the_detector() -> None:
    io, producer, _ = _io()
    producer.fail["send_offsets_to_transaction"] = [kafka_error(KafkaError._TRANSPORT)]
    producer.fail["abort_transaction"] = [kafka_error(KafkaError.PRODUCER_FENCED, fatal=True)]
    with pytest.raises(PublishError) as failed:
        _publish(io)
    assert not failed.value.retriable


def test_a_stop_ends_the_retries_of_a_commit() -> None:
    stop = InstantStop()
    io, producer, _ = _io(stop=stop)
    producer.fail["commit_transaction"] = [kafka_error(TIMED_OUT, retriable=True)] * 100
    stop.set()
    with pytest.raises(PublishError, match="stopped while committing"):
        _publish(io)
    assert producer.calls.count("commit_transaction") == 1


def test_an_exactly_once_publish_needs_group_metadata_taken_by_the_consumer_thread() -> None:
    io, _, _ = _io()
    with pytest.raises(ValueError, match="group metadata"):
        io.publish([], [], [], [], 0, [TopicPartition("windows", 0, 7)])


class LoadingCoordinator(FakeConsumer):
    """``committed`` answers NOT_COORDINATOR ``failures`` times (a broker still loading)."""

    failures = 2

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> object:
        if self.failures:
            self.failures -= 1
            raise kafka_error(NOT_COORDINATOR, retriable=True)
        return super().committed(partitions, timeout)


def test_a_rewind_refused_by_a_loading_coordinator_is_a_retriable_error() -> None:
    broker = FakeBroker()
    consumer = LoadingCoordinator(broker, [])
    consumer.subscribe(["windows"], on_assign=lambda *_: None)
    consumer.consume()  # assigned
    io, _, _ = _io(clients=FakeClients(broker, consumers=[consumer]))
    with pytest.raises(KafkaUnavailableError, match=r"Not coordinator"):
        io.rewind_to_committed()


# -- the service: recovery retried until it succeeds ----------------------------------------


class FlakyRecovery(ScriptedKafka):
    """A scripted edge whose rewind and state reads fail, after a failed publish, as a
    restarting broker's do: ``rewind_failures`` NOT_COORDINATOR rewinds, then
    ``restore_failures`` state reads that cannot reach the end of the state topic."""

    rewind_failures = 3
    restore_failures = 2
    rewinds = 0
    reads = 0

    def rewind_to_committed(self) -> None:
        self.rewinds += 1
        if self.rewind_failures:
            self.rewind_failures -= 1
            raise KafkaUnavailableError("cannot rewind to the committed offsets: NOT_COORDINATOR")
        super().rewind_to_committed()

    def read_state(self, partitions: list[int]) -> dict[str, tuple[int, bytes]]:
        self.reads += 1
        if self.calls and self.restore_failures:  # after the first publish, not at the start
            self.restore_failures -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))
        return super().read_state(partitions)


def _service(kafka: ScriptedKafka, stop: threading.Event, **settings: object) -> DetectorService:
    s = DetectorSettings(
        _env_file=None,  # type: ignore[call-arg]
        bundle="unused",
        threshold={"method": "static"},
        lifecycle={"resolve_after_windows": 2},
        stop_when_idle_s=0.05,
        max_wait_s=0.001,
        max_batch=3,
        metrics_port=None,
        **settings,  # type: ignore[arg-type]
    )
    return build_service(s, MeanScorer(), make_manifest(), io=kafka.edge, stop=stop)


def _run(kafka: ScriptedKafka) -> DetectorService:
    service = _service(kafka, InstantStop())  # no back-off here
    assert service.run() == 0
    return service


def _records() -> list[InputRecord]:
    return [record(i, level) for i, level in enumerate(_levels())]


def test_a_failed_rewind_and_restore_are_retried_until_they_succeed() -> None:
    clean = ScriptedKafka(_records())
    _run(clean)
    flaky = FlakyRecovery(_records(), fail_publish={2})
    service = _run(flaky)
    assert flaky.rewinds == 4 and flaky.restore_failures == 0
    assert flaky.committed == len(_levels())
    assert _ids(flaky) == _ids(clean)
    assert service.metrics.registry.get_sample_value("detector_publish_retries_total") == 1


@pytest.mark.usefixtures("fresh_structlog")
def test_a_stop_during_a_restore_decides_nothing_more() -> None:
    class DownForGood(ScriptedKafka):
        def edge(self, settings: DetectorSettings, **_callbacks: object) -> ScriptedKafka:
            return self  # the test assigns the partition itself, once

        def read_state(self, partitions: list[int]) -> dict[str, tuple[int, bytes]]:
            raise KafkaUnavailableError("the state topic cannot be read")

    stop = InstantStop()
    kafka = DownForGood(_records())
    service = _service(kafka, stop)
    with structlog.testing.capture_logs() as logs:
        stop.set()  # the restore's first back-off ends it
        service.on_assign([0])
        assert not service.health_state.consuming  # the partition was never taken up
        stop.clear()
        assert service.run() == 0  # leaves at once: nothing decided on state it does not have
    assert kafka.calls == 0 and kafka.position <= 3
    assert service.totals["scored"] == 0
    assert [e["partitions"] for e in logs if e["event"] == "state_restore_failed"] == [[0]]
    assert not [e for e in logs if e["event"] == "state_restored"]


class StuckSendOffsets(FakeProducer):
    """send_offsets_to_transaction blocks until released, its timeout ignored, as
    librdkafka's does once the group coordinator's connection was lost (#5456, #5511)."""

    def __init__(self, broker: FakeBroker) -> None:
        super().__init__(broker)
        self.release = threading.Event()

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: object, timeout: float = -1
    ) -> None:
        self.calls.append("send_offsets_to_transaction")
        self.release.wait(30)
        raise kafka_error(KafkaError._FENCED, fatal=True)  # what it meets once woken


def test_a_producer_stuck_in_send_offsets_is_replaced_and_the_batch_retried() -> None:
    broker = FakeBroker()
    stuck = StuckSendOffsets(broker)
    clients = FakeClients(broker, producers=[stuck])
    io, _, _ = _io(clients=clients)
    io.publisher.send_offsets_timeout_s, io.publisher.stuck_grace_s = 0.05, 0.05
    try:
        started = time.monotonic()
        with pytest.raises(PublishError, match="stuck") as failed:
            _publish(io)
        assert failed.value.retriable
        assert time.monotonic() - started < 5
        # A new producer, transactions initialised (which fences the stuck one): ready for
        # the batch's replay, and nothing of the stuck transaction was committed.
        producers = [c for c in clients.created if isinstance(c, FakeProducer)]
        old, new = producers  # the stuck one and one new producer
        assert old is stuck and isinstance(new, FakeProducer)
        assert io.publisher.producer is new and new.calls == ["init_transactions"]
        assert broker.committed == {} and broker.outputs == []
        _publish(io)
        assert broker.committed == {0: 7}
    finally:
        stuck.release.set()


def test_a_producer_that_saw_every_broker_down_is_replaced_before_its_next_transaction() -> None:
    broker = FakeBroker()
    old, new = FakeProducer(broker), FakeProducer(broker)
    clients = FakeClients(broker, producers=[old, new])
    io, _, _ = _io(clients=clients)
    _publish(io)  # creates the producer, with librdkafka's error callback
    error_cb = clients.configs[0]["error_cb"]
    error_cb(KafkaError(KafkaError._TRANSPORT))  # one connection: no
    _publish(io)
    assert io.publisher.producer is old
    error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    _publish(io)
    assert io.publisher.producer is new
    assert new.calls[:2] == ["init_transactions", "begin_transaction"]
    assert broker.committed == {0: 7} and len(broker.records("alerts")) == 3
