"""Plain fakes of the confluent-kafka clients, for the real :class:`~detector.kafka.io.KafkaIO`
in unit tests (no broker, no Mock). :class:`FakeClients` hands them to ``KafkaIO`` through its
public ``create_client`` seam.

:class:`FakeConsumer` keeps the one property of confluent-kafka's consumer that a threaded
caller must respect: a rebalance callback runs on the consuming thread, inside ``consume``,
and holds the consumer handle while it runs, so another thread calling the consumer then
waits until the callback returns. The fake bounds that wait and raises
:class:`ConsumerHandleHeldError` instead of hanging: a callback that waits for such a thread is a
deadlock, and a test should fail, not hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from detector.core import InputRecord
from detector.kafka.io import KafkaIO
from detector.kafka.state import H_INPUT_PARTITION

__all__ = [
    "ConsumerHandleHeldError",
    "FakeAdmin",
    "FakeBroker",
    "FakeClients",
    "FakeConsumer",
    "FakeMessage",
    "FakeProducer",
    "InstantStop",
    "ScriptedIO",
    "kafka_error",
]

TOPIC = "windows"


class ConsumerHandleHeldError(RuntimeError):
    """A thread waited for the consumer handle while a rebalance callback held it."""


def kafka_error(
    code: int, *, retriable: bool = False, abortable: bool = False, fatal: bool = False
) -> KafkaException:
    """A KafkaException as librdkafka raises it, with its flags."""
    return KafkaException(
        KafkaError(code, fatal=fatal, retriable=retriable, txn_requires_abort=abortable)
    )


class FakeMessage:
    """A consumed record, with confluent_kafka.Message's accessors."""

    def __init__(self, record: InputRecord) -> None:
        self._r = record

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._r.topic

    def partition(self) -> int:
        return self._r.partition

    def offset(self) -> int:
        return self._r.offset

    def key(self) -> bytes | None:
        return self._r.key

    def value(self) -> bytes | None:
        return self._r.value

    def headers(self) -> Any:
        return self._r.headers

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


class FakeErrorMessage:
    """An error event as ``consume`` returns it (``msg.error()`` set)."""

    def __init__(self, error: KafkaError) -> None:
        self._error = error

    def error(self) -> KafkaError:
        return self._error


@dataclass
class FakeBroker:
    """What was committed: the group's offsets and the outputs of committed transactions."""

    committed: dict[int, int] = field(default_factory=dict)
    outputs: list[tuple[str, bytes | None, bytes | None, Any]] = field(default_factory=list)

    def records(self, topic: str) -> list[tuple[bytes | None, bytes | None, Any]]:
        return [(k, v, h) for t, k, v, h in self.outputs if t == topic]


class FakeConsumer:
    """One input partition; ``rebalance_after`` batches served, the next ``consume`` runs a
    revoke and a new assignment of the same partition (a session lost during an outage, say)
    inside the call, holding the handle, and ``in_revoke`` is set while the revoke runs."""

    def __init__(
        self,
        broker: FakeBroker,
        records: list[InputRecord],
        *,
        batch: int = 3,
        rebalance_after: int | None = None,
        fatal_after: int | None = None,
        handle_wait_s: float = 5.0,
    ) -> None:
        self.broker = broker
        self.messages = [FakeMessage(r) for r in records]
        self.batch = batch
        self.rebalance_after = rebalance_after
        self.fatal_after = fatal_after  # batches served, then a fatal error for good
        self.closed = False
        self.handle_wait_s = handle_wait_s
        self.in_revoke = threading.Event()
        self.rebalanced = False
        self.threads: set[str] = set()  # names of the threads that called the consumer
        self._handle = threading.RLock()
        self._pos = 0
        self._served = 0
        self._assigned = False
        self._on_assign: Callable[[Any, list[TopicPartition]], None] | None = None
        self._on_revoke: Callable[[Any, list[TopicPartition]], None] | None = None

    def _enter(self, what: str) -> None:
        self.threads.add(threading.current_thread().name)
        if not self._handle.acquire(timeout=self.handle_wait_s):
            raise ConsumerHandleHeldError(
                f"{what} on thread {threading.current_thread().name} waited "
                f"{self.handle_wait_s:g} s for the consumer handle a rebalance callback holds: "
                "a deadlock"
            )

    def _tp(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0)]

    def _assign(self) -> None:
        assert self._on_assign is not None
        self._on_assign(self, self._tp())
        self._assigned = True
        self._pos = self.broker.committed.get(0, 0)  # fetching starts at the committed offset

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self._enter("consume")
        try:
            if self.fatal_after is not None and self._served >= self.fatal_after:
                # librdkafka's error event once the consumer is fenced: it consumes nothing
                # more, ever.
                return [FakeErrorMessage(KafkaError(KafkaError._FATAL, "fenced"))]
            if not self._assigned:
                self._assign()
            elif (
                self.rebalance_after is not None
                and not self.rebalanced
                and self._served >= self.rebalance_after
            ):
                self.rebalanced = True
                self.in_revoke.set()
                assert self._on_revoke is not None
                self._on_revoke(self, self._tp())
                self.in_revoke.clear()
                self._assign()
            out = self.messages[self._pos : self._pos + min(num_messages, self.batch)]
            self._pos += len(out)
            self._served += bool(out)
            return out
        finally:
            self._handle.release()

    def consumer_group_metadata(self) -> object:
        self._enter("consumer_group_metadata")
        try:
            return ("group-metadata", self._served)
        finally:
            self._handle.release()

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self._enter("commit")
        try:
            for tp in offsets:
                self.broker.committed[tp.partition] = tp.offset
        finally:
            self._handle.release()

    def assignment(self) -> list[TopicPartition]:
        self._enter("assignment")
        try:
            return self._tp() if self._assigned else []
        finally:
            self._handle.release()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self._enter("position")
        try:
            return [TopicPartition(TOPIC, 0, self._pos)]
        finally:
            self._handle.release()

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> Any:
        self._enter("committed")
        try:
            return [TopicPartition(TOPIC, 0, self.broker.committed.get(0, -1001))]
        finally:
            self._handle.release()

    def seek(self, tp: TopicPartition) -> None:
        self._enter("seek")
        try:
            self._pos = tp.offset
        finally:
            self._handle.release()

    def close(self) -> None:
        self._enter("close")
        try:
            if self._assigned and self._on_revoke is not None:
                self._on_revoke(self, self._tp())
            self._assigned = False
            self.closed = True
        finally:
            self._handle.release()


class FakeProducer:
    """A transactional producer writing to a :class:`FakeBroker` on commit.

    ``hold`` (an event) holds the first transaction (exactly-once: its begin; at-least-once:
    its flush) until it is set, at most 5 s. ``fail`` maps a method name to the exceptions
    its next calls raise, in order.
    """

    def __init__(self, broker: FakeBroker, hold: threading.Event | None = None) -> None:
        self.broker = broker
        self.hold = hold
        self.fail: dict[str, list[KafkaException]] = {}
        self.calls: list[str] = []
        self._pending: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self._offsets: list[TopicPartition] = []
        self._held = False
        self.held_until_released: bool | None = None  # the first transaction's hold ended so

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            raise self.fail[name].pop(0)

    def _hold_first(self) -> None:
        if self.hold is not None and not self._held:
            self._held = True
            self.held_until_released = self.hold.wait(5.0)

    def init_transactions(self, timeout: float = -1) -> None:
        self._call("init_transactions")

    def begin_transaction(self) -> None:
        self._hold_first()
        self._call("begin_transaction")

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,
        partition: int = -1,
        on_delivery: Any = None,
    ) -> None:
        self._call("produce")
        self._pending.append((topic, key, value, headers))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: object, timeout: float = -1
    ) -> None:
        self._call("send_offsets_to_transaction")
        assert metadata is not None
        self._offsets = list(offsets)

    def commit_transaction(self, timeout: float = -1) -> None:
        self._call("commit_transaction")
        self.broker.outputs.extend(self._pending)
        for tp in self._offsets:
            self.broker.committed[tp.partition] = tp.offset
        self._pending, self._offsets = [], []

    def abort_transaction(self, timeout: float = -1) -> None:
        self._call("abort_transaction")
        self._pending, self._offsets = [], []

    def flush(self, timeout: float = -1) -> int:
        self._hold_first()
        self._call("flush")
        self.broker.outputs.extend(self._pending)
        self._pending = []
        return 0


class InstantStop(threading.Event):
    """A stop event whose back-off waits return at once (True only if it is set)."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


class _EveryTopic(dict[str, Any]):
    """Topic metadata in which any name asked for exists (iterating lists none)."""

    def __init__(self, partitions: int) -> None:
        super().__init__()
        self._meta = SimpleNamespace(partitions=dict.fromkeys(range(partitions)), error=None)

    def get(self, name: str, default: Any = None) -> Any:
        return self._meta


class FakeAdmin:
    """An admin client of a one-broker cluster where every topic has ``partitions``
    partitions; listing names none, and creating one succeeds."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.created: list[str] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(brokers={1: "fake"}, topics=_EveryTopic(self.partitions))

    def create_topics(self, topics: list[Any], operation_timeout: float = -1) -> Any:
        done: dict[str, Future[None]] = {}
        for topic in topics:
            self.created.append(topic.topic)
            done[topic.topic] = Future()
            done[topic.topic].set_result(None)
        return done


@dataclass
class FakeClients:
    """``create_client`` for :class:`KafkaIO`: the next fake of the kind asked for.

    ``consumers`` and ``producers`` are handed out in order (a replaced client takes the
    next one); ``configs`` keeps the options each producer was created with (its
    ``error_cb`` is librdkafka's error callback).
    """

    broker: FakeBroker
    consumers: list[FakeConsumer] = field(default_factory=list)
    producers: list[FakeProducer] = field(default_factory=list)
    admin: FakeAdmin = field(default_factory=FakeAdmin)
    configs: list[dict[str, Any]] = field(default_factory=list)
    created: list[Any] = field(default_factory=list)

    def __call__(self, kind: type[Any], conf: dict[str, Any]) -> Any:
        client: Any
        if kind is Consumer:
            client = self.consumers.pop(0)
        elif kind is Producer:
            self.configs.append(conf)
            client = self.producers.pop(0) if self.producers else FakeProducer(self.broker)
        elif kind is AdminClient:
            client = self.admin
        else:
            raise AssertionError(f"no fake for {kind}")
        self.created.append(client)
        return client


class ScriptedIO(KafkaIO):
    """The real KafkaIO over a fake consumer and producer; state is read back from the
    committed outputs (the real read_state reads the state topic with clients of its own)."""

    broker: FakeBroker

    def read_state(
        self, partitions: list[int], timeout_s: float = 30.0
    ) -> dict[str, tuple[int, bytes]]:
        latest: dict[str, tuple[int, bytes]] = {}
        for key, value, headers in self.broker.records(self.settings.topics.state):
            part = int(dict(headers)[H_INPUT_PARTITION])
            if part not in partitions or key is None:
                continue
            if value is None:
                latest.pop(key.decode(), None)
            else:
                latest[key.decode()] = (part, value)
        return latest
