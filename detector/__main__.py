"""``detector``: the streaming anomaly detector's command line.

Subcommands:
    run       consume windows, score them, publish alerts (the service)
    alerts    print alerts readably (``--follow`` to keep watching)
    schema    print the JSON Schema of the window, alert or event messages
    inspect   print a model bundle's manifest summary (verifies its checksum)
    backtest  a file through the service's core, offline (windows.csv, summary.json, plots)

Why one module of ~570 lines: it is the command line and nothing else. Half of it is the
parser, every option with its help, default and the exit codes (what ``--help`` shows); the
rest is one short handler per subcommand (run, alerts, inspect, schema, backtest), each
handing over to the module that does the work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import TypeAdapter, ValidationError

from detector.alertmanager.cli import add_bridge_arguments
from detector.config_errors import describe_settings_error
from detector.errors import (
    BundleError,
    ConfigError,
    DataFileError,
    DetectorError,
    KafkaUnavailableError,
)
from detector.kafka.config import check_client_config, parse_extra_options
from detector.log import configure_logging

if TYPE_CHECKING:
    from detector.settings import DetectorSettings

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3

RUN_DESCRIPTION = """\
Consume windows, score each micro-batch with the bundle's model, keep per-source thresholds
and alert episodes, and publish alerts, events and dead letters (exactly once by default).

Settings: DETECTOR_* environment variables and .env, then these flags (flags win); the
brokers fall back to KAFKA_BOOTSTRAP_SERVERS. Every setting: README, Running the detector.

exit codes:
  0  stopped cleanly (SIGTERM/SIGINT, or --stop-when-idle)
  1  crashed (logged as detector_crashed, with the cause)
  2  bad settings, an option librdkafka rejects, or a bundle that must not be loaded
     (its checksum or schema version)
  3  Kafka unreachable at start-up (within --startup-timeout-s)
"""

ALERTS_DESCRIPTION = """\
Print the alerts topic, one readable line per alert (a legend first), or raw JSON lines.

exit codes:
  0  done (end of the topic without --follow, --max, --timeout, or Ctrl-C)
  1  the topic does not exist
  2  bad settings
  3  Kafka unreachable
"""


def _default(*path: str) -> str:
    """The default of a ``DetectorSettings`` field, for help texts (``"kafka",
    "bootstrap_servers"`` is a nested one)."""
    from pydantic import BaseModel

    from detector.settings import DetectorSettings

    model: type[BaseModel] = DetectorSettings
    value: Any = None
    for name in path:
        field = model.model_fields[name]
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            model = type(value)
    return str(value)


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags that were given, as nested settings (they override env and .env)."""
    o: dict[str, Any] = {}
    kafka: dict[str, Any] = {}
    topics: dict[str, Any] = {}
    threshold: dict[str, Any] = {}
    if args.bootstrap_servers:
        kafka["bootstrap_servers"] = args.bootstrap_servers
    if args.option:
        kafka["extra"] = parse_extra_options(args.option)
    for flag, key in (
        ("windows_topic", "windows"),
        ("alerts_topic", "alerts"),
        ("events_topic", "events"),
        ("dead_letter_topic", "dead_letters"),
        ("state_topic", "state"),
        ("partitions", "partitions"),
    ):
        if getattr(args, flag) is not None:
            topics[key] = getattr(args, flag)
    if args.no_create_topics:
        topics["create_missing"] = False
    if args.threshold_method:
        threshold["method"] = args.threshold_method
    if args.target_far is not None:
        threshold["target_far"] = args.target_far
    for flag in (
        "bundle",
        "group_id",
        "instance_id",
        "delivery",
        "max_batch",
        "max_wait_s",
        "stop_when_idle_s",
        "metrics_port",
        "log_level",
        "log_format",
        "startup_timeout_s",
    ):
        value = getattr(args, flag)
        if value is not None:
            o[flag] = value
    if args.no_metrics:
        o["metrics_port"] = None
    for key, group in (("kafka", kafka), ("topics", topics), ("threshold", threshold)):
        if group:
            o[key] = group
    return o


def _settings(args: argparse.Namespace | None = None) -> DetectorSettings:
    """Environment, ``.env`` and (for ``run``) flags; an error names fields, never values.

    Raises:
        ConfigError: one line per problem, without the rejected value (it may be a secret
            under a mistyped name).
    """
    from detector.settings import DetectorSettings

    try:
        return DetectorSettings(**(_run_overrides(args) if args is not None else {}))
    except (ValidationError, ValueError) as exc:  # SettingsError is a ValueError
        message = describe_settings_error(exc, DetectorSettings)
        raise ConfigError(f"invalid settings: {message}") from None  # no chained value


def _cmd_run(args: argparse.Namespace) -> int:
    from detector.service import build_service

    settings = _settings(args)
    check_client_config(settings.kafka.client_config())  # before the model load: exit 2 now
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger()
    log.info("loading_bundle", bundle=str(settings.bundle))
    # The block closes the Kafka clients and threads on every path: a failed start too.
    with build_service(settings) as service:
        service.install_signal_handlers()
        service.start()
        return service.run()


def _cmd_alerts(args: argparse.Namespace) -> int:
    from detector.follow import follow_alerts

    settings = _settings()
    kafka = settings.kafka
    if args.bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap_servers})
    if args.to_alertmanager:
        from detector.alertmanager.cli import run_bridge

        topic = args.topic or settings.topics.alerts
        return run_bridge(args, kafka, topic, settings.log_level, settings.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        follow_alerts(
            kafka,
            args.topic or settings.topics.alerts,
            follow=args.follow,
            from_beginning=args.from_beginning,
            as_json=args.json,
            max_alerts=args.max,
            timeout_s=args.timeout,
            legend=None if args.json else sys.stderr,
        )
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from detector.alerts import Alert
    from detector.events import Event
    from detector.messages import Window

    schemas: dict[str, Any] = {
        "window": Window.model_json_schema(),
        "alert": Alert.model_json_schema(),
        "event": TypeAdapter(Event).json_schema(),
    }
    print(json.dumps(schemas[args.message], indent=2, sort_keys=True))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from detector.bundle import CHECKSUM_FILE, MANIFEST_FILE, MODEL_FILE, read_manifest

    configure_logging("WARNING")  # a warning about the bundle goes to stderr, not stdout
    m = read_manifest(args.bundle)
    print(f"model      {m.model_id} ({m.arch})")
    print(f"created    {m.created_at.isoformat()}")
    print(f"window     {m.window_size} steps x {m.n_channels} channels {m.channel_names}")
    print(f"normalise  {m.normalisation.method}")
    print(
        f"threshold  {m.threshold.value:.6g} for target FAR {m.threshold.target_far:g} "
        f"({m.threshold.method}, {m.threshold.n_samples} held-out normal windows)"
    )
    for key in sorted(m.metrics):
        print(f"metric     {key} = {_metric(key, m.metrics)}")
    if "test_false_alarm_rate" in m.metrics and "test_recall" not in m.metrics:
        print(
            "note       the test split held no anomalous window: recall, precision and AUROC "
            "are n/a (detector backtest on labelled data measures them)"
        )
    if (args.bundle / CHECKSUM_FILE).is_file():
        print(f"checksum   ok ({MANIFEST_FILE} and {MODEL_FILE}, {CHECKSUM_FILE})")
    else:
        print(
            f"checksum   {MODEL_FILE} ok; {MANIFEST_FILE} NOT verified (no {CHECKSUM_FILE}: "
            "an older export; export again to cover it)"
        )
    return 0


def _metric(key: str, metrics: dict[str, float]) -> str:
    """A manifest metric for people: precision without recall (a test split with no
    anomalous window: older bundles stored 0) is n/a, not 0."""
    if key.endswith("test_precision") and key.replace("precision", "recall") not in metrics:
        return "n/a (no anomalous test window)"
    return f"{metrics[key]:.4g}"


def _cmd_backtest(args: argparse.Namespace) -> int:
    from detector.backtest import backtest_file
    from detector.datafile import parse_row_range
    from detector.settings import DetectorSettings

    overrides: dict[str, Any] = {}
    if args.threshold_method:
        overrides["method"] = args.threshold_method
    if args.target_far is not None:
        overrides["target_far"] = args.target_far
    try:
        base = DetectorSettings()
        threshold = base.threshold.model_validate({**base.threshold.model_dump(), **overrides})
        rows = parse_row_range(args.rows) if args.rows else None
    except (ValidationError, ValueError) as exc:
        raise ConfigError(_one_line(exc)) from None
    read: dict[str, Any] = {"fmt": args.format, "time_policy": args.time_policy, "rows": rows}
    for name in ("stride", "label_column", "time_column", "source_column"):
        if getattr(args, name) is not None:
            read[name] = getattr(args, name)
    if args.columns:
        read["columns"] = [c.strip() for c in args.columns.split(",") if c.strip()]

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    summary = backtest_file(
        args.bundle,
        args.data,
        args.out,
        threshold=threshold,
        lifecycle=base.lifecycle,
        read=read,
        score_from_row=args.score_from_row,
        topic=args.topic,
        plot=not args.no_plot,
        progress=say,
    )
    after = summary["after_warmup"]
    far = after["far"]
    parts = [
        f"{after['windows']} windows after warm-up ({summary['warmup_windows']} before)",
        "false-alarm rate " + ("n/a" if far is None else f"{far:.2%}")
        + f" (target {threshold.target_far:.2%})",
    ]  # fmt: skip
    if after["recall"] is not None:
        parts.append(f"recall {after['recall']:.1%}")
    if after["auroc"] is not None:
        parts.append(f"AUROC {after['auroc']:.3f}")
    parts.append(f"{after['episodes']} episodes")
    print("backtest: " + ", ".join(parts) + f"; wrote {args.out}/")
    return 0


def _one_line(exc: Exception) -> str:
    """A settings or argument error as one line that names fields, never their values."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
    return str(exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector",
        description="Streaming VAE anomaly detector on Kafka.",
        epilog="'detector COMMAND --help' describes a command, its options and exit codes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="consume windows, score, publish alerts (the service)",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--bundle", type=Path, help=f"model bundle directory (default {_default('bundle')})"
    )
    run.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT,...",
        help="Kafka brokers (env DETECTOR_KAFKA__BOOTSTRAP_SERVERS, else "
        f"KAFKA_BOOTSTRAP_SERVERS; default {_default('kafka', 'bootstrap_servers')})",
    )
    run.add_argument(
        "-X",
        dest="option",
        action="append",
        metavar="KEY=VALUE",
        help="any librdkafka option, e.g. -X linger.ms=5 (repeatable; default none)",
    )
    for flag, key, what in (
        ("--windows-topic", "windows", "input topic"),
        ("--alerts-topic", "alerts", "alerts topic"),
        ("--events-topic", "events", "events topic (recalibrations, drift, retrain advice)"),
        ("--dead-letter-topic", "dead_letters", "topic of inputs that could not be scored"),
        ("--state-topic", "state", "compacted topic of per-source threshold and episode state"),
    ):
        run.add_argument(flag, metavar="TOPIC", help=f"{what} (default {_default('topics', key)})")
    run.add_argument(
        "--partitions",
        type=int,
        help=f"partitions of the topics it creates (default {_default('topics', 'partitions')})",
    )
    run.add_argument(
        "--no-create-topics",
        action="store_true",
        help="refuse to start when a topic is missing (default: create missing topics)",
    )
    run.add_argument("--group-id", help=f"consumer group (default {_default('group_id')})")
    run.add_argument(
        "--instance-id",
        help="stable id of this instance: its static group membership and transactional id; "
        "give each process on one host its own (default: the hostname)",
    )
    run.add_argument(
        "--delivery",
        choices=["exactly-once", "at-least-once"],
        help=f"exactly-once uses Kafka transactions (default {_default('delivery')})",
    )
    run.add_argument(
        "--threshold-method",
        choices=["adaptive", "static", "quantile", "spot"],
        help="how thresholds are set (default "
        f"{_default('threshold', 'method')}; see README, Thresholds)",
    )
    run.add_argument(
        "--target-far",
        type=float,
        metavar="RATE",
        help="promised false-alarm rate: the share of normal windows flagged, above 0 and "
        f"below 0.5 (default {_default('threshold', 'target_far')})",
    )
    run.add_argument(
        "--max-batch",
        type=int,
        help=f"most windows per model call (default {_default('max_batch')})",
    )
    run.add_argument(
        "--max-wait-s",
        type=float,
        metavar="SECONDS",
        help=f"longest wait for a record when none is ready (default {_default('max_wait_s')})",
    )
    run.add_argument(
        "--stop-when-idle",
        dest="stop_when_idle_s",
        type=float,
        metavar="SECONDS",
        help="exit 0 after this long without input, counted from the first partition "
        "assignment (default: never)",
    )
    run.add_argument(
        "--startup-timeout-s",
        type=float,
        metavar="SECONDS",
        help="how long to wait for the broker at start-up before exit code 3 "
        f"(default {_default('startup_timeout_s')})",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics, /healthz and /readyz; 0 picks a free one "
        f"(default {_default('metrics_port')})",
    )
    run.add_argument(
        "--no-metrics",
        action="store_true",
        help="serve no metrics or health endpoints (default: serve them)",
    )
    run.add_argument(
        "--log-level",
        help=f"DEBUG, INFO, WARNING or ERROR (default {_default('log_level')})",
    )
    run.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="auto: console on a terminal, one JSON object per line otherwise "
        f"(default {_default('log_format')})",
    )
    run.set_defaults(func=_cmd_run)

    alerts = sub.add_parser(
        "alerts",
        help="print alerts readably (or bridge them to Alertmanager)",
        description=ALERTS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    alerts.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT,...",
        help="Kafka brokers (default: DETECTOR_KAFKA__BOOTSTRAP_SERVERS, else "
        f"KAFKA_BOOTSTRAP_SERVERS, else {_default('kafka', 'bootstrap_servers')})",
    )
    alerts.add_argument(
        "--topic",
        help="alerts topic (default: DETECTOR_TOPICS__ALERTS, else "
        f"{_default('topics', 'alerts')})",
    )
    alerts.add_argument(
        "--follow", "-f", action="store_true", help="keep watching (default: stop at the end)"
    )
    alerts.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest alert (default: only alerts from now on)",
    )
    alerts.add_argument(
        "--json", action="store_true", help="raw JSON lines, no legend (default: readable lines)"
    )
    alerts.add_argument(
        "--max", type=int, metavar="N", help="stop after this many alerts (default: no limit)"
    )
    alerts.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds (default: no limit)",
    )
    add_bridge_arguments(alerts)
    alerts.set_defaults(func=_cmd_alerts)

    schema = sub.add_parser(
        "schema",
        help="print a message JSON Schema",
        description="Print the JSON Schema of the window (input), alert or event messages.",
    )
    schema.add_argument(
        "message", choices=["window", "alert", "event"], help="which message's schema"
    )
    schema.set_defaults(func=_cmd_schema)

    inspect = sub.add_parser(
        "inspect",
        help="summarise a model bundle",
        description="Print a model bundle's manifest: model, window shape and channels, "
        "normalisation, the recommended threshold and the target false-alarm rate it was "
        "calibrated for, training metrics, and whether the checksums match (exit 2 when "
        "they do not, or when the manifest is missing or of another schema version).",
    )
    inspect.add_argument("bundle", type=Path, help="the bundle directory")
    inspect.set_defaults(func=_cmd_inspect)

    bt = sub.add_parser(
        "backtest",
        help="replay a file through the detector offline and measure it",
        description="Replays a (labelled or unlabelled) file through the same core as "
        "'detector run' (decode, score, per-source thresholds, episodes), without Kafka. "
        "Writes OUT/windows.csv, summary.json, alerts.jsonl, events.jsonl and timeline.png. "
        "Threshold and lifecycle settings come from DETECTOR_THRESHOLD__* and "
        "DETECTOR_LIFECYCLE__* as for 'run'. Exit codes: 0 done, 2 bad settings, bundle or "
        "file.",
    )
    bt.add_argument("--bundle", type=Path, required=True, help="model bundle directory")
    bt.add_argument("--data", type=Path, required=True, help="the file to replay")
    bt.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    bt.add_argument(
        "--format",
        choices=["auto", "csv", "ecg5000", "npz"],
        default="auto",
        help="file format (default: by suffix and first line)",
    )
    bt.add_argument("--columns", help="csv: comma-separated channel columns (default: all)")
    bt.add_argument("--label-column", help="csv: 1 = anomalous (default label or is_anomaly)")
    bt.add_argument("--time-column", help="csv: timestamp column (default: by name)")
    bt.add_argument("--source-column", help="csv: one source per value (default: one source)")
    bt.add_argument(
        "--stride", type=int, help="csv: rows between windows (default: the window length)"
    )
    bt.add_argument("--rows", metavar="A:B", help="only data rows A to B-1 (either optional)")
    bt.add_argument(
        "--time-policy",
        choices=["clamp", "error", "drop"],
        default="clamp",
        help="repeated or backward timestamps: clamp (default: 1 ms after the previous), "
        "error, or drop the row",
    )
    bt.add_argument(
        "--score-from-row",
        type=int,
        default=0,
        metavar="N",
        help="windows ending before data row N are context only (e.g. the training rows)",
    )
    bt.add_argument(
        "--threshold-method",
        choices=["adaptive", "static", "quantile", "spot"],
        help="default: DETECTOR_THRESHOLD__METHOD or adaptive",
    )
    bt.add_argument("--target-far", type=float, help="target false-alarm rate (default 0.01)")
    bt.add_argument(
        "--topic",
        default="backtest",
        help="topic name the alert ids are computed for (the service's ids for the same file "
        "replayed into an empty one-partition topic of this name)",
    )
    bt.add_argument("--no-plot", action="store_true", help="skip timeline.png")
    bt.add_argument("--quiet", action="store_true", help="no progress lines")
    bt.set_defaults(func=_cmd_backtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``detector`` command."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, BundleError, DataFileError) as exc:
        print(f"detector: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KafkaUnavailableError as exc:
        print(f"detector: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DetectorError as exc:
        print(f"detector: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
