"""The detector's transactional publisher: one batch's outputs and offsets, exactly once.

Publishing a batch (exactly-once)::

    begin_transaction -> produce alerts, events, dead letters, state snapshots
    -> send_offsets_to_transaction(consumer positions) -> commit_transaction

so a read_committed reader sees a batch's outputs exactly when its input offsets are
committed. At-least-once: produce, flush, and the consumer commits the offsets afterwards.

:meth:`TransactionalPublisher.publish` runs on a publisher thread and never touches the
consumer (see :mod:`detector.kafka.consumer`): the group metadata is passed in.

Errors: a transaction is always left resolved. A retriable failure of its commit is retried
(its outcome is not known until a commit call returns, and librdkafka allows no abort then);
any other failure inside it aborts it (the abort retried until it goes through), and the
batch's :class:`~detector.errors.PublishError` says whether rewinding and trying again may
succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from detector.core import DeadLetter
from detector.dead_letters import DEFAULT_MESSAGE_MAX_BYTES, dead_letter_record
from detector.errors import PublishError
from detector.kafka.config import new_client
from detector.kafka.consumer import NO_GROUP_METADATA
from detector.kafka.errors import error_of, is_fenced
from detector.kafka.state import H_INPUT_PARTITION
from detector.log import LIBRDKAFKA_LOG
from detector.retry import Backoff
from detector.settings import DetectorSettings

__all__ = ["TXN_RETRY_BACKOFF", "TransactionalPublisher"]

log = structlog.get_logger()

# The transactional producer's retry backoff (see TransactionalPublisher.producer for why).
TXN_RETRY_BACKOFF = {"retry.backoff.ms": 5, "retry.backoff.max.ms": 20}


def _release(box: list[Any]) -> None:
    """Take a replaced client out of ``box`` and drop it, here."""
    box.clear()


class TransactionalPublisher:
    """The producer of one detector instance and the batches it publishes.

    Args:
        settings: the detector's settings (client options, topics, group, instance).
        state_partitions: the state topic's partition count (asked once, at start-up).
        stop: set when the owner stops: retries of a commit or an abort give up.
        create_client: ``create_client(Producer, conf)`` makes the client
            (:func:`detector.kafka.config.new_client`; unit tests pass fakes).
    """

    # librdkafka's send_offsets_to_transaction() can block for good, its timeout ignored,
    # once the producer's connection to the group coordinator was lost (a broker restart):
    # confluentinc/librdkafka#5456 and #5511; here after most restarts of the one broker.
    # Nothing revives that producer. So a producer that saw every broker go down is replaced
    # before its next transaction, and, for the cases that does not catch, a call still
    # blocked this long after its timeout gets its producer replaced. The call takes
    # milliseconds when the coordinator answers; one that times out is aborted and retried.
    send_offsets_timeout_s = 5.0
    stuck_grace_s = 3.0
    # An abort takes milliseconds when the coordinator answers. After a broker restart
    # librdkafka's can wait for messages it never delivers, up to their timeout and beyond.
    abort_timeout_s = 5.0

    def __init__(
        self,
        settings: DetectorSettings,
        state_partitions: Callable[[], int],
        stop: threading.Event,
        create_client: Callable[..., Any] = new_client,
    ) -> None:
        self._settings = settings
        self._state_partitions = state_partitions
        self._stop = stop
        self._create_client = create_client
        self._producer: Producer | None = None
        self._delivery_errors: list[str] = []
        self._lost_brokers = False  # the producer saw every broker down (_producer_error)
        self.exactly_once = settings.delivery == "exactly-once"
        self.transactional_id = f"{settings.group_id}-{settings.instance_id}"
        # Dead letters are cut to fit the producer's limit: one it refuses (MSG_SIZE_TOO_LARGE)
        # would abort its batch again after every restart.
        max_bytes = settings.kafka.client_config().get("message.max.bytes")
        self.dead_letter_max_bytes = (
            int(max_bytes) if max_bytes and max_bytes.isdigit() else DEFAULT_MESSAGE_MAX_BYTES
        )

    @property
    def producer(self) -> Producer:
        """The client, created on first use."""
        if self._producer is None:
            conf: dict[str, Any] = {
                "linger.ms": 1,
                "acks": "all",
                "enable.idempotence": True,
                "logger": LIBRDKAFKA_LOG,
                # After a commit the coordinator answers the next transaction's
                # AddOffsetsToTxn/AddPartitionsToTxn with CONCURRENT_TRANSACTIONS until the
                # markers are written (a few ms); librdkafka retries after retry.backoff.ms,
                # 100 ms by default, which made every transaction take >= 100 ms (KAFKA-5477;
                # the Java client uses 20 ms here). Exponential but capped at 20 ms:
                # uncapped, it reached 100 ms and overshot the few ms the coordinator needs
                # (publish p99 138 -> 64 ms at 5k windows/s).
                **TXN_RETRY_BACKOFF,
                **self._settings.kafka.client_config(),
            }
            if self.exactly_once:
                conf["transactional.id"] = self.transactional_id
                conf.setdefault("transaction.timeout.ms", 30000)
                conf["error_cb"] = self._producer_error
            self._producer = self._create_client(Producer, conf)
        return self._producer

    def _producer_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (served by the producer's poll): after an outage of
        every broker, the producer is replaced before its next transaction (see
        :meth:`_send_offsets_bounded` for why)."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._lost_brokers = True

    def init_transactions(self, timeout_s: float) -> None:
        """Exactly-once: fence a crashed predecessor with the same transactional id.

        Raises:
            KafkaException: as librdkafka's ``init_transactions``.
        """
        if self.exactly_once:
            self.producer.init_transactions(timeout_s)

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

        Safe on any thread: it never touches the consumer.

        Args:
            offsets: the input positions to commit (:func:`~detector.kafka.consumer.offsets_after`
                of the batch's records). At-least-once, the consumer commits them afterwards.
            group_metadata: the consumer's, needed with offsets when exactly-once.

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
            err = error_of(exc)
            if not err.txn_requires_abort():
                raise PublishError(f"begin_transaction failed: {err}", False) from exc
            self._abort_and_raise(exc)
        try:
            self._produce_outputs(alerts, events, dead_letters, states, now_ms)
            if offsets:
                self._send_offsets_bounded(p, offsets, group_metadata)
        except KafkaException as exc:
            self._abort_and_raise(exc)
        self._commit_retrying()

    def _send_offsets_bounded(
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
                err = error_of(exc)
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
        t = self._settings.topics
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

    def _commit_retrying(self) -> None:
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
                err = error_of(exc)
                if err.txn_requires_abort():
                    self._abort_and_raise(exc)
                if err.fatal() or not err.retriable():
                    raise PublishError(f"commit failed: {err}", False) from exc
                delay = backoff.next_delay()
                log.warning("commit_retry", error=str(err), retry_in_s=delay)
                if self._stop.wait(delay):
                    raise PublishError(f"stopped while committing: {err}", False) from exc

    def _abort_and_raise(self, cause: KafkaException) -> NoReturn:
        """Abort the open transaction, then raise the batch's :class:`PublishError`:
        retriable unless the producer is fenced or fatal.

        An abort that fails (the coordinator unreachable, or librdkafka still waiting for
        messages it lost after a broker restart) gets the producer replaced instead: the new
        one's initialisation aborts the transaction on the coordinator. That is safe here
        because a transaction that needs aborting was never committed.
        """
        err = error_of(cause)
        if err.fatal():
            if is_fenced(err):
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
            abort_err = error_of(exc)
            if abort_err.fatal() and is_fenced(abort_err):
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

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def close(self) -> None:
        """Flush what is queued (at-least-once output) and drop the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(10)
