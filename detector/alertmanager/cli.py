"""The ``--to-alertmanager`` options of ``detector alerts`` and how they start the bridge."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from detector.alertmanager.mapping import DEFAULT_ALERTNAME
from detector.errors import ConfigError
from detector.kafka.config import KafkaSettings, check_client_config
from detector.log import LogFormat, configure_logging

__all__ = ["add_bridge_arguments", "run_bridge"]


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bridge's options to the ``alerts`` subcommand's parser."""
    g = parser.add_argument_group(
        "Alertmanager bridge",
        "With --to-alertmanager, 'detector alerts' runs as a service: it turns every alert "
        "episode into one Alertmanager alert (opened/ongoing fire, resolved resolves), "
        "resumes from its consumer group's committed offsets, and re-posts open episodes so "
        "they do not expire. SIGTERM/SIGINT stop it (exit 0). See ops/README.md.",
    )
    g.add_argument(
        "--to-alertmanager",
        metavar="URL",
        action="append",
        help="Alertmanager base URL, e.g. http://alertmanager:9093 (repeat for each "
        "instance of a cluster: every one gets every alert)",
    )
    g.add_argument(
        "--group-id",
        default="alertmanager-bridge",
        help="consumer group of the bridge (default: %(default)s)",
    )
    g.add_argument(
        "--repost-interval-s",
        type=float,
        default=60.0,
        help="re-post open episodes this often (default: %(default)s)",
    )
    g.add_argument(
        "--expire-after-s",
        type=float,
        default=300.0,
        help="a firing alert's endsAt is this far after its last post, so it expires if the "
        "bridge stops (default: %(default)s)",
    )
    g.add_argument(
        "--min-firing-s",
        type=float,
        default=60.0,
        help="a resolved episode ends no earlier than this after it started, so an episode "
        "shorter than Alertmanager's group_wait is still notified; 0: end when resolved "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--stale-after-s",
        type=float,
        default=3600.0,
        help="stop re-posting an open episode with no alert for this long; 0: never "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--alertname",
        default=DEFAULT_ALERTNAME,
        help="the alertname label (default: %(default)s)",
    )
    g.add_argument(
        "--label",
        metavar="NAME=VALUE",
        action="append",
        help="a static label on every alert, e.g. env=prod (repeatable)",
    )
    g.add_argument(
        "--generator-url",
        metavar="TEMPLATE",
        default="",
        help="generatorURL of each alert, a link to the input record: {topic}, {partition}, "
        "{offset}, {source}, {episode_id} are filled in",
    )
    g.add_argument(
        "--metrics-port",
        type=int,
        help="serve the bridge's /metrics and /healthz on this port (default: none)",
    )


def _labels(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--label must be NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


def run_bridge(
    args: argparse.Namespace,
    kafka: KafkaSettings,
    topic: str,
    log_level: str = "INFO",
    log_format: LogFormat = "auto",
) -> int:
    """Build the bridge from ``args`` and run it until SIGTERM/SIGINT.

    Raises:
        ConfigError: an option that cannot work (one line naming it).
    """
    from detector.alertmanager.bridge import AlertmanagerBridge, BridgeSettings

    fields: dict[str, Any] = {
        "urls": args.to_alertmanager,
        "topic": topic,
        "group_id": args.group_id,
        "repost_interval_s": args.repost_interval_s,
        "metrics_port": args.metrics_port,
        "mapping": {
            "alertname": args.alertname,
            "labels": _labels(args.label),
            "expire_after_s": args.expire_after_s,
            "min_firing_s": args.min_firing_s,
            "stale_after_s": args.stale_after_s,
            "generator_url": args.generator_url,
        },
    }
    try:
        settings = BridgeSettings.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise ConfigError(f"invalid Alertmanager bridge settings: {problems}") from None
    check_client_config(kafka.client_config())
    configure_logging(log_level, log_format)
    bridge = AlertmanagerBridge(settings, kafka)
    bridge.install_signal_handlers()
    return bridge.run()
