"""``kafka-local``: run a throwaway Kafka broker in the foreground until Ctrl-C or SIGTERM.

Usage::

    kafka-local                 # start on a free port, print the address, wait
    kafka-local --port 9092     # a fixed port
    kafka-local --data-dir DIR  # keep the data: a later run on DIR is the same broker again
    kafka-local fetch           # only resolve the jars (CI and image builds)

Exit codes: 0 stopped by Ctrl-C or SIGTERM; 1 the broker could not start (the port is
taken, Java or Maven missing, ...) or its JVM died while it served.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from kafka_local.broker import LocalKafka
from kafka_local.jars import DEFAULT_KAFKA_VERSION, BrokerSetupError, ensure_kafka_jars

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kafka-local`` command."""
    parser = argparse.ArgumentParser(
        prog="kafka-local",
        description="Run a one-node Apache Kafka broker (KRaft) on the local JVM, no Docker.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "fetch"], default="run")
    parser.add_argument("--version", default=DEFAULT_KAFKA_VERSION, help="Kafka version")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port (default: the one DIR last used, else a free one)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="storage, logs and cluster id, kept on stop so the broker can be started again "
        "on it (default: a temporary folder removed on stop)",
    )
    parser.add_argument("--heap", default="1g", help="JVM max heap (default: 1g)")
    parser.add_argument(
        "--address-file", type=Path, default=None, help="also write the bootstrap address here"
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            print(ensure_kafka_jars(args.version), flush=True)
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        kafka = LocalKafka(
            version=args.version, port=args.port, heap=args.heap, data_dir=args.data_dir
        )
        print(f"kafka-local: starting Apache Kafka {args.version} ...", file=sys.stderr, flush=True)
        try:
            address = kafka.start()
            if args.address_file is not None:
                args.address_file.write_text(address + "\n")
            print(f"KAFKA_BOOTSTRAP_SERVERS={address}", flush=True)
            print(
                f"kafka-local: ready (pid {kafka.pid}, logs {kafka.log_file}); Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(0.5):
                if kafka.exit_code is not None:
                    raise BrokerSetupError(kafka.describe_exit())
        finally:
            kafka.stop()
            if args.address_file is not None:
                args.address_file.unlink(missing_ok=True)
        kept = f"; data kept in {kafka.data_dir}" if args.data_dir is not None else ""
        print(f"kafka-local: stopped{kept}", file=sys.stderr, flush=True)
        return 0
    except BrokerSetupError as exc:
        print(f"kafka-local: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
