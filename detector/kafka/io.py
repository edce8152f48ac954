"""The detector's Kafka edge: one object holding its consumer, publisher, admin and state
reads, which the service drives.

The roles live in modules of their own: :mod:`detector.kafka.consumer` (subscription,
rebalance callbacks, micro-batches, offsets), :mod:`detector.kafka.publisher` (the
transactional producer), :mod:`detector.kafka.admin` (broker and topics),
:mod:`detector.kafka.state` (reading the state topic to its end) and
:mod:`detector.kafka.errors` (classifying librdkafka's errors). :class:`KafkaIO` composes
them for one detector instance, in the shape the service needs (:class:`KafkaEdge`).

Clients are created lazily (no network in ``__init__``) and closed by :meth:`KafkaIO.close`,
which ``with KafkaIO(...)`` calls on every path. confluent_kafka errors are translated to
:mod:`detector.errors` in the role modules; an option librdkafka rejects is a
:class:`~detector.errors.ConfigError` when the client is created.

Threads: the consumer is used only on the thread that consumes (its rebalance callbacks run
there too); :meth:`KafkaIO.publish` runs on a publisher thread and never touches it (see
:mod:`detector.kafka.consumer`). Rewinding and restoring state raise
:class:`~detector.errors.KafkaUnavailableError` for the caller to retry with back-off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from detector.core import DeadLetter, InputRecord
from detector.errors import KafkaUnavailableError
from detector.kafka.admin import TopicAdmin
from detector.kafka.config import new_client
from detector.kafka.consumer import InputConsumer, PartitionsCallback
from detector.kafka.errors import error_of
from detector.kafka.publisher import TransactionalPublisher
from detector.kafka.state import latest_state, read_committed_to_end
from detector.settings import DetectorSettings

__all__ = ["EdgeFactory", "KafkaEdge", "KafkaIO"]


class KafkaEdge(Protocol):
    """What the service needs of its Kafka edge (:class:`KafkaIO`; unit tests script it)."""

    def wait_for_broker(self, timeout_s: float) -> None: ...

    def ensure_topics(self) -> None: ...

    def start(self, timeout_s: float) -> None: ...

    def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]: ...

    def group_metadata(self) -> object | None: ...

    def publish(
        self,
        alerts: Iterable[tuple[bytes, bytes]],
        events: Iterable[tuple[bytes, bytes]],
        dead_letters: Iterable[DeadLetter],
        states: Iterable[tuple[str, int, bytes | None]],
        now_ms: int,
        offsets: list[TopicPartition],
        group_metadata: object | None = None,
    ) -> None: ...

    def commit_offsets(self, offsets: list[TopicPartition]) -> None: ...

    def rewind_to_committed(self) -> None: ...

    def assigned_partitions(self) -> list[int]: ...

    def read_state(self, partitions: list[int]) -> dict[str, tuple[int, bytes]]: ...

    def lag(self) -> dict[int, int]: ...

    def close(self) -> None: ...


class EdgeFactory(Protocol):
    """Builds a service's edge, handing it the service's rebalance callbacks and stop event
    (:class:`KafkaIO` itself is one)."""

    def __call__(
        self,
        settings: DetectorSettings,
        *,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
        stop: threading.Event | None,
    ) -> KafkaEdge: ...


class KafkaIO:
    """Kafka clients for one detector instance.

    Args:
        settings: the detector's settings.
        on_assign: called on the consuming thread with the input partitions assigned.
        on_revoke: called on the consuming thread with the input partitions revoked.
        stop: set when the owner stops: retries of a transaction's commit or abort give up.
        create_client: ``create_client(kind, conf)`` makes each confluent-kafka client
            (:func:`detector.kafka.config.new_client`; unit tests pass fakes).

    Attributes:
        topics: the admin role (:class:`~detector.kafka.admin.TopicAdmin`).
        input: the consumer role (:class:`~detector.kafka.consumer.InputConsumer`).
        publisher: the producer role (:class:`~detector.kafka.publisher.TransactionalPublisher`).
        publish: :meth:`TransactionalPublisher.publish
            <detector.kafka.publisher.TransactionalPublisher.publish>`, safe on any thread.
    """

    def __init__(
        self,
        settings: DetectorSettings,
        *,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        stop: threading.Event | None = None,
        create_client: Callable[..., Any] = new_client,
    ) -> None:
        self.settings = settings
        self.exactly_once = settings.delivery == "exactly-once"
        self.topics = TopicAdmin(settings, create_client)
        self.input = InputConsumer(
            settings,
            on_assign,
            on_revoke,
            exactly_once=self.exactly_once,
            create_client=create_client,
        )
        self._stop = stop if stop is not None else threading.Event()
        self.publisher = TransactionalPublisher(
            settings, self._state_partitions, self._stop, create_client
        )
        self._n_state: int | None = None
        # One batch's outputs and offsets, on the publisher thread (never the consumer's).
        self.publish = self.publisher.publish

    def __enter__(self) -> KafkaIO:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- start-up -------------------------------------------------------------------------

    def wait_for_broker(self, timeout_s: float) -> None:
        """Block until the cluster answers, or raise :class:`KafkaUnavailableError`."""
        self.topics.wait_for_broker(timeout_s)

    def ensure_topics(self, timeout_s: float = 30.0) -> None:
        """Create the detector's topics if missing (setting ``topics.create_missing``)."""
        self.topics.ensure_topics(timeout_s)

    def start(self, timeout_s: float) -> None:
        """Learn the state topic's partition count, initialise transactions (fencing a
        crashed predecessor) and subscribe.

        Raises:
            KafkaUnavailableError: the state topic's partitions were not in the broker's
                metadata within ``timeout_s``, or init_transactions failed.
        """
        self._n_state = self.topics.wait_for_partitions(
            self.settings.topics.state, timeout_s, self._stop, what="state topic"
        )
        try:
            self.publisher.init_transactions(timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"init_transactions failed: {exc}") from exc
        self.input.subscribe()

    def _state_partitions(self) -> int:
        if self._n_state is None:  # only before start(): never remember a topic not seen yet
            n = self.topics.partitions_of(self.settings.topics.state)
            if n <= 0:
                return n
            self._n_state = n
        return self._n_state

    # -- the loop -------------------------------------------------------------------------

    def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
        """Up to ``max_records`` records (:meth:`InputConsumer.consume`)."""
        return self.input.consume(max_records, timeout_s)

    def group_metadata(self) -> object | None:
        """The consumer's group metadata for :meth:`publish`, on the consuming thread."""
        return self.input.group_metadata()

    def commit_offsets(self, offsets: list[TopicPartition]) -> None:
        """At-least-once offsets, on the consuming thread (:meth:`InputConsumer.commit_offsets`)."""
        self.input.commit_offsets(offsets)

    def rewind_to_committed(self) -> None:
        """Seek back to the committed offsets (:meth:`InputConsumer.rewind_to_committed`)."""
        self.input.rewind_to_committed()

    def assigned_partitions(self) -> list[int]:
        """Input partitions this instance holds now (safe to call from any thread)."""
        return self.input.assigned_partitions()

    def lag(self) -> dict[int, int]:
        """Records behind the high watermark per assigned partition."""
        return self.input.lag()

    def read_state(
        self, partitions: list[int], timeout_s: float = 30.0
    ) -> dict[str, tuple[int, bytes]]:
        """Latest state record per key for these input partitions, from the state topic.

        Raises:
            KafkaUnavailableError: the state topic could not be read to its end within
                ``timeout_s``; restoring part of it would be wrong: retry.
        """
        if not partitions:
            return {}
        s = self.settings
        try:
            n_state = max(1, self._state_partitions())
            records, incomplete = read_committed_to_end(
                s.kafka.client_config(),
                s.topics.state,
                sorted({p % n_state for p in partitions}),
                timeout_s,
                group_id=f"{s.group_id}-state-reader",
            )
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot read the state topic: {error_of(exc)}") from exc
        if incomplete:
            raise KafkaUnavailableError(
                f"the state topic's partitions {incomplete} were not read to their end "
                f"within {timeout_s:g} s"
            )
        return latest_state(records, partitions)

    def close(self) -> None:
        """Leave the group, flush the producer, drop the admin client: each of them even if
        another one's close fails."""
        try:
            self.input.close()
        finally:
            try:
                self.publisher.close()
            finally:
                self.topics.close()
