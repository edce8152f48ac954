"""The service loop's pipelined publishing, against a scripted Kafka edge.

The loop publishes batch N on its publisher thread while it decides batch N+1. These tests
pin what that must never change: every batch commits its own offsets with its own outputs, and
when a publish fails the later, already-decided batch is dropped and both are replayed from the
committed offsets with the committed state, so the outputs equal an uninterrupted run's.

(A unit test of the loop's bookkeeping: the Kafka edge is a script here. Everything that
touches a broker is covered against a real one in tests/integration.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pytest
from confluent_kafka import TopicPartition

from detector.batch_report import BatchReport
from detector.core import DeadLetter, InputRecord
from detector.errors import PublishError
from detector.kafka.consumer import offsets_after
from detector.service import build_service
from detector.settings import DetectorSettings
from tests.unit.helpers import MeanScorer, make_manifest, record
from tests.unit.kafka_fakes import InstantStop

BATCH = 3


@dataclass
class ScriptedKafka:
    """One input partition, a transactional sink, a compacted state store.

    ``fail_publish`` lists the publish calls (1-based) that abort, as a broker would on a
    retriable error; an aborted publish leaves no output, offset or state behind.
    """

    records: list[InputRecord]
    fail_publish: set[int] = field(default_factory=set)
    on_assign: Callable[[list[int]], None] | None = None
    position: int = 0
    committed: int = 0
    calls: int = 0
    alerts: list[dict[str, object]] = field(default_factory=list)
    offsets: list[list[tuple[int, int]]] = field(default_factory=list)
    state: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    _busy: threading.Lock = field(default_factory=threading.Lock)

    def edge(
        self,
        settings: DetectorSettings,
        *,
        on_assign: Callable[[list[int]], None] | None = None,
        **_callbacks: object,
    ) -> ScriptedKafka:
        """As the service's edge factory: this script is the edge, and partition 0 is
        assigned (through the service's ``on_assign``) inside the first ``consume``, as a
        real consumer's rebalance callback runs."""
        self.on_assign = on_assign
        return self

    def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
        if self.on_assign is not None:
            assign, self.on_assign = self.on_assign, None
            assign([0])
        batch = self.records[self.position : self.position + min(BATCH, max_records)]
        self.position += len(batch)
        return batch

    def publish(
        self,
        alerts: list[tuple[bytes, bytes]],
        events: list[tuple[bytes, bytes]],
        dead_letters: list[DeadLetter],
        states: list[tuple[str, int, bytes | None]],
        now_ms: int,
        offsets: list[TopicPartition] | None = None,
        group_metadata: object | None = None,
    ) -> None:
        with self._busy:
            self.calls += 1
            if self.calls in self.fail_publish:
                raise PublishError("scripted abort", retriable=True)
            self.alerts.extend(orjson.loads(payload) for _key, payload in alerts)
            for key, partition, value in states:
                if value is None:
                    self.state.pop(key, None)
                else:
                    self.state[key] = (partition, value)
            assert offsets is not None, "a pipelined publish must carry its own offsets"
            self.offsets.append([(tp.partition, tp.offset) for tp in offsets])
            for tp in offsets:
                self.committed = max(self.committed, tp.offset)

    def group_metadata(self) -> object | None:
        return None

    def commit_offsets(self, offsets: list[TopicPartition]) -> None:
        pass  # exactly-once: the offsets went with the transaction

    def rewind_to_committed(self) -> None:
        self.position = self.committed

    def assigned_partitions(self) -> list[int]:
        return [0]

    def read_state(self, partitions: list[int]) -> dict[str, tuple[int, bytes]]:
        return dict(self.state)

    def lag(self) -> dict[int, int]:
        return {0: len(self.records) - self.position}

    def wait_for_broker(self, timeout_s: float) -> None:
        pass

    def ensure_topics(self) -> None:
        pass

    def start(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def _levels() -> list[float]:
    # three episodes of anomalous windows between normal ones, over several sources
    # ends inside an episode, so an open episode's state is compared too
    return (
        [0.1, 0.1, 3.0, 3.0, 0.1, 0.1, 0.1, 0.1, 2.0, 0.1, 0.1, 0.1, 0.1, 4.0, 4.0, 4.0]
        + [0.1] * 6
        + [5.0, 5.0]
    )


# max_batch = BATCH: every batch is full (backlog), so it is scored while the one before is
# decided; BATCH + 1: no backlog, each batch is decided at once and the next one is read and
# decided while it commits. Both overlap a batch's publish with the next batch.
MAX_BATCHES = pytest.mark.parametrize("max_batch", [BATCH, BATCH + 1], ids=["full", "partial"])


def _run(
    fail_publish: set[int],
    max_batch: int = BATCH,
    kafka_type: type[ScriptedKafka] = ScriptedKafka,
    observer: Reports | None = None,
    **extra: object,
) -> ScriptedKafka:
    manifest = make_manifest()
    settings = DetectorSettings(
        _env_file=None,  # type: ignore[call-arg]
        bundle="unused",
        threshold={"method": "static"},
        lifecycle={"resolve_after_windows": 2},
        stop_when_idle_s=0.05,
        max_wait_s=0.001,
        max_batch=max_batch,
        **extra,
    )
    records = [record(i, level) for i, level in enumerate(_levels())]
    kafka = kafka_type(records, fail_publish)
    service = build_service(
        settings, MeanScorer(), manifest, io=kafka.edge, observer=observer, stop=InstantStop()
    )
    assert service.run() == 0
    return kafka


def _episodes(kafka: ScriptedKafka) -> dict[str, object]:
    """Episode snapshots without their wall-clock arrival time (which differs run to run)."""

    def drop_arrival(node: object) -> object:
        if isinstance(node, dict):
            return {k: drop_arrival(v) for k, v in node.items() if k != "last_arrival_ms"}
        return node

    return {
        key: drop_arrival(orjson.loads(value))
        for key, (_partition, value) in kafka.state.items()
        if key.startswith("episode/")
    }


def _ids(kafka: ScriptedKafka) -> list[tuple[object, object]]:
    return [(a["alert_id"], a["state"]) for a in kafka.alerts]


@MAX_BATCHES
def test_each_batch_commits_its_own_offsets_in_order(max_batch: int) -> None:
    kafka = _run(set(), max_batch)
    n = len(_levels())
    assert kafka.offsets == [[(0, end)] for end in range(BATCH, n + 1, BATCH)]
    assert kafka.committed == n
    assert {state for _id, state in _ids(kafka)} == {"opened", "resolved"}


@MAX_BATCHES
def test_a_failed_publish_drops_the_next_batch_and_replays_both_from_the_committed_offsets(
    max_batch: int,
) -> None:
    clean = _run(set(), max_batch)
    # The 2nd publish (offsets 3-5, opening an episode) aborts while the 3rd batch is already
    # decided; the 5th aborts too, after a resolve was decided in memory.
    failed = _run({2, 5}, max_batch)
    assert failed.calls == clean.calls + 2
    assert _ids(failed) == _ids(clean)  # each alert exactly once, same ids, same order
    assert len(set(_ids(failed))) == len(_ids(failed))
    assert failed.committed == clean.committed == len(_levels())
    # Every batch carries the state it changed, so the state comes back exactly (thresholds
    # byte for byte; episodes but for their wall-clock arrival time).
    assert failed.state.keys() == clean.state.keys()
    thresholds = {k: v for k, v in clean.state.items() if k.startswith("threshold/")}
    assert thresholds
    assert {k: failed.state[k] for k in thresholds} == thresholds
    episodes = _episodes(clean)
    assert episodes
    assert _episodes(failed) == episodes


def test_with_a_state_interval_the_stop_writes_the_state_no_batch_carried() -> None:
    exact = _run(set())
    # An interval longer than the run: batches write threshold state only when it is new.
    lazy = _run(set(), state_interval_s=3600)
    assert lazy.calls > exact.calls  # the stop's own state-only transaction
    thresholds = {k: v for k, v in exact.state.items() if k.startswith("threshold/")}
    assert {k: lazy.state[k] for k in thresholds} == thresholds


def test_offsets_after_are_the_last_offset_plus_one_per_partition() -> None:
    records = [record(4, 0.1), record(2, 0.1), record(7, 0.1, partition=1), record(6, 0.1)]
    got = sorted((tp.partition, tp.offset) for tp in offsets_after(records))
    assert got == [(0, 7), (1, 8)]


@MAX_BATCHES
def test_the_next_batch_is_read_while_a_batch_commits(max_batch: int) -> None:
    """The first publish holds its commit until the loop reads again (bounded): it must not
    wait for the commit, with or without a backlog."""
    read_again = threading.Event()
    overlapped: list[bool] = []

    class SlowFirstCommit(ScriptedKafka):
        def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
            if self.calls == 0 and self.position > 0:
                read_again.set()
            return super().consume(max_records, timeout_s)

        def publish(self, *args: object, **kwargs: object) -> None:
            if self.calls == 0:
                overlapped.append(read_again.wait(5.0))
            super().publish(*args, **kwargs)  # type: ignore[arg-type]

    kafka = _run(set(), max_batch, kafka_type=SlowFirstCommit)
    assert overlapped == [True]
    assert kafka.committed == len(_levels())


def test_batch_time_runs_to_the_commit_not_to_when_the_loop_takes_it_in() -> None:
    """The loop takes a commit's outcome in behind the next batch; the batch's time must
    still end when the publisher thread committed it. Here the loop is slow to read the
    next batch, so it takes the first commit in well after it happened."""
    late_s = 0.2
    marks: dict[str, float] = {}
    first_commit = threading.Event()

    class SlowNextRead(ScriptedKafka):
        def consume(self, max_records: int, timeout_s: float) -> list[InputRecord]:
            if self.position > 0 and "late" not in marks:  # the first batch is publishing
                assert first_commit.wait(5.0), "the first batch did not commit"
                time.sleep(late_s)  # the loop is busy: the commit waits to be taken in
                marks["late"] = time.perf_counter()
            batch = super().consume(max_records, timeout_s)
            if batch and "first_read" not in marks:
                marks["first_read"] = time.perf_counter()
            return batch

        def publish(self, *args: object, **kwargs: object) -> None:
            super().publish(*args, **kwargs)  # type: ignore[arg-type]
            marks.setdefault("committed", time.perf_counter())
            first_commit.set()

    reports = Reports()
    _run(set(), BATCH + 1, kafka_type=SlowNextRead, observer=reports)
    first, taken_in = reports.seen[0]
    assert first.has_input and first.records == BATCH
    assert taken_in >= marks["late"] >= marks["committed"] + late_s
    assert first.committed_at == pytest.approx(marks["committed"], abs=0.05)
    # Timed to its commit: not to when the loop took it in (that is >= late_s later).
    assert 0 < first.batch_s <= first.committed_at - marks["first_read"]


@dataclass
class Reports:
    """An observer keeping each report with the perf_counter time it was told of it."""

    seen: list[tuple[BatchReport, float]] = field(default_factory=list)

    def batch_committed(self, report: BatchReport) -> None:
        self.seen.append((report, time.perf_counter()))
