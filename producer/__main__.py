"""``producer``: simulated or replayed windows with known truth, to Kafka or a file.

Examples::

    producer simulate --kind ecg --sources 5 --rate 500 --count 10000 --anomaly-rate 0.02 \\
        --drift gradual --encoding binary --topic windows --bootstrap-servers 127.0.0.1:9092
    producer simulate --kind sensor --channels 4 --window 64 --count 2000 --out normal.npz
    producer replay --file ecg5000.csv --format ecg5000 --rate 0 --topic windows
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from detector.kafka_config import parse_extra_options
from producer.drift import DRIFT_KINDS, DRIFT_TARGETS, DriftScenario
from producer.errors import ProducerError
from producer.filesink import write_jsonl, write_npz
from producer.kafka_io import WindowProducer
from producer.pacing import Pacer
from producer.replay import load_replay
from producer.settings import ProducerSettings
from producer.simulate import make_arrays, make_batches
from producer.stream import stream_to_kafka
from producer.windows import WindowBatch

__all__ = ["main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="windows per second (0 = as fast as possible; default 100)",
    )
    p.add_argument("--bursty", action="store_true", help="alternate fast and slow half-seconds")
    p.add_argument("--count", type=int, help="stop after this many windows")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--encoding", choices=["json", "binary"], help="wire format (default json)")
    p.add_argument("--topic", help="Kafka topic (default windows)")
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    p.add_argument(
        "-X",
        dest="option",
        action="append",
        metavar="KEY=VALUE",
        help="any librdkafka option (repeatable)",
    )
    p.add_argument("--out", type=Path, help="write to a file (.npz or .jsonl) instead of Kafka")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer", description="Streams of windows with known truth, for demos and tests."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="synthetic ECG beats or multichannel sensor windows")
    sim.add_argument("--kind", choices=["ecg", "sensor"], default="ecg")
    sim.add_argument("--sources", type=int, default=1, help="sources (record keys)")
    sim.add_argument("--window", type=int, help="samples per window (140 ECG, 64 sensor)")
    sim.add_argument("--channels", type=int, help="sensor channels (default 4)")
    sim.add_argument("--anomaly-rate", type=float, default=0.0)
    sim.add_argument("--anomaly-types", help="comma-separated; default: all of the kind's")
    sim.add_argument("--drift", choices=list(DRIFT_KINDS), default="none")
    sim.add_argument("--drift-target", choices=list(DRIFT_TARGETS), default="amplitude")
    sim.add_argument("--drift-magnitude", type=float, default=0.5)
    sim.add_argument("--drift-start", type=int, default=0, help="per-source seq it begins at")
    sim.add_argument("--drift-length", type=int, default=1000, help="ramp or block length")
    sim.add_argument("--seed", type=int, default=0)
    _common(sim)
    rep = sub.add_parser("replay", help="replay an ECG5000-layout, sensor CSV or NPZ file")
    rep.add_argument("--file", type=Path, required=True)
    rep.add_argument("--format", choices=["auto", "ecg5000", "csv", "npz"], default="auto")
    rep.add_argument("--window", type=int, help="window length (csv)")
    rep.add_argument("--stride", type=int, help="step between windows (csv; default window)")
    rep.add_argument("--label-column", help="label column (csv; default 'label' if present)")
    rep.add_argument("--source-id", help="record key (default: the file name)")
    _common(rep)
    return parser


def _settings(args: argparse.Namespace) -> ProducerSettings:
    o: dict[str, Any] = {}
    kafka: dict[str, Any] = {}
    if args.bootstrap_servers:
        kafka["bootstrap_servers"] = args.bootstrap_servers
    if args.option:
        kafka["extra"] = parse_extra_options(args.option)
    if kafka:
        o["kafka"] = kafka
    if args.topic:
        o["topic"] = args.topic
    if args.encoding:
        o["encoding"] = args.encoding
    return ProducerSettings(**o)


def _check_limits(args: argparse.Namespace) -> None:
    if args.rate < 0:
        raise ProducerError(f"--rate must be >= 0 (0 = as fast as possible), got {args.rate}")
    if args.count is not None and args.count < 0:
        raise ProducerError(f"--count must be >= 0, got {args.count}")
    if args.duration is not None and args.duration <= 0:
        raise ProducerError(f"--duration must be > 0, got {args.duration}")


def _to_file(path: Path, batch: WindowBatch) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        write_npz(path, batch)
    elif suffix in (".jsonl", ".ndjson"):
        write_jsonl(path, batch)
    else:
        raise ProducerError(f"--out {path}: use a .npz or .jsonl file name")
    normal = int((batch.labels == 0).sum())
    print(f"producer: wrote {len(batch)} windows ({normal} normal) to {path}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    _check_limits(args)
    if args.command == "simulate":
        types = args.anomaly_types.split(",") if args.anomaly_types else None
        drift = DriftScenario(
            args.drift, args.drift_target, args.drift_magnitude, args.drift_start, args.drift_length
        )
        params: dict[str, Any] = {
            "seed": args.seed,
            "anomaly_rate": args.anomaly_rate,
            "anomaly_types": types,
            "drift": drift,
            "n_sources": args.sources,
            "window": args.window,
            "channels": args.channels,
        }
        if args.out is not None:
            if args.count is None:
                raise ProducerError("--out needs --count")
            _to_file(args.out, make_arrays(args.kind, args.count, **params))
            return 0
        batches = make_batches(args.kind, args.count, **params)
    else:
        batch = load_replay(
            args.file, args.format, args.window, args.stride, args.label_column, args.source_id
        )
        if args.out is not None:
            _to_file(args.out, batch)
            return 0
        batches = iter([batch])
    settings = _settings(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    producer = WindowProducer(settings.kafka, settings.topic, settings.encoding)
    report = stream_to_kafka(
        batches,
        producer,
        Pacer(args.rate, args.bursty),
        count=args.count,
        duration_s=args.duration,
        stop=stop,
        progress_every_s=settings.progress_every_s,
        flush_timeout_s=settings.flush_timeout_s,
        quiet=args.quiet,
    )
    target = f", target {args.rate:g}" if args.rate > 0 else ""
    print(
        f"producer: sent {report.sent} windows to {settings.topic} in {report.seconds:.1f} s "
        f"({report.rate:.0f} windows/s{target}); all {report.delivered} delivered",
        file=sys.stderr,
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``producer`` command."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ProducerError, ValidationError, ValueError) as exc:
        print(f"producer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
