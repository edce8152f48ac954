"""The latency load generator: the project's producer at fixed rates, phase after phase.

Run as its own process (``python -m bench.pacer ...``) so that it never holds the GIL of the
process that timestamps alerts. It is the producer as shipped: simulated ECG beats
(:func:`producer.simulate.make_batches`, anomalies injected at ``--anomaly-rate``), sent by
:func:`producer.stream.stream_to_kafka` through a :class:`producer.kafka_io.WindowProducer`
on a steady :class:`producer.pacing.Pacer` schedule, event time = wall clock at send (the
producer's ``--event-time send``). Phases run back to back on one stream; the JSON report
gives each phase's wall-clock span and the rate the producer achieved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from detector.kafka.config import KafkaSettings
from producer.kafka_io import WindowProducer
from producer.pacing import Pacer
from producer.simulate import make_batches
from producer.stream import stream_to_kafka

__all__ = ["main", "parse_phases"]


def parse_phases(text: str) -> list[tuple[int, float]]:
    """``"1000:3,5000:3"`` -> [(1000, 3.0), (5000, 3.0)] (windows/s, seconds).

    >>> parse_phases("200:1.5, 1000:2")
    [(200, 1.5), (1000, 2.0)]
    """
    out: list[tuple[int, float]] = []
    for part in text.split(","):
        rate_text, _, seconds_text = part.strip().partition(":")
        rate, seconds = int(rate_text), float(seconds_text)
        if rate <= 0 or seconds <= 0:
            raise ValueError(f"phase {part!r}: rate and seconds must be positive")
        out.append((rate, seconds))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Send the phases; return the report."""
    stream = make_batches(
        "ecg", None, seed=args.seed, anomaly_rate=args.anomaly_rate, n_sources=args.sources
    )
    kafka = KafkaSettings(
        bootstrap_servers=args.bootstrap, extra={"linger.ms": str(args.linger_ms)}
    )
    phases: list[dict[str, Any]] = []
    with WindowProducer(kafka, args.topic, "binary") as producer:
        producer.connect()
        for rate, seconds in parse_phases(args.phases):
            start_ms = time.time() * 1000
            report = stream_to_kafka(stream, producer, Pacer(rate), duration_s=seconds, quiet=True)
            phases.append(
                {
                    "rate": rate,
                    "seconds": report.seconds,
                    "sent": report.sent,
                    "anomalous": report.anomalous,
                    "achieved_per_s": report.rate,
                    "start_ms": start_ms,
                    "end_ms": start_ms + report.seconds * 1000,
                }
            )
        sent = producer.sent
        delivered = producer.delivered
    return {"phases": phases, "sent": sent, "delivered": delivered}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacer", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--phases", required=True, help="RATE:SECONDS,... back to back")
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--anomaly-rate", type=float, default=0.04)
    parser.add_argument("--linger-ms", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    result = run(args)
    args.report.write_text(json.dumps(result))
    return 0 if result["delivered"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
