"""``producer``: simulated or replayed windows with known truth, to Kafka or a file.

Examples::

    producer simulate --kind ecg --sources 5 --rate 500 --count 10000 --anomaly-rate 0.02 \\
        --drift gradual --encoding binary --topic windows --bootstrap-servers 127.0.0.1:9092
    producer simulate --kind sensor --channels 4 --window 64 --count 2000 --anomaly-rate 0 \\
        --seed 0 --out normal.npz
    producer replay --file ecg5000.csv --format ecg5000 --rate 0 --topic windows

Settings come from ``PRODUCER_*`` variables and ``.env`` (see :mod:`producer.settings`); flags
override them. Exit status: 0 done, 2 bad input or a failed delivery (``producer: error:
...`` on stderr, no traceback), 128 + the signal number after a clean stop on Ctrl-C or
SIGTERM (everything sent was flushed first). The last stderr line sums the run up; stdout gets
the same summary as one JSON object.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from detector.config_errors import describe_settings_error
from detector.datafile import TIME_POLICIES, parse_row_range
from detector.errors import DetectorError
from detector.kafka.config import parse_extra_options
from detector.log import configure_logging
from producer.anomalies import StreamKind
from producer.errors import ProducerInputError
from producer.filesink import FILE_SUFFIXES, synthetic_event_times, write_file
from producer.kafka_io import WindowProducer
from producer.pacing import Pacer
from producer.replay import REPLAY_FORMATS, read_windows, replay_batches
from producer.scenarios import DRIFT_KINDS, DRIFT_TARGETS, DriftScenario
from producer.settings import ProducerSettings
from producer.simulate import make_batches
from producer.stream import StreamReport, stream_to_kafka
from producer.windows import LabeledWindows, WindowBatch, concat_batches

__all__ = ["main"]

_FALLBACK_WINDOWS_PER_SOURCE = 1000  # drift schedule of an endless stream


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rate", type=float, help="windows per second, 0 = as fast as possible (default 100)"
    )
    p.add_argument(
        "--bursty",
        action="store_true",
        default=None,
        help="alternate half-seconds at 1.8x and 0.2x the rate (same average)",
    )
    p.add_argument("--count", type=int, help="stop after this many windows")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--sources", type=int, help="sources, i.e. record keys (default 1)")
    p.add_argument("--encoding", choices=["json", "binary"], help="wire format (default json)")
    p.add_argument("--topic", help="Kafka topic (default windows)")
    p.add_argument(
        "--partitions",
        type=int,
        help="partitions of the topic if it is missing and created here (default 4)",
    )
    p.add_argument(
        "--no-create-topic",
        dest="create_topic",
        action="store_const",
        const=False,
        help="refuse a missing topic instead of creating it",
    )
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (host:port,...)")
    p.add_argument(
        "-X",
        dest="option",
        action="append",
        metavar="KEY=VALUE",
        help="any librdkafka option, e.g. -X linger.ms=20 (repeatable)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write to a file (.npz, or .jsonl) instead of Kafka; needs --count for simulate",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--progress-every", type=float, metavar="SECONDS", help="progress line interval (5)"
    )
    p.add_argument(
        "--flush-timeout",
        type=float,
        metavar="SECONDS",
        help="wait this long for the last delivery reports (60)",
    )
    p.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer", description="Streams of windows with known truth, for demos and tests."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="synthetic ECG beats or multichannel sensor windows")
    sim.add_argument(
        "--kind",
        choices=["ecg", "sensor"],
        default="ecg",
        help="ECG beats (140x1 windows) or multichannel sensor windows (default %(default)s)",
    )
    sim.add_argument("--window", type=int, help="samples per window (140 ECG, 64 sensor)")
    sim.add_argument("--channels", type=int, help="sensor channels (default 4)")
    sim.add_argument(
        "--profile",
        type=int,
        default=0,
        help="sensor machine type (channel structure); train and stream with the same one",
    )
    sim.add_argument("--anomaly-rate", type=float, default=0.0, help="probability per window")
    sim.add_argument("--anomaly-types", help="comma-separated; default: all of the kind's")
    sim.add_argument(
        "--drift",
        choices=list(DRIFT_KINDS),
        default="none",
        help="how normal behaviour drifts over the stream (default %(default)s)",
    )
    sim.add_argument(
        "--drift-target",
        choices=list(DRIFT_TARGETS),
        default="amplitude",
        help="what drifts (default %(default)s)",
    )
    sim.add_argument("--drift-magnitude", type=float, default=0.5, help="0.5 = +50%% at full")
    sim.add_argument(
        "--drift-start", type=int, help="per-source seq it begins at (default: a quarter in)"
    )
    sim.add_argument(
        "--drift-length", type=int, help="ramp or block length in windows (default: half)"
    )
    sim.add_argument("--seed", type=int, help="stream seed (default 0)")
    sim.add_argument("--source-prefix", help="source ids are PREFIX-0, PREFIX-1 ... (the kind)")
    _common(sim)
    rep = sub.add_parser("replay", help="replay an ECG5000-layout CSV, a sensor CSV or an NPZ")
    rep.add_argument("--file", type=Path, required=True, help="the file to replay")
    rep.add_argument(
        "--format",
        choices=list(REPLAY_FORMATS),
        default="auto",
        help="file format (default %(default)s: by suffix and first line)",
    )
    rep.add_argument("--window", type=int, help="rows per window (sensor CSV)")
    rep.add_argument(
        "--stride", "--step", dest="stride", type=int, help="rows between windows (the window)"
    )
    rep.add_argument("--time-column", help="time column (sensor CSV; default: by name)")
    rep.add_argument(
        "--label-column",
        help="label column, 1 = anomalous (sensor CSV; default 'label' or 'is_anomaly' if any)",
    )
    rep.add_argument(
        "--columns", help="comma-separated channel columns (sensor CSV; default: the numeric ones)"
    )
    rep.add_argument(
        "--source-column",
        help="source id column (sensor CSV): windows are cut within each source, keyed by it",
    )
    rep.add_argument(
        "--rows",
        metavar="A:B",
        help="only data rows A to B-1 (0-based; either side optional, e.g. 400:)",
    )
    rep.add_argument(
        "--time-policy",
        choices=list(TIME_POLICIES),
        default="clamp",
        help="times that repeat or go back: clamp (default: previous time + 1 ms), drop the "
        "row, or error",
    )
    rep.add_argument("--delimiter", choices=[",", ";"], help="separator (default: detected)")
    rep.add_argument("--source-id", help="record key, or its prefix with --sources (file name)")
    rep.add_argument("--loop", action="store_true", help="start over at the end, until a limit")
    rep.add_argument(
        "--event-time",
        choices=["file", "send"],
        default="file",
        help="event time: the file's (default: its rows' times; row * 1 s for files without "
        "times), as the backtest uses it, or the wall clock at send. Kafka record timestamps "
        "are always the send time, so retention never deletes fresh input",
    )
    _common(rep)
    return parser


def _settings(args: argparse.Namespace) -> ProducerSettings:
    """Environment and ``.env`` first, flags over them."""
    over: dict[str, Any] = {}
    kafka: dict[str, Any] = {}
    if args.bootstrap_servers:
        kafka["bootstrap_servers"] = args.bootstrap_servers
    if args.option:
        try:
            kafka["extra"] = parse_extra_options(args.option)
        except ValueError as exc:
            raise ProducerInputError(str(exc)) from exc
    if kafka:
        over["kafka"] = kafka
    flags = {
        "topic": args.topic,
        "partitions": args.partitions,
        "create_topic": args.create_topic,
        "encoding": args.encoding,
        "rate": args.rate,
        "bursty": args.bursty,
        "sources": args.sources,
        "seed": getattr(args, "seed", None),
        "log_level": args.log_level,
        "progress_every_s": args.progress_every,
        "flush_timeout_s": args.flush_timeout,
    }
    over.update({k: v for k, v in flags.items() if v is not None})
    try:
        settings = ProducerSettings(**over)
    except (ValidationError, ValueError) as exc:  # SettingsError (env) is a ValueError
        problems = describe_settings_error(exc, ProducerSettings)  # names fields, no values
        raise ProducerInputError(f"invalid settings: {problems}") from None
    return settings


def _check_args(args: argparse.Namespace) -> None:
    for flag in ("rate", "duration", "anomaly_rate", "drift_magnitude"):
        value = getattr(args, flag, None)
        if value is not None and not math.isfinite(value):
            raise ProducerInputError(f"--{flag.replace('_', '-')} must be a finite number")
    if args.rate is not None and args.rate < 0:
        raise ProducerInputError(f"--rate must be >= 0 (0 = as fast as possible), got {args.rate}")
    if args.count is not None and args.count < 0:
        raise ProducerInputError(f"--count must be >= 0, got {args.count}")
    if args.duration is not None and args.duration <= 0:
        raise ProducerInputError(f"--duration must be > 0 seconds, got {args.duration}")
    if args.sources is not None and args.sources < 1:
        raise ProducerInputError(f"need at least one source, got --sources {args.sources}")
    if args.out is not None:
        if args.out.suffix.lower() not in FILE_SUFFIXES:
            raise ProducerInputError(f"--out {args.out}: use a .npz or .jsonl file name")
        if args.duration is not None:
            raise ProducerInputError(
                "--duration does not apply to --out (a file is reproducible): use --count"
            )
        if args.command == "simulate" and args.count is None:
            raise ProducerInputError("--out needs --count (how many windows to write)")
        if args.command == "replay" and args.loop and args.count is None:
            raise ProducerInputError("--loop with --out needs --count")
    if args.command == "simulate" and not 0.0 <= args.anomaly_rate <= 1.0:
        raise ProducerInputError(f"--anomaly-rate must be within [0, 1], got {args.anomaly_rate}")


def _drift(args: argparse.Namespace, settings: ProducerSettings) -> DriftScenario:
    """The drift scenario; start and length default to the stream's length per source."""
    per_source = float(_FALLBACK_WINDOWS_PER_SOURCE)
    if args.count is not None:
        per_source = args.count / settings.sources
    elif args.duration is not None and settings.rate > 0:
        per_source = args.duration * settings.rate / settings.sources
    default_length = per_source / 8 if args.drift == "recurring" else per_source / 2
    start = args.drift_start if args.drift_start is not None else int(per_source / 4)
    length = args.drift_length if args.drift_length is not None else max(1, int(default_length))
    return DriftScenario(args.drift, args.drift_target, args.drift_magnitude, start, length)


def _simulated(args: argparse.Namespace, settings: ProducerSettings) -> Iterator[WindowBatch]:
    kind: StreamKind = args.kind
    types = [t.strip() for t in args.anomaly_types.split(",")] if args.anomaly_types else None
    return make_batches(
        kind,
        args.count,
        seed=settings.seed,
        anomaly_rate=args.anomaly_rate,
        anomaly_types=types,
        drift=_drift(args, settings),
        n_sources=settings.sources,
        window=args.window,
        channels=args.channels,
        source_prefix=args.source_prefix,
        profile=args.profile,
    )


def _replayed(args: argparse.Namespace, settings: ProducerSettings) -> Iterator[WindowBatch]:
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    try:
        rows = parse_row_range(args.rows) if args.rows is not None else None
    except ValueError as exc:
        raise ProducerInputError(f"--rows: {exc}") from exc
    windows: LabeledWindows = read_windows(
        args.file,
        args.format,
        window=args.window,
        step=args.stride,
        time_column=args.time_column,
        label_column=args.label_column,
        columns=columns,
        delimiter=args.delimiter,
        source_column=args.source_column,
        rows=rows,
        time_policy=args.time_policy,
    )
    for note in windows.notes:
        structlog.get_logger().warning("producer.data_note", note=note)
    if args.event_time == "file" and windows.time_ms is None and args.out is None:
        raise ProducerInputError("--event-time file needs a file with timestamps (a sensor CSV)")
    return replay_batches(
        windows,
        n_sources=settings.sources,
        source_prefix=args.source_id or args.file.stem,
        loop=args.loop,
    )


def _take(batches: Iterator[WindowBatch], count: int | None) -> WindowBatch:
    taken: list[WindowBatch] = []
    have = 0
    for batch in batches:
        if count is not None and have + len(batch) >= count:
            taken.append(batch.head(count - have))
            break
        taken.append(batch)
        have += len(batch)
    if not taken or not any(len(b) for b in taken):
        raise ProducerInputError("nothing to write: the stream has no windows (--count 0?)")
    return concat_batches(taken)


def _to_file(
    args: argparse.Namespace, settings: ProducerSettings, batches: Iterator[WindowBatch]
) -> dict[str, Any]:
    batch = _take(batches, args.count)
    times = None
    if args.command == "replay" and args.event_time == "file":
        times = batch.file_time_ms
    if times is None:
        times = synthetic_event_times(len(batch), settings.rate)
    write_file(args.out, batch, times)
    normal = int((batch.labels == 0).sum())
    print(
        f"producer: wrote {len(batch)} windows ({normal} normal, {len(batch) - normal} "
        f"anomalous) to {args.out}",
        file=sys.stderr,
    )
    return {"out": str(args.out), "windows": len(batch), "anomalous": len(batch) - normal}


class _StopOnSignal:
    """SIGINT and SIGTERM set an event (the send loop stops and flushes) while installed."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.event.set()

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _to_kafka(
    args: argparse.Namespace, settings: ProducerSettings, batches: Iterator[WindowBatch]
) -> tuple[dict[str, Any], int]:
    producer = WindowProducer(
        settings.kafka,
        settings.topic,
        settings.encoding,
        connect_timeout_s=settings.connect_timeout_s,
        create_topic=settings.create_topic,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
    )
    with producer, _StopOnSignal() as stop:
        producer.connect()
        report: StreamReport = stream_to_kafka(
            batches,
            producer,
            Pacer(settings.rate, settings.bursty),
            count=args.count,
            duration_s=args.duration,
            stop=stop.event,
            progress_every_s=settings.progress_every_s,
            flush_timeout_s=settings.flush_timeout_s,
            quiet=args.quiet,
            event_time=getattr(args, "event_time", "send"),  # simulate: the wall clock
        )
    signum = stop.signum or (signal.SIGINT if report.interrupted else None)
    target = f", target {report.target_rate:g}" if report.target_rate > 0 else ""
    why = f"stopped by {signal.Signals(signum).name}: " if signum else ""
    print(
        f"producer: {why}sent {report.sent} windows to {settings.topic} in "
        f"{report.seconds:.1f} s ({report.rate:.0f} windows/s{target}); all "
        f"{report.delivered} delivered ({report.anomalous} anomalous)",
        file=sys.stderr,
        flush=True,
    )
    summary = {
        "topic": settings.topic,
        "encoding": settings.encoding,
        "sent": report.sent,
        "delivered": report.delivered,
        "anomalous": report.anomalous,
        "seconds": round(report.seconds, 3),
        "rate": round(report.rate, 2),
        "target_rate": report.target_rate,
        "flush_seconds": round(report.flush_seconds, 3),
        "interrupted": report.interrupted,
    }
    return summary, (128 + signum if signum else 0)


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "simulate":
        batches = _simulated(args, settings)
    else:
        batches = _replayed(args, settings)
    if args.out is not None:
        summary, status = _to_file(args, settings, batches), 0
    else:
        summary, status = _to_kafka(args, settings, batches)
    sys.stdout.write(orjson.dumps({"command": args.command, **summary}).decode() + "\n")
    sys.stdout.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``producer`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except DetectorError as exc:
        print(f"producer: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("producer: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
