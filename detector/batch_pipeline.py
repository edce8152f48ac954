"""A batch's one owner from records to commit: the scorer and publisher threads, the
batches in flight between them, and the rewind after a failed transaction.

Under backlog (full batches) the service's loop drives a three-stage pipeline, one batch per
stage: batch N+1 is scored on the scorer thread (TensorFlow releases the GIL) while batch N
is decided on the loop's thread and the next one read and decoded, and batch N-1's
transaction (produce, send offsets, commit: mostly waiting for the broker) runs on the
publisher thread. Decisions stay in stream order, and N is published only after N-1
committed, with its own offsets (:func:`~detector.kafka.consumer.offsets_after`), so outputs
and offsets stay paired batch by batch; if N-1 fails, what was decided or scored behind it is
dropped with the state it touched, and replayed from the committed offsets. Smaller batches
(no backlog) are scored and decided at once, and the next one is read and decided while
their transaction commits.

Every verb that waits for a commit returns False when the batch failed and the input was
rewound (the caller drops what it holds: it is read again), and raises
:class:`~detector.errors.PublishError` when retrying cannot help (fenced, fatal) or a stop
came first. Inside a rebalance callback (``recover=False``) a failure is kept for the loop,
which rewinds after the callback (:meth:`BatchPipeline.rewind_after_revoke`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaException, TopicPartition

from detector.batch_report import BatchObserver, BatchReport
from detector.core import (
    BatchDecider,
    BatchScores,
    DeadLetter,
    Decisions,
    InputRecord,
    Prepared,
    Scorer,
)
from detector.errors import KafkaUnavailableError, PublishError
from detector.events import encode_event
from detector.health import HealthTracker
from detector.kafka.consumer import offsets_after
from detector.kafka.io import KafkaEdge
from detector.metrics import DetectorMetrics

__all__ = ["RETRY_MAX_S", "BatchPipeline"]

log = structlog.get_logger()

# The longest wait between attempts to recover from a failed publish: short, so that the
# detector is back within seconds of a broker's return, however long it was away.
RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class _Publishing:
    """A decided batch whose outputs are being published on the publisher thread."""

    future: Future[tuple[float, float]]  # (seconds the publish took, perf_counter when done)
    prepared: Prepared | None  # None: alerts of the idle-episode sweep, no input records
    decisions: Decisions
    n_records: int
    started: float = 0.0  # perf_counter when its processing began
    score_s: float = 0.0
    decide_s: float = 0.0
    offsets: list[TopicPartition] = field(default_factory=list)  # its input offsets


@dataclass(frozen=True, slots=True)
class _Scoring:
    """A prepared batch whose model call runs on the scorer thread."""

    future: Future[tuple[BatchScores, float]]  # (scores, seconds the call took)
    prepared: Prepared
    records: list[InputRecord]
    started: float  # perf_counter when its processing began


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BatchPipeline:
    """Scores, decides, publishes and commits batches in stream order.

    Args:
        scorer: the model (called once per batch, on the scorer thread).
        core: the pure decider (not thread-safe: used on the loop's thread only).
        io: the Kafka edge (its consumer is touched on the loop's thread only).
        observers: told of every committed transaction, in commit order.
        health: told of every commit of input offsets.
        metrics: counts the retried batches.
        stop: ends the back-off between recovery attempts.
        take_up: after a rewind, restores the assigned partitions' committed state; False
            if a stop came first.
    """

    def __init__(
        self,
        scorer: Scorer,
        core: BatchDecider,
        io: KafkaEdge,
        observers: Sequence[BatchObserver],
        health: HealthTracker,
        metrics: DetectorMetrics,
        stop: threading.Event,
        take_up: Callable[[list[int]], bool],
    ) -> None:
        self.scorer = scorer
        self.core = core
        self.io = io
        self.observers = observers
        self._health = health
        self._metrics = metrics
        self._stop = stop
        self._take_up = take_up
        m = core.manifest
        self._no_scores = BatchScores.empty(m.window_size, m.n_channels)
        # TensorFlow releases the GIL while the model runs, so a batch is scored on this
        # thread while the loop decides the one before and reads the one after.
        self._scorer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._scoring: _Scoring | None = None
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher")
        self._publishing: _Publishing | None = None
        self._revoke_failure: PublishError | None = None  # rewound by the loop after it
        self._failed_attempts = 0

    # -- the loop's verbs -------------------------------------------------------------------

    def take(self, records: list[InputRecord]) -> bool:
        """Decode a consumed batch and start its model call, after deciding the batch being
        scored before it and handing that one to the publisher; False as
        :meth:`wait_for_commit` (this batch is then dropped: it is read again)."""
        started = time.perf_counter()
        prepared = self.core.prepare(records)
        scoring = _Scoring(
            self._scorer_thread.submit(self._score_timed, prepared), prepared, records, started
        )
        if not self.decide_and_publish_scored():  # the batch before this one
            return False
        self._scoring = scoring
        return True

    def decide_and_publish_scored(self, *, recover: bool = True) -> bool:
        """Decide the batch being scored (waiting for its scores) and hand it to the
        publisher once the batch before it committed; False as :meth:`wait_for_commit`."""
        scoring, self._scoring = self._scoring, None
        if scoring is None:
            return True
        result, score_s = scoring.future.result()
        t0 = time.perf_counter()
        decisions = self.core.decide(scoring.prepared, result, _now_ms())
        decide_s = time.perf_counter() - t0
        if not self.wait_for_commit(recover=recover):
            return False
        prepared = scoring.prepared
        offsets = offsets_after(scoring.records)
        future = self._start_publishing(decisions, prepared.dead_letters, offsets)
        self._publishing = _Publishing(
            future,
            prepared,
            decisions,
            len(scoring.records),
            scoring.started,
            score_s,
            decide_s,
            offsets,
        )
        return True

    def commit_all_in_hand(self, *, recover: bool = True) -> bool:
        """Decide, publish and commit everything in hand; False as :meth:`wait_for_commit`."""
        return self.decide_and_publish_scored(recover=recover) and self.wait_for_commit(
            recover=recover
        )

    def publish_alone(self, decisions: Decisions, *, recover: bool = True) -> bool:
        """Publish decisions that have no input records (the idle-episode sweep's alerts, the
        state no batch carried) in a transaction of their own and wait for its commit; every
        decided batch must be committed first. False as :meth:`wait_for_commit`."""
        self._publishing = _Publishing(
            self._start_publishing(decisions, [], []), None, decisions, 0
        )
        return self.wait_for_commit(recover=recover)

    def publish_unsaved_state(self, partitions: set[int] | None, *, recover: bool = True) -> bool:
        """Publish the threshold state no batch carried yet (``state_interval_s`` > 0) of
        these partitions (None: all), alone. False as :meth:`wait_for_commit`."""
        unsaved = self.core.unsaved_state(partitions)
        if not unsaved.threshold_states_due:
            return True
        ok = self.publish_alone(unsaved, recover=recover)
        if ok:
            log.info("state_written", sources=len(unsaved.threshold_states_due))
        return ok

    def wait_for_commit(self, *, recover: bool = True) -> bool:
        """Wait for the batch being published; False if it failed and the input was rewound
        (``recover=False``, inside a rebalance callback: the loop rewinds after it).

        Raises:
            PublishError: a failure that retrying cannot fix (fenced, fatal), or any failure
                while stopping.
        """
        publishing, self._publishing = self._publishing, None
        if publishing is None:
            return True
        try:
            publish_s, committed_at = publishing.future.result()
            self.io.commit_offsets(publishing.offsets)  # at-least-once: here, never there
        except PublishError as exc:
            if recover:
                self._rewind_and_restore(exc)
            else:
                self._revoke_failure = exc
            return False
        self._failed_attempts = 0
        if publishing.prepared is not None:  # input offsets (not a sweep's, a state write's)
            self._health.committed(time.monotonic())
        self._report_committed(publishing, publish_s, committed_at)
        return True

    def rewind_after_revoke(self) -> bool:
        """If a batch failed inside a rebalance callback, rewind and restore now (what was
        consumed since is read again); whether it did.

        Raises:
            PublishError: as :meth:`wait_for_commit`.
        """
        exc, self._revoke_failure = self._revoke_failure, None
        if exc is None:
            return False
        self._rewind_and_restore(exc)
        return True

    def close(self) -> None:
        """Let the model call and the transaction in hand finish, and stop both threads."""
        self._scorer_thread.shutdown(wait=True)
        self._publisher.shutdown(wait=True)  # its outcome is taken in on_revoke in close

    # -- the threads' work ------------------------------------------------------------------

    def _score_timed(self, prepared: Prepared) -> tuple[BatchScores, float]:
        """On the scorer thread: the batch's one model call, and how long it took."""
        if not prepared.windows:
            return self._no_scores, 0.0
        t0 = time.perf_counter()
        result = self.scorer.score(prepared.batch)
        return result, time.perf_counter() - t0

    def _start_publishing(
        self,
        decisions: Decisions,
        dead_letters: list[DeadLetter],
        offsets: list[TopicPartition],
    ) -> Future[tuple[float, float]]:
        """Serialise a batch's outputs here (the core is not thread-safe) and publish them on
        the publisher thread; the future's result is (seconds publishing took, perf_counter
        when it was committed).

        The consumer's group metadata is taken here, on the loop's thread (in a rebalance
        callback too): the publisher thread must never touch the consumer, which a callback
        holds while it waits for that thread.
        """
        now_ms = _now_ms()
        alert_msgs = [
            (a.source_id.encode(), a.model_dump_json().encode()) for a in decisions.alerts
        ]
        event_msgs = [(e.source_id.encode(), encode_event(e)) for e in decisions.events]
        states = self.core.state_records(decisions)
        group_metadata = self.io.group_metadata()
        return self._publisher.submit(
            self._publish_timed,
            alert_msgs,
            event_msgs,
            dead_letters,
            states,
            now_ms,
            offsets,
            group_metadata,
        )

    def _publish_timed(self, *args: Any) -> tuple[float, float]:
        """On the publisher thread: the edge's ``publish``, timed."""
        t0 = time.perf_counter()
        self.io.publish(*args)
        done = time.perf_counter()
        return done - t0, done

    def _rewind_and_restore(self, exc: PublishError) -> None:
        """After an aborted batch: back off, rewind to the committed offsets, reload state.

        A failed rewind (e.g. ``NOT_COORDINATOR`` while a restarted broker loads) is retried
        with back-off, and the restore retries itself, until they succeed.

        Raises:
            PublishError: ``exc``, if it is not retriable or a stop came first.
        """
        if not exc.retriable:
            raise exc
        self._scoring = None  # read again after the rewind
        self._metrics.publish_retries.inc()
        error: Exception = exc
        while True:
            self._failed_attempts += 1
            delay = min(RETRY_MAX_S, 0.5 * 2 ** min(self._failed_attempts, 6))
            log.warning(
                "publish_failed" if error is exc else "rewind_failed",
                error=str(error),
                retry_in_s=delay,
                attempt=self._failed_attempts,
            )
            if self._stop.wait(delay):
                raise exc
            # Outputs were aborted: replay from the committed offsets with the state as it
            # was committed (which also undoes what later, unpublished batches changed).
            try:
                self.io.rewind_to_committed()
            except (KafkaException, KafkaUnavailableError) as rewind_exc:
                error = rewind_exc
                continue
            parts = self.io.assigned_partitions()
            self.core.drop_partitions(set(parts))
            if not self._take_up(parts):
                raise exc
            return

    def _report_committed(
        self, publishing: _Publishing, publish_s: float, committed_at: float
    ) -> None:
        """Tell the observers of a committed transaction (``committed_at``: its perf_counter
        time; the loop may take in the outcome later, behind the next batch)."""
        decisions, prepared = publishing.decisions, publishing.prepared
        windows = prepared.windows if prepared is not None else []
        dead_letters = prepared.dead_letters if prepared is not None else []
        report = BatchReport(
            records=publishing.n_records,
            windows=len(windows),
            dead_letters=[(dl.reason, dl.detail) for dl in dead_letters],
            alerts=decisions.alerts,
            events=decisions.events,
            flagged=decisions.flagged,
            oldest_event_time_ms=min((w.event_time_ms for w in windows), default=None),
            open_episodes=self.core.tracker.open_count(),
            score_s=publishing.score_s,
            decide_s=publishing.decide_s,
            publish_s=publish_s,
            batch_s=committed_at - publishing.started if prepared is not None else 0.0,
            committed_at=committed_at,
        )
        for observer in self.observers:
            observer.batch_committed(report)
