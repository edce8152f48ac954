"""The latency floor: the detector's Kafka loop doing no work (``python -m bench.null_detector``).

The same clients as ``python -m detector run`` (:class:`detector.kafka.io.KafkaIO`: its
read_committed consumer, its transactional producer, its ``consume`` and ``publish``), the
same batching (what is ready, up to ``max_batch``, else a wait of up to ``max_wait_s``) and
one transaction per batch with the batch's offsets; but no decode, no model, no decisions.
Every window its producer labelled anomalous (header ``label`` = 1) becomes an ``opened``
alert carrying the window's event time, so the latency benchmark reads and times it like
the detector's. Its produce-to-alert latency at a given rate is what any detector pays on
this machine and broker before doing any work: the floor under the latency target.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

import orjson

from bench.config import detector_settings
from detector.kafka.consumer import offsets_after
from detector.kafka.io import KafkaIO
from detector.messages import H_EVENT_TIME_MS, H_LABEL, header_value
from detector.metrics import DetectorMetrics, HealthServer

__all__ = ["main"]


def _alert(event_time: str | None, now_ms: int) -> bytes:
    return orjson.dumps(
        {"state": "opened", "event_time_ms": int(event_time or 0), "detected_at_ms": now_ms}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.null_detector", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--windows-topic", required=True)
    parser.add_argument("--run", required=True, help="names the group and output topics")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--delivery", default="exactly-once")
    parser.add_argument("--metrics-port", type=int, required=True, help="serves /readyz")
    args = parser.parse_args(argv)
    settings = detector_settings(
        args.bootstrap,
        "unused",
        args.windows_topic,
        args.run,
        partitions=args.partitions,
        delivery=args.delivery,
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    health = HealthServer(DetectorMetrics(), "127.0.0.1", args.metrics_port)
    health.start()

    def assigned(_partitions: list[int]) -> None:
        health.is_ready = True

    io = KafkaIO(settings, on_assign=assigned)
    try:
        io.wait_for_broker(60)
        io.start(60)
        while not stop.is_set():
            health.beat()
            records = io.consume(settings.max_batch, settings.max_wait_s)
            if not records:
                continue
            now_ms = time.time_ns() // 1_000_000
            alerts = [
                (r.key or b"", _alert(header_value(r.headers, H_EVENT_TIME_MS), now_ms))
                for r in records
                if header_value(r.headers, H_LABEL) == "1"
            ]
            offsets = offsets_after(records)
            io.publish(alerts, [], [], [], now_ms, offsets, io.group_metadata())
            io.commit_offsets(offsets)
    finally:
        io.close()
        health.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
