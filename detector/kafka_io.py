"""The detector's Kafka edge: consumer, transactional producer, admin, state topic.

Clients are created lazily (no network in ``__init__``) and closed in :meth:`close`.
confluent_kafka errors are translated to :mod:`detector.errors` here; an option librdkafka
rejects is a :class:`~detector.errors.ConfigError` when the client is created.

Publishing a batch (exactly-once)::

    begin_transaction -> produce alerts, events, dead letters, state snapshots
    -> send_offsets_to_transaction(consumer positions) -> commit_transaction

so a read_committed reader sees a batch's outputs exactly when its input offsets are
committed. At-least-once: produce, flush, then commit offsets synchronously.

Threads: the consumer is used only on the thread that consumes (its rebalance callbacks run
there too). confluent-kafka holds the consumer handle while a callback runs, so another
thread touching the consumer then waits for the callback, and a callback that waits for that
thread deadlocks. :meth:`KafkaIO.publish` runs on a publisher thread, so it never touches
the consumer: the group metadata it sends with the offsets is taken on the consuming thread
(:meth:`KafkaIO.group_metadata`) and passed in, and at-least-once offsets are committed on
that thread afterwards (:meth:`KafkaIO.commit_offsets`).

Errors: a transaction is always left resolved. A retriable failure of its commit is retried
(its outcome is not known until a commit call returns, and librdkafka allows no abort then);
any other failure inside it aborts it (the abort retried until it goes through), and the
batch's :class:`PublishError` says whether rewinding and trying again may succeed. Rewinding
and restoring state raise :class:`~detector.errors.KafkaUnavailableError` for the caller to
retry with back-off (:mod:`detector.retry`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from detector.core import DeadLetter, InputRecord
from detector.dead_letters import DEFAULT_MESSAGE_MAX_BYTES, DLQ_HEADERS, dead_letter_record
from detector.errors import KafkaUnavailableError, PublishError
from detector.kafka_config import new_client
from detector.log import LIBRDKAFKA_LOG
from detector.retry import Backoff
from detector.settings import DetectorSettings

__all__ = [
    "DLQ_HEADERS",
    "TXN_RETRY_BACKOFF",
    "KafkaIO",
    "offsets_after",
    "read_committed_to_end",
]

log = structlog.get_logger()

H_INPUT_PARTITION = "input-partition"
# What KafkaIO.group_metadata gives when the consumer cannot give its own.
NO_GROUP_METADATA = object()
STATE_SEGMENT_BYTES = 16 << 20  # the state topic's segments (see ensure_topics)
# The transactional producer's retry backoff (see KafkaIO.producer for why).
TXN_RETRY_BACKOFF = {"retry.backoff.ms": 5, "retry.backoff.max.ms": 20}


def _error_of(exc: KafkaException) -> KafkaError:
    """The KafkaError inside a KafkaException (librdkafka always puts one there)."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err
    return KafkaError(KafkaError._FAIL, str(err))


_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def _fenced(err: KafkaError) -> bool:
    """Whether another producer took this transactional id over: the one fatal error that
    must stop the detector (a new producer would fence the other instance in turn)."""
    return err.code() in _FENCED_CODES or "fenced" in err.str().lower()


def _release(box: list[Any]) -> None:
    """Take a replaced client out of ``box`` and drop it, here."""
    box.clear()


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


def offsets_after(records: Iterable[InputRecord]) -> list[TopicPartition]:
    """The offsets to commit once these records are processed: last offset + 1 per partition."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset >= last.get(key, -1):
            last[key] = r.offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """(low, high) offsets, retried until ``deadline``: a topic created a moment ago may not
    have a leader yet ("unknown topic or partition", "leader not available").

    Raises:
        KafkaUnavailableError: still failing at the deadline.
    """
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                tp, timeout=max(0.5, min(10.0, deadline - time.monotonic()))
            )
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise KafkaUnavailableError(
                    f"cannot read the offsets of {tp.topic}[{tp.partition}]: {_error_of(exc)}"
                ) from exc
            log.info("offsets_not_ready", topic=tp.topic, partition=tp.partition, error=str(exc))
            time.sleep(0.2)


def read_committed_to_end(
    client_config: dict[str, Any],
    topic: str,
    partitions: Iterable[int],
    timeout_s: float,
    group_id: str,
) -> tuple[list[Message], list[int]]:
    """Every committed record of these partitions up to their ends now, in offset order.

    The ends are the high watermarks (taken read_uncommitted: a read_committed offset query
    returns the last stable offset, which stays behind a transaction whose commit has
    returned but whose markers are not yet written). Each partition is then read
    read_committed until the position passes its end, so a transaction committed just before
    the call is included, and one still open is waited for, up to ``timeout_s``.

    Returns:
        The records, and the partitions that did not reach their end in time.

    Raises:
        KafkaUnavailableError: the partitions' offsets could not be read within ``timeout_s``.
    """
    ends: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    client_config = {"logger": LIBRDKAFKA_LOG, **client_config}
    probe = Consumer({**client_config, "group.id": group_id, "isolation.level": "read_uncommitted"})
    try:
        starts: dict[int, int] = {}
        for p in partitions:
            low, high = _watermarks(probe, TopicPartition(topic, p), deadline)
            if high > low:
                ends[p], starts[p] = high, low
    finally:
        probe.close()
    if not ends:
        return [], []
    reader = Consumer(
        {
            **client_config,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    out: list[Message] = []
    try:
        reader.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        while ends and time.monotonic() < deadline:
            out.extend(m for m in reader.consume(num_messages=1000, timeout=0.2) if not m.error())
            for tp in reader.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        reader.close()
    return out, sorted(ends)


class KafkaIO:
    """Kafka clients for one detector instance."""

    def __init__(
        self,
        settings: DetectorSettings,
        on_assign: Callable[[list[int]], None] | None = None,
        on_revoke: Callable[[list[int]], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._s = settings
        # Set when the owner stops: retries of a transaction's commit or abort give up.
        self._stop = stop if stop is not None else threading.Event()
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._delivery_errors: list[str] = []
        self._lost_brokers = False  # the producer saw every broker down (_producer_error)
        self._held: tuple[int, ...] = ()  # kept by the rebalance callbacks
        self.exactly_once = settings.delivery == "exactly-once"
        self.transactional_id = f"{settings.group_id}-{settings.instance_id}"
        # Dead letters are cut to fit the producer's limit: one it refuses (MSG_SIZE_TOO_LARGE)
        # would abort its batch again after every restart.
        max_bytes = settings.kafka.client_config().get("message.max.bytes")
        self.dead_letter_max_bytes = (
            int(max_bytes) if max_bytes and max_bytes.isdigit() else DEFAULT_MESSAGE_MAX_BYTES
        )

    # -- clients --------------------------------------------------------------------------

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = new_client(
                AdminClient, {**self._s.kafka.client_config(), "logger": LIBRDKAFKA_LOG}
            )
        return self._admin

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self._create_consumer()
        return self._consumer

    def _create_consumer(self) -> Consumer:
        conf: dict[str, Any] = {
            "session.timeout.ms": 10000,
            "fetch.wait.max.ms": 10,
            "logger": LIBRDKAFKA_LOG,
            **self._s.kafka.client_config(),
            "group.id": self._s.group_id,
            "group.instance.id": self._s.instance_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self._s.auto_offset_reset,
            "isolation.level": "read_committed",
        }
        return new_client(Consumer, conf)

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._create_producer()
        return self._producer

    def _create_producer(self) -> Producer:
        conf: dict[str, Any] = {
            "linger.ms": 1,
            "acks": "all",
            "enable.idempotence": True,
            "logger": LIBRDKAFKA_LOG,
            # After a commit the coordinator answers the next transaction's
            # AddOffsetsToTxn/AddPartitionsToTxn with CONCURRENT_TRANSACTIONS until the
            # markers are written (a few ms); librdkafka retries after retry.backoff.ms,
            # 100 ms by default, which made every transaction take >= 100 ms (KAFKA-5477;
            # the Java client uses 20 ms here). Exponential but capped at 20 ms: uncapped, it
            # reached 100 ms and overshot the few ms the coordinator needs (publish p99
            # 138 -> 64 ms at 5k windows/s).
            **TXN_RETRY_BACKOFF,
            **self._s.kafka.client_config(),
        }
        if self.exactly_once:
            conf["transactional.id"] = self.transactional_id
            conf.setdefault("transaction.timeout.ms", 30000)
            conf["error_cb"] = self._producer_error
        return new_client(Producer, conf)

    def _producer_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (served by the producer's poll): after an outage of
        every broker, the producer is replaced before its next transaction (see
        :meth:`_send_offsets` for why)."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._lost_brokers = True

    # -- start-up -------------------------------------------------------------------------

    def wait_for_broker(self, timeout_s: float) -> None:
        """Block until the cluster answers, or raise :class:`KafkaUnavailableError`."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                meta = self.admin.list_topics(timeout=min(2.0, timeout_s))
                if meta.brokers:
                    return
            except KafkaException as exc:
                last = exc
            time.sleep(0.2)
        raise KafkaUnavailableError(
            f"no Kafka broker answered at {self._s.kafka.bootstrap_servers} within "
            f"{timeout_s:g} s" + (f": {last}" if last else "")
        )

    def partitions_of(self, topic: str) -> int:
        """Partition count of ``topic`` (0 if it does not exist)."""
        # Full metadata: asking for one missing topic by name can auto-create it.
        meta = self.admin.list_topics(timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return len(meta.partitions)

    def ensure_topics(self, timeout_s: float = 30.0) -> None:
        """Create the detector's topics if missing (setting ``topics.create_missing``)."""
        t = self._s.topics
        topics = self.admin.list_topics(timeout=10).topics
        existing = set(topics)
        rf = t.replication_factor
        windows_meta = topics.get(t.windows)
        windows_parts = len(windows_meta.partitions) if windows_meta else t.partitions
        wanted = {
            t.windows: NewTopic(t.windows, num_partitions=t.partitions, replication_factor=rf),
            t.alerts: NewTopic(t.alerts, num_partitions=t.partitions, replication_factor=rf),
            t.events: NewTopic(t.events, num_partitions=1, replication_factor=rf),
            t.dead_letters: NewTopic(
                t.dead_letters, num_partitions=t.partitions, replication_factor=rf
            ),
            t.state: NewTopic(
                t.state,
                num_partitions=windows_parts,
                replication_factor=rf,
                # Every batch writes the state of each source it touched: segments of
                # 16 MiB (not 1 GiB) let compaction keep what a restore reads small.
                config={
                    "cleanup.policy": "compact",
                    "min.compaction.lag.ms": "60000",
                    "segment.bytes": str(STATE_SEGMENT_BYTES),
                },
            ),
        }
        missing = [topic for name, topic in wanted.items() if name not in existing]
        if not missing:
            return
        for name, future in self.admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                log.info("topic_created", topic=name)
            except KafkaException as exc:
                if _error_of(exc).code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaUnavailableError(f"could not create topic {name}: {exc}") from exc

    def start(self, timeout_s: float) -> None:
        """Initialise transactions (fencing a crashed predecessor) and subscribe."""
        try:
            self._state_partitions()  # now, so that publishing never asks the broker for it
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot read the state topic's metadata: {exc}") from exc
        if self.exactly_once:
            try:
                self.producer.init_transactions(timeout_s)
            except KafkaException as exc:
                raise KafkaUnavailableError(f"init_transactions failed: {exc}") from exc
        self._subscribe()

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self._s.topics.windows], on_assign=self._assigned, on_revoke=self._revoked
        )

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing
        parts = sorted(tp.partition for tp in partitions)
        self._held = tuple(sorted(set(self._held) | set(parts)))
        log.info("partitions_assigned", partitions=parts)
        if self._on_assign is not None:
            self._on_assign(parts)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer, closing: its partitions were revoked already
        parts = sorted(tp.partition for tp in partitions)
        self._held = tuple(p for p in self._held if p not in parts)
        log.info("partitions_revoked", partitions=parts)
        if self._on_revoke is not None:
            self._on_revoke(parts)

    # -- the loop -------------------------------------------------------------------------

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
                    self._replace_consumer(err)
                    return []  # read again by the new consumer, from the committed offsets
                log.warning("consumer_error", error=str(err))
        return out

    def _replace_consumer(self, err: KafkaError) -> None:
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
        held = [TopicPartition(self._s.topics.windows, p) for p in self._held]
        if held and old is not None:
            self._revoked(old, held)
        self._consumer = None
        if old is not None:
            try:
                old.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer_close_failed", error=str(exc))
        self._subscribe()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def group_metadata(self) -> object | None:
        """The consumer's group metadata for :meth:`publish` (exactly-once), taken on the
        consuming thread (a rebalance callback included); None at-least-once, and
        :data:`NO_GROUP_METADATA` if the consumer cannot give it (lost: the batch is then
        refused by :meth:`publish` and replayed)."""
        if not self.exactly_once:
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
        if self.exactly_once or not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = _error_of(exc)
            raise PublishError(f"offset commit failed: {err}", not err.fatal()) from exc

    def publish(
        self,
        alerts: Iterable[tuple[bytes, bytes]],
        events: Iterable[tuple[bytes, bytes]],
        dead_letters: Iterable[DeadLetter],
        states: Iterable[tuple[str, int, bytes | None]],
        now_ms: int,
        offsets: list[TopicPartition],
        group_metadata: object | None = None,
    ) -> None:
        """Publish one batch's outputs, with its input offsets in the same transaction (EOS).

        Safe on any thread: it never touches the consumer (see the module docstring).

        Args:
            offsets: the input positions to commit (:func:`offsets_after` of the batch's
                records). At-least-once, :meth:`commit_offsets` commits them afterwards.
            group_metadata: :meth:`group_metadata`, needed with offsets when exactly-once.

        Raises:
            PublishError: the batch was not committed (its transaction is aborted);
                ``retriable`` tells if the caller may rewind and try again.
        """
        self._delivery_errors.clear()
        if not self.exactly_once:
            self._produce_outputs(alerts, events, dead_letters, states, now_ms)
            remaining = self.producer.flush(60)
            if remaining or self._delivery_errors:
                raise PublishError(
                    f"{remaining} undelivered, errors: {self._delivery_errors[:3]}", True
                )
            return
        if offsets and group_metadata is None:
            raise ValueError("an exactly-once publish needs the consumer's group metadata")
        if group_metadata is NO_GROUP_METADATA:
            raise PublishError("the consumer's group metadata is unavailable", True)
        self.producer.poll(0)  # serves _producer_error
        if self._lost_brokers:
            log.info("producer_reconnect", reason="every broker was down")
            self._replace_producer()
        p = self.producer
        try:
            p.begin_transaction()
        except KafkaException as exc:
            err = _error_of(exc)
            if not err.txn_requires_abort():
                raise PublishError(f"begin_transaction failed: {err}", False) from exc
            self._abort(exc)
        try:
            self._produce_outputs(alerts, events, dead_letters, states, now_ms)
            if offsets:
                self._send_offsets(p, offsets, group_metadata)
        except KafkaException as exc:
            self._abort(exc)
        self._commit()

    # librdkafka's send_offsets_to_transaction() can block for good, its timeout ignored,
    # once the producer's connection to the group coordinator was lost (a broker restart):
    # confluentinc/librdkafka#5456 and #5511; here after most restarts of the one broker.
    # Nothing revives that producer. So a producer that saw every broker go down is replaced
    # before its next transaction, and, for the cases that does not catch, a call still
    # blocked this long after its timeout gets its producer replaced. The call takes
    # milliseconds when the coordinator answers; one that times out is aborted and retried.
    send_offsets_timeout_s = 5.0
    stuck_grace_s = 3.0

    def _send_offsets(
        self, p: Producer, offsets: list[TopicPartition], group_metadata: object
    ) -> None:
        """send_offsets_to_transaction, bounded: on a helper thread, given up on when it has
        not returned ``stuck_grace_s`` after its timeout; the producer is then replaced.

        Raises:
            KafkaException: as send_offsets_to_transaction (the caller aborts).
            PublishError: the call is stuck; its transaction is aborted by the new producer
                (retriable).
        """
        outcome: list[BaseException | None] = []
        done = threading.Event()

        def call() -> None:  # holds ``p`` while blocked: it is never destroyed mid-call
            try:
                p.send_offsets_to_transaction(offsets, group_metadata, self.send_offsets_timeout_s)
                outcome.append(None)
            except BaseException as exc:  # handed to the publisher thread below
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=call, name="send-offsets", daemon=True).start()
        if not done.wait(self.send_offsets_timeout_s + self.stuck_grace_s):
            waited = self.send_offsets_timeout_s + self.stuck_grace_s
            log.warning("producer_stuck", call="send_offsets_to_transaction", waited_s=waited)
            self._replace_producer()
            raise PublishError(f"send_offsets_to_transaction stuck for {waited:g} s", True)
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def _replace_producer(self) -> None:
        """A new transactional producer in place of a stuck one, transactions initialised:
        that fences the old one (it can commit nothing more) and aborts its transaction.

        Raises:
            PublishError: init_transactions failed for good, or a stop came first.
        """
        # The old one is released on a thread of its own (this one keeps no reference):
        # destroying a client that librdkafka left waiting can block. A stuck call's thread
        # holds it too, until the call returns.
        box, self._producer = [self._producer], None
        threading.Thread(target=_release, args=(box,), name="old-producer", daemon=True).start()
        self._lost_brokers = False
        backoff = Backoff()
        while True:
            try:
                self.producer.init_transactions(30)
                log.info("producer_replaced", transactional_id=self.transactional_id)
                return
            except KafkaException as exc:
                err = _error_of(exc)
                if err.fatal():
                    raise PublishError(f"init_transactions failed: {err}", False) from exc
                delay = backoff.next_delay()
                log.warning("init_transactions_retry", error=str(err), retry_in_s=delay)
                if self._stop.wait(delay):
                    raise PublishError(f"stopped while initialising: {err}", False) from exc

    def _produce_outputs(
        self,
        alerts: Iterable[tuple[bytes, bytes]],
        events: Iterable[tuple[bytes, bytes]],
        dead_letters: Iterable[DeadLetter],
        states: Iterable[tuple[str, int, bytes | None]],
        now_ms: int,
    ) -> None:
        t = self._s.topics
        for key, payload in alerts:
            self._produce(t.alerts, key, payload, None)
        for key, payload in events:
            self._produce(t.events, key, payload, None)
        for dl in dead_letters:
            dl_key, dl_value, dl_headers = dead_letter_record(
                dl, now_ms, self.dead_letter_max_bytes
            )
            self._produce(t.dead_letters, dl_key, dl_value, list(dl_headers))
        n_state = max(1, self._state_partitions())
        for state_key, partition, state in states:
            self._produce(
                t.state,
                state_key.encode(),
                state,
                [(H_INPUT_PARTITION, str(partition).encode())],
                partition=partition % n_state,
            )

    def _commit(self) -> None:
        """Commit the open transaction, retrying while its outcome is unknown.

        Raises:
            PublishError: it failed and was aborted (retriable), or cannot be (fatal, or a
                stop came while its outcome was unknown).
        """
        backoff = Backoff()
        while True:
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as exc:
                err = _error_of(exc)
                if err.txn_requires_abort():
                    self._abort(exc)
                if err.fatal() or not err.retriable():
                    raise PublishError(f"commit failed: {err}", False) from exc
                delay = backoff.next_delay()
                log.warning("commit_retry", error=str(err), retry_in_s=delay)
                if self._stop.wait(delay):
                    raise PublishError(f"stopped while committing: {err}", False) from exc

    # An abort takes milliseconds when the coordinator answers. After a broker restart
    # librdkafka's can wait for messages it never delivers, up to their timeout and beyond.
    abort_timeout_s = 5.0

    def _abort(self, cause: KafkaException) -> None:
        """Abort the open transaction, then raise the batch's :class:`PublishError`:
        retriable unless the producer is fenced or fatal.

        An abort that fails (the coordinator unreachable, or librdkafka still waiting for
        messages it lost after a broker restart) gets the producer replaced instead: the new
        one's initialisation aborts the transaction on the coordinator. That is safe here
        because a transaction that needs aborting was never committed.
        """
        err = _error_of(cause)
        if err.fatal():
            if _fenced(err):
                raise PublishError(str(err), False) from cause
            # Fatal for this producer instance only (e.g. INVALID_TXN_STATE after a broker
            # restart): a new one aborts the transaction, and the batch is replayed from the
            # committed offsets.
            log.warning("producer_fatal", error=str(err), then="replacing the producer")
            self._replace_producer()
            raise PublishError(str(err), True) from cause
        try:
            self.producer.abort_transaction(self.abort_timeout_s)
        except KafkaException as exc:
            abort_err = _error_of(exc)
            if abort_err.fatal() and _fenced(abort_err):
                raise PublishError(f"{err}; abort failed: {abort_err}", False) from cause
            log.warning("abort_failed", error=str(abort_err), then="replacing the producer")
            self._replace_producer()
        raise PublishError(str(err), True) from cause

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes]] | None,
        partition: int = -1,
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    partition=partition,
                    on_delivery=self._delivered,
                )
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    _n_state: int | None = None

    def _state_partitions(self) -> int:
        if self._n_state is None:
            self._n_state = self.partitions_of(self._s.topics.state)
        return self._n_state

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
                if tp.offset < 0 and self._s.auto_offset_reset == "latest":
                    continue
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"cannot rewind to the committed offsets: {_error_of(exc)}"
            ) from exc

    def assigned_partitions(self) -> list[int]:
        """Input partitions this instance holds now (safe to call from any thread)."""
        return list(self._held)

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
        wanted = set(partitions)
        latest: dict[str, tuple[int, bytes]] = {}
        try:
            n_state = max(1, self._state_partitions())
            state_parts = sorted({p % n_state for p in partitions})
            records, incomplete = read_committed_to_end(
                self._s.kafka.client_config(),
                self._s.topics.state,
                state_parts,
                timeout_s,
                group_id=f"{self._s.group_id}-state-reader",
            )
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot read the state topic: {_error_of(exc)}") from exc
        if incomplete:
            raise KafkaUnavailableError(
                f"the state topic's partitions {incomplete} were not read to their end "
                f"within {timeout_s:g} s"
            )
        for msg in records:
            headers = dict(msg.headers() or [])
            try:
                input_partition = int(headers.get(H_INPUT_PARTITION, b"-1"))
            except ValueError:
                continue
            key = msg.key()
            if input_partition not in wanted or key is None:
                continue
            value = msg.value()
            if value is None:
                latest.pop(key.decode(), None)
            else:
                latest[key.decode()] = (input_partition, value)
        return latest

    def close(self) -> None:
        """Leave the group and flush the producer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
