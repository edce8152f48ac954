"""The detector's input consumer: subscription, rebalance callbacks, micro-batches, offsets.

The consumer is created on first use and used only on the thread that consumes: its
rebalance callbacks run there, inside :meth:`InputConsumer.consume`, and confluent-kafka
holds the consumer handle while one runs, so another thread touching the consumer then
waits for the callback (and a callback that waits for that thread deadlocks). Hence the
group metadata a transaction commits offsets with is taken here, on the consuming thread
(:meth:`InputConsumer.group_metadata`), and at-least-once offsets are committed here too
(:meth:`InputConsumer.commit_offsets`), never on the publisher thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from detector.core import InputRecord
from detector.errors import KafkaUnavailableError, PublishError
from detector.kafka.config import new_client
from detector.kafka.errors import error_of
from detector.log import LIBRDKAFKA_LOG
from detector.settings import DetectorSettings

__all__ = ["NO_GROUP_METADATA", "InputConsumer", "PartitionsCallback", "offsets_after"]

log = structlog.get_logger()

# What InputConsumer.group_metadata gives when the consumer cannot give its own.
NO_GROUP_METADATA = object()

# A rebalance callback: the input partitions assigned or revoked, on the consuming thread.
PartitionsCallback = Callable[[list[int]], None]


def offsets_after(records: Iterable[InputRecord]) -> list[TopicPartition]:
    """The offsets to commit once these records are processed: last offset + 1 per partition."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset >= last.get(key, -1):
            last[key] = r.offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def _to_record(msg: Message) -> InputRecord:
    ts_type, ts = msg.timestamp()
    return InputRecord(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=msg.headers(),
        timestamp_ms=ts if ts_type else 0,
    )


class InputConsumer:
    """The windows topic's consumer of one detector instance (static group member).

    Args:
        settings: the detector's settings (client options, group, instance, topics).
        on_assign: called with the input partitions assigned, after they are held.
        on_revoke: called with the input partitions revoked, after they are let go.
        exactly_once: offsets travel in the publisher's transactions (then
            :meth:`commit_offsets` does nothing).
        create_client: ``create_client(Consumer, conf)`` makes the client
            (:func:`detector.kafka.config.new_client`; unit tests pass fakes).
    """

    def __init__(
        self,
        settings: DetectorSettings,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        *,
        exactly_once: bool = True,
        create_client: Callable[..., Any] = new_client,
    ) -> None:
        self._settings = settings
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._exactly_once = exactly_once
        self._create_client = create_client
        self._consumer: Consumer | None = None
        self._held: tuple[int, ...] = ()  # kept by the rebalance callbacks

    @property
    def consumer(self) -> Consumer:
        """The client, created on first use."""
        if self._consumer is None:
            s = self._settings
            conf: dict[str, Any] = {
                "session.timeout.ms": 10000,
                "fetch.wait.max.ms": 10,
                "logger": LIBRDKAFKA_LOG,
                **s.kafka.client_config(),
                "group.id": s.group_id,
                "group.instance.id": s.instance_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": s.auto_offset_reset,
                "isolation.level": "read_committed",
            }
            self._consumer = self._create_client(Consumer, conf)
        return self._consumer

    def subscribe(self) -> None:
        """Join the group on the windows topic (partitions come in :meth:`consume`)."""
        self.consumer.subscribe(
            [self._settings.topics.windows],
            on_assign=self._partitions_assigned,
            on_revoke=self._partitions_revoked,
        )

    def _partitions_assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing
        parts = sorted(tp.partition for tp in partitions)
        self._held = tuple(sorted(set(self._held) | set(parts)))
        log.info("partitions_assigned", partitions=parts)
        if self._on_assign is not None:
            self._on_assign(parts)

    def _partitions_revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing: its partitions were revoked already
        parts = sorted(tp.partition for tp in partitions)
        self._held = tuple(p for p in self._held if p not in parts)
        log.info("partitions_revoked", partitions=parts)
        if self._on_revoke is not None:
            self._on_revoke(parts)

    def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
        """The records ready now (up to ``max_records``), else wait up to ``timeout_s`` for one.

        No waiting to fill a batch: what arrived while the previous batch was scored and
        committed is the next batch, so batches grow with the input rate (a backlog drains in
        full batches) and a record on a quiet stream is scored as soon as it arrives instead
        of after a fill timeout. librdkafka's own ``consume(n, timeout)`` would wait the
        whole timeout unless ``n`` records arrive.
        """
        consumer = self.consumer
        msgs = consumer.consume(num_messages=max_records, timeout=0)
        if not msgs:
            msgs = consumer.consume(num_messages=1, timeout=timeout_s)
            if msgs and max_records > 1:
                msgs.extend(consumer.consume(num_messages=max_records - 1, timeout=0))
        out: list[InputRecord] = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                out.append(_to_record(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal() or err.code() == KafkaError._FATAL:
                    self._replace_fenced_consumer(err)
                    return []  # read again by the new consumer, from the committed offsets
                log.warning("consumer_error", error=str(err))
        return out

    def _replace_fenced_consumer(self, err: KafkaError) -> None:
        """A new consumer in place of one that hit a fatal error and can consume nothing
        more: its partitions are revoked first (the owner settles what it holds of them),
        then the new one joins the group and is assigned partitions as any member is.

        The fatal error seen here: ``FENCED_INSTANCE_ID`` after a broker restart, when
        librdkafka rejoined the static group twice after its session expired and fenced
        itself. (Another live process with the same instance id would be fenced in turn
        and replace its consumer too: each process needs its own instance id.)
        """
        log.warning("consumer_replaced", error=str(err), partitions=list(self._held))
        old = self._consumer
        held = [TopicPartition(self._settings.topics.windows, p) for p in self._held]
        if held and old is not None:
            self._partitions_revoked(old, held)
        self._consumer = None
        if old is not None:
            try:
                old.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer_close_failed", error=str(exc))
        self.subscribe()

    def group_metadata(self) -> object | None:
        """The consumer's group metadata for a transaction's offsets (exactly-once), taken on
        the consuming thread (a rebalance callback included); None at-least-once, and
        :data:`NO_GROUP_METADATA` if the consumer cannot give it (lost: the batch is then
        refused by the publisher and replayed)."""
        if not self._exactly_once:
            return None
        try:
            return self.consumer.consumer_group_metadata()
        except (KafkaException, RuntimeError) as exc:
            log.warning("group_metadata_unavailable", error=str(exc))
            return NO_GROUP_METADATA

    def commit_offsets(self, offsets: list[TopicPartition]) -> None:
        """At-least-once: commit a published batch's input offsets, on the consuming thread.
        Exactly-once commits them in the batch's transaction, and this does nothing.

        Raises:
            PublishError: the commit failed (retriable unless the consumer is fenced).
        """
        if self._exactly_once or not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = error_of(exc)
            raise PublishError(f"offset commit failed: {err}", not err.fatal()) from exc

    def rewind_to_committed(self) -> None:
        """Seek every assigned partition back to its committed offset (after an abort).

        Raises:
            KafkaUnavailableError: the committed offsets could not be read or sought to now
                (e.g. the group coordinator is still loading after a broker restart): retry.
        """
        try:
            assignment = self.consumer.assignment()
            if not assignment:
                return
            for tp in self.consumer.committed(assignment, timeout=30):
                offset = tp.offset if tp.offset >= 0 else 0
                if tp.offset < 0 and self._settings.auto_offset_reset == "latest":
                    continue
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"cannot rewind to the committed offsets: {error_of(exc)}"
            ) from exc

    def assigned_partitions(self) -> list[int]:
        """Input partitions this instance holds now (safe to call from any thread)."""
        return list(self._held)

    def lag(self) -> dict[int, int]:
        """Records behind the high watermark per assigned partition with a position.

        Raises:
            KafkaException: the positions or watermarks could not be read now.
        """
        consumer = self.consumer
        out: dict[int, int] = {}
        for tp in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(tp, timeout=1, cached=False)
            if tp.offset >= 0:
                out[tp.partition] = max(0, high - tp.offset)
        return out

    def close(self) -> None:
        """Leave the group (the revoke callback runs inside)."""
        if self._consumer is not None:
            try:
                self._consumer.close()
            finally:
                self._consumer = None
