"""A rebalance while a batch commits: the real service and KafkaIO over a scripted Kafka edge.

Seen on a real broker (issue 14, D1): with the broker down ~21 s under a steady stream, the
session timed out; when the broker came back, the loop's thread was inside the consumer's
revoke callback waiting for the publisher thread to commit the batch in flight, and the
publisher thread was waiting in ``consumer.consumer_group_metadata()`` for the consumer
handle the callback held. The detector hung for good.

Here the first batch's transaction is held until the loop's thread is inside the revoke
callback, which then waits for it, exactly that interleaving. The fake consumer
(:mod:`tests.unit.kafka_fakes`) holds its handle during callbacks as confluent-kafka does, and
raises after 5 s instead of hanging when another thread waits for it. Each test also runs
the loop on a thread of its own with a bounded join, so a hang of any other kind fails too.
"""

from __future__ import annotations

import threading

import orjson
import pytest

from detector.kafka.io import KafkaEdge
from detector.service import build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest, record
from tests.unit.kafka_fakes import (
    FakeBroker,
    FakeClients,
    FakeConsumer,
    FakeProducer,
    InstantStop,
    ScriptedIO,
    kafka_error,
)

LEVELS = [0.1, 0.1, 3.0, 3.0, 0.1, 0.1, 0.1, 0.1, 2.0, 0.1, 0.1, 0.1, 0.1, 4.0, 4.0, 4.0] + [
    0.1
] * 6
RUN_BOUND_S = 30.0

DELIVERY = pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])


def _run(
    delivery: str, *, rebalance: bool, lost: bool = False, fenced: bool = False
) -> tuple[FakeBroker, FakeConsumer, FakeProducer]:
    """Run the service over the fakes to the end of LEVELS; with ``rebalance``, a revoke and
    a new assignment come while the first batch's transaction is held (``lost``: and that
    transaction then fails, as one sent with a session that expired does); with ``fenced``,
    the consumer is fenced for good after two batches (and a new one takes over)."""
    settings = DetectorSettings(
        _env_file=None,  # type: ignore[call-arg]
        bundle="unused",
        delivery=delivery,
        threshold={"method": "static"},
        lifecycle={"resolve_after_windows": 2},
        stop_when_idle_s=0.2,
        max_wait_s=0.001,
        max_batch=8,  # batches of 3: no backlog, each batch commits while the next is read
        metrics_port=None,
    )
    broker = FakeBroker()
    records = [record(i, level) for i, level in enumerate(LEVELS)]
    consumer = FakeConsumer(broker, records, batch=3, fatal_after=2 if fenced else None)
    hold = None
    if rebalance:
        consumer.rebalance_after = 1
        hold = consumer.in_revoke
    producer = FakeProducer(broker, hold)
    if lost:
        # What a transaction with the expired member's group metadata meets.
        producer.fail["send_offsets_to_transaction"] = [
            kafka_error(25, abortable=True)  # UNKNOWN_MEMBER_ID
        ]
    # The first consumer, then the one that replaces it if it is fenced.
    clients = FakeClients(
        broker, consumers=[consumer, FakeConsumer(broker, records, batch=3)], producers=[producer]
    )

    def edge(settings: DetectorSettings, **callbacks: object) -> KafkaEdge:
        io = ScriptedIO(settings, create_client=clients, **callbacks)  # type: ignore[arg-type]
        io.broker = broker
        return io

    service = build_service(
        settings, MeanScorer(), make_manifest(), io=edge, stop=InstantStop()
    )  # no back-off here
    service.io.start(5)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            service.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=loop, name="detector-loop", daemon=True)
    thread.start()
    thread.join(RUN_BOUND_S)
    assert not thread.is_alive(), f"the detector hung for {RUN_BOUND_S:g} s"
    if errors:
        raise errors[0]
    if rebalance:
        assert consumer.rebalanced, "the scripted rebalance did not happen"
        assert producer.held_until_released, "the first batch did not commit inside the revoke"
    return broker, consumer, producer


def _alert_ids(broker: FakeBroker) -> list[tuple[str, str]]:
    out = []
    for _key, value, _headers in broker.records("alerts"):
        alert = orjson.loads(value or b"")
        out.append((alert["alert_id"], alert["state"]))
    return out


@DELIVERY
def test_a_revoke_that_waits_for_the_batch_in_flight_does_not_deadlock(delivery: str) -> None:
    clean, _, _ = _run(delivery, rebalance=False)
    broker, consumer, _ = _run(delivery, rebalance=True)
    # Only the loop's thread touched the consumer: never the publisher (nor the scorer).
    assert consumer.threads == {"detector-loop"}
    assert broker.committed == {0: len(LEVELS)}
    ids = _alert_ids(broker)
    assert ids and ids == _alert_ids(clean)
    assert len(set(ids)) == len(ids)


def test_a_batch_that_fails_inside_the_revoke_is_replayed_once_after_it() -> None:
    clean, _, _ = _run("exactly-once", rebalance=False)
    broker, consumer, producer = _run("exactly-once", rebalance=True, lost=True)
    assert "abort_transaction" in producer.calls
    assert consumer.threads == {"detector-loop"}
    assert broker.committed == {0: len(LEVELS)}
    assert _alert_ids(broker) == _alert_ids(clean)


def test_a_consumer_fenced_for_good_is_replaced_and_nothing_is_lost() -> None:
    """librdkafka's consumer can fence itself after a broker restart (a static member that
    rejoined twice: ``FENCED_INSTANCE_ID``) and then consumes nothing more, ever."""
    clean, _, _ = _run("exactly-once", rebalance=False)
    broker, fenced, _ = _run("exactly-once", rebalance=False, fenced=True)
    assert fenced.closed
    assert broker.committed == {0: len(LEVELS)}
    assert _alert_ids(broker) == _alert_ids(clean)
