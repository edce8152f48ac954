"""Produce-to-alert latency at fixed rates, exactly-once on and off.

Three processes: the detector (``python -m detector run``), the pacer (:mod:`bench.pacer`: the
project's producer sending binary windows at fixed rates, event time = its wall clock at
send), and this
one, whose :class:`AlertReader` thread reads the alerts topic with ``read_committed`` (what an
ops subscriber sees) and stamps each alert with its own wall clock on arrival. Same host,
same clock: latency = arrival - the triggering window's event time. ``event-time-ms`` is
truncated to the millisecond, so figures may overstate latency by up to 1 ms.

Every window could be an alert: episodes resolve after one normal window
(``resolve_after_windows=1``), so each flagged window after a normal one opens a new episode
and publishes one ``opened`` alert; anomalies are injected at ``ANOMALY_RATE`` (false
alarms at the target rate add more samples). Only ``opened`` alerts are counted, and
only those whose window was sent after the first ``WARM_FRACTION`` of its phase.

The floor beside it: :mod:`bench.null_detector` (the detector's Kafka loop and transactions
with no work) under the same pacer at the target's rates, exactly-once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.broker import BenchError, CommitWatcher, create_topics, wait_until
from bench.config import LIBRDKAFKA_BACKOFF, TXN_BACKOFF, create_output_topics
from bench.context import Context
from bench.data import SIM_SEED, SIM_SOURCES
from bench.detector_proc import (
    DetectorRun,
    detector_child,
    null_detector_child,
    wait_ready,
)
from bench.procs import Child
from bench.results import Figures, LatencySummary
from kafka_local.clients import produce_records

__all__ = [
    "ANOMALY_RATE",
    "FLOOR_DETECTOR",
    "FLOOR_LIBRDKAFKA",
    "TUNED_RATES",
    "WARM_FRACTION",
    "AlertReader",
    "FloorFigures",
    "LatencyRun",
    "PhaseLatency",
    "measure",
    "summarise_phases",
    "transaction_floor",
]

PARTITIONS = 4
FLOOR_LIBRDKAFKA = "exactly-once, retry.backoff.ms=100 (librdkafka's default)"
FLOOR_DETECTOR = "exactly-once, retry.backoff.ms=5, max 20 (the detector's)"
ANOMALY_RATE = 0.04
WARM_FRACTION = 0.2
WARMUP_PHASE = (1000, 2.0)
TUNED_RATES = (1_000, 5_000)


class PhaseLatency(Figures):
    """One fixed-rate phase: what the pacer sent, and the latencies of its ``opened`` alerts."""

    rate: int
    achieved_per_s: float | None
    seconds: float
    sent: int
    produce_to_alert: LatencySummary
    produce_to_decision: LatencySummary


class LatencyRun(Figures):
    """One detector (or null detector) process under the pacer's phases."""

    delivery: str
    null: bool
    max_wait_s: float | None
    options: dict[str, str]
    sent: int
    alerts_read: int
    reader_errors: list[str]
    drain_after_last_send_s: float
    detector_cpu_cores: float | None
    phases: list[PhaseLatency]

    def phase(self, rate: int) -> PhaseLatency | None:
        """The phase at ``rate`` windows/s, if measured."""
        return next((p for p in self.phases if p.rate == rate), None)


class FloorFigures(Figures):
    """The bare read-process-write loop: per iteration, and (exactly-once) send_offsets."""

    batch: LatencySummary
    send_offsets: LatencySummary | None = None


class AlertReader:
    """Reads an alerts topic on a thread, keeping (arrival wall-clock ms, raw value)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
                "enable.partition.eof": False,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.received: list[tuple[float, bytes]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alert-reader", daemon=True)

    def _loop(self) -> None:
        # poll() returns as soon as one message is there; consume(n, timeout) would wait for
        # n messages or the timeout, and add that wait to every latency.
        while not self._stop.is_set():
            first = self._consumer.poll(0.05)
            if first is None:
                continue
            arrived = time.time() * 1000
            for msg in [first, *self._consumer.consume(num_messages=1000, timeout=0)]:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        self.errors.append(str(err))
                    continue
                self.received.append((arrived, msg.value() or b""))

    def start(self) -> AlertReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def alerts(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival ms, alert document) of everything read."""
        return [(t, orjson.loads(v)) for t, v in self.received]


def summarise_phases(
    alerts: list[tuple[float, dict[str, Any]]],
    phases: list[dict[str, Any]],
    warm_fraction: float = WARM_FRACTION,
) -> list[PhaseLatency]:
    """Latency percentiles of ``opened`` alerts per pacer phase (by the window's event time).

    Args:
        alerts: (arrival wall-clock ms, alert) pairs.
        phases: the pacer's phases (``rate``, ``start_ms``, ``end_ms``, ``achieved_per_s``).
        warm_fraction: leading share of each phase left out (the detector settling).
    """
    out: list[PhaseLatency] = []
    for phase in phases:
        lo = phase["start_ms"] + warm_fraction * (phase["end_ms"] - phase["start_ms"])
        hi = phase["end_ms"]
        total: list[float] = []
        to_decision: list[float] = []
        for arrived, alert in alerts:
            if alert.get("state") != "opened":
                continue
            event_ms = alert["event_time_ms"]
            if lo <= event_ms <= hi:
                total.append(arrived - event_ms)
                to_decision.append(alert["detected_at_ms"] - event_ms)
        out.append(
            PhaseLatency(
                rate=phase["rate"],
                achieved_per_s=phase["achieved_per_s"],
                seconds=phase["seconds"],
                sent=phase["sent"],
                produce_to_alert=LatencySummary.of(total),
                produce_to_decision=LatencySummary.of(to_decision),
            )
        )
    return out


def measure(
    ctx: Context,
    delivery: str,
    rates: tuple[int, ...],
    phase_s: float,
    max_wait_s: float | None = None,
    options: dict[str, str] | None = None,
    label: str = "",
    null: bool = False,
) -> LatencyRun:
    """One detector (or, ``null``, :mod:`bench.null_detector`) under the pacer's phases."""
    workdir = ctx.workdir
    short = ("eos" if delivery == "exactly-once" else "alo") + (f"-{label}" if label else "")
    names = DetectorRun(ctx.name(f"lat-{short}-windows"), ctx.name(f"lat-{short}"), PARTITIONS)
    create_topics(ctx.bootstrap, {names.windows_topic: PARTITIONS})
    create_output_topics(ctx.bootstrap, names.run, PARTITIONS)
    if null:
        detector = null_detector_child(ctx.bootstrap, names, workdir, delivery=delivery)
    else:
        detector = detector_child(
            ctx.bootstrap,
            ctx.sim_bundle,
            names,
            workdir,
            delivery=delivery,
            max_wait_s=max_wait_s,
            options=options,
            env={"DETECTOR_LIFECYCLE__RESOLVE_AFTER_WINDOWS": "1"},
        )
    phases = [WARMUP_PHASE, *((rate, phase_s) for rate in rates)]
    report_path = workdir / f"{names.run}-pacer.json"
    pacer = Child(
        "bench.pacer",
        [
            "--bootstrap",
            ctx.bootstrap,
            "--topic",
            names.windows_topic,
            "--phases",
            ",".join(f"{r}:{s}" for r, s in phases),
            "--sources",
            str(SIM_SOURCES),
            "--seed",
            str(SIM_SEED),
            "--anomaly-rate",
            str(ANOMALY_RATE),
            "--report",
            str(report_path),
        ],
        workdir / f"{names.run}-pacer.log",
    )
    with detector:
        wait_ready([detector], 120)
        reader = AlertReader(ctx.bootstrap, names.alerts_topic, PARTITIONS).start()
        watcher = CommitWatcher(ctx.bootstrap, names.group, names.windows_topic, PARTITIONS)
        try:
            cpu0 = detector.cpu_seconds() or 0.0
            t0 = time.monotonic()
            with pacer:
                budget = sum(s for _, s in phases) + 60
                wait_until(lambda: not pacer.alive(), budget, "the pacer to finish")
            if pacer.proc is None or pacer.proc.returncode != 0:
                raise BenchError(f"pacer failed:\n{pacer.log_tail()}")
            report = json.loads(report_path.read_text())
            sent = int(report["sent"])
            watcher.wait(sent, 120, f"{sent} windows committed ({delivery})")
            drained_after_s = time.monotonic() - t0 - sum(p["seconds"] for p in report["phases"])
            cpu1 = detector.cpu_seconds() or 0.0
            wall = time.monotonic() - t0
            time.sleep(0.5)  # the last transaction's alerts
        finally:
            reader.stop()
            watcher.close()
    alerts = reader.alerts()
    measured = report["phases"][1:]  # the first is the warm-up
    return LatencyRun(
        delivery=delivery,
        null=null,
        max_wait_s=max_wait_s,
        options=options or {},
        sent=sent,
        alerts_read=len(alerts),
        reader_errors=reader.errors[:5],
        drain_after_last_send_s=drained_after_s,
        detector_cpu_cores=(cpu1 - cpu0) / wall if wall > 0 else None,
        phases=summarise_phases(alerts, measured),
    )


def transaction_floor(bootstrap: str, topic: str, n: int) -> dict[str, FloorFigures]:
    """The bare cost of one exactly-once batch on this broker, and of its at-least-once twin.

    A read-process-write loop with nothing to process: consume one record, produce one,
    send the offsets, commit (exactly-once, with librdkafka's default ``retry.backoff.ms`` and
    with the detector's, :data:`~bench.config.TXN_BACKOFF`); or produce, flush, commit offsets
    synchronously (at-least-once). The p99 of this loop is a floor no detector batch can go under.
    """
    create_topics(bootstrap, {topic: 1, f"{topic}-out": 1})
    produce_records(bootstrap, topic, ((str(i).encode(), b"x", None) for i in range(3 * n)))
    out: dict[str, FloorFigures] = {}
    for mode, extra in (
        (FLOOR_LIBRDKAFKA, LIBRDKAFKA_BACKOFF),
        (FLOOR_DETECTOR, TXN_BACKOFF),
        ("at-least-once", {}),
    ):
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}-{len(out)}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "linger.ms": 1,
            "log_level": 3,
            **extra,
        }
        eos = mode.startswith("exactly-once")
        if eos:
            conf["transactional.id"] = f"{topic}-txn-{len(out)}"
        producer = Producer(conf)
        if eos:
            producer.init_transactions(30)
        consumer.subscribe([topic])
        totals: list[float] = []
        offsets: list[float] = []
        done = 0
        deadline = time.monotonic() + 120
        try:
            while done < n and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error() is not None:
                    continue
                t0 = time.perf_counter()
                if eos:
                    producer.begin_transaction()
                producer.produce(f"{topic}-out", value=b"alert")
                positions = consumer.position(consumer.assignment())
                if eos:
                    t1 = time.perf_counter()
                    producer.send_offsets_to_transaction(
                        positions, consumer.consumer_group_metadata(), 30
                    )
                    offsets.append((time.perf_counter() - t1) * 1000)
                    producer.commit_transaction(30)
                else:
                    producer.flush(30)
                    consumer.commit(offsets=positions, asynchronous=False)
                totals.append((time.perf_counter() - t0) * 1000)
                done += 1
        finally:
            consumer.close()
            producer.flush(10)
        out[mode] = FloorFigures(
            batch=LatencySummary.of(totals),
            send_offsets=LatencySummary.of(offsets) if offsets else None,
        )
    return out
