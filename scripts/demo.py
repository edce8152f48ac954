"""Run the whole path offline: broker, model, simulator, detector, alerts printed live.

Before it streams, the demo checks that its bundle fits the stream (ECG windows of 140x1);
after, it compares the detector's episodes with the anomalies it injected
(:mod:`demo_report`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from demo_report import bundle_mismatch, episodes_from_alerts, match_episodes

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
STREAM_WINDOW, STREAM_CHANNELS = 140, 1  # producer simulate --kind ecg


def say(text: str) -> None:
    print(f"\x1b[1mdemo:\x1b[0m {text}" if sys.stdout.isatty() else f"demo: {text}", flush=True)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        say(f"using the broker at {env}")
        yield env
        return
    from kafka_local import LocalKafka

    say("starting a local Apache Kafka broker on the JVM (no Docker needed) ...")
    with LocalKafka() as kafka:
        say(f"broker ready at {kafka.bootstrap_servers}")
        yield kafka.bootstrap_servers


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        sys.exit(f"demo: {' '.join(cmd[:3])} failed; see {log}:\n{log.read_text()[-2000:]}")


def ensure_model(bundle: Path, work: Path) -> None:
    if (bundle / "manifest.json").exists():
        say(f"using the model bundle in {bundle}")
        return
    say(
        "no model yet: simulating 4000 normal ECG beats from 16 sources and training a demo "
        "VAE with 5-fold threshold calibration (~1-2 min, once) ..."
    )
    npz = work / "normal.npz"
    run(
        [
            str(BIN / "producer"),
            "simulate",
            "--kind",
            "ecg",
            "--sources",
            "16",
            "--count",
            "4000",
            "--anomaly-rate",
            "0",
            "--seed",
            "0",
            "--out",
            str(npz),
        ],
        work / "simulate-train.log",
    )
    run(
        [
            str(BIN / "training"),
            "fit",
            "--format",
            "npz",
            "--data",
            str(npz),
            "--epochs",
            "15",
            "--no-baseline",
            "--seed",
            "0",
            "--out",
            str(bundle),
        ],
        work / "training.log",
    )
    say(f"model trained: {bundle} (report and plots in {bundle}/report.json, {bundle}/plots/)")


def check_bundle(bundle: Path) -> None:
    """Refuse, with what to do, a bundle that cannot score the demo's ECG windows."""
    from detector.bundle import read_manifest
    from detector.errors import BundleError

    try:
        m = read_manifest(bundle)
    except BundleError as exc:
        sys.exit(
            f"demo: {bundle} is not a bundle the detector can load: {exc}\n"
            f"demo: move it away (mv {bundle} models/mine) or delete it, and run 'make demo' "
            "again: it trains its own (about 1-2 min)."
        )
    problem = bundle_mismatch(
        display(bundle), m.window_size, m.n_channels, m.model_id, STREAM_WINDOW, STREAM_CHANNELS
    )
    if problem:
        sys.exit(f"demo: {problem}")


def display(path: Path) -> str:
    """A path as people typed it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every committed record of ``topic``, read from the beginning to its end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-read-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "log_level": 0,
        }
    )
    out: list[Any] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        parts = [] if meta is None or meta.error is not None else list(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is None:
                    out.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
    finally:
        consumer.close()
    return out


def compare_with_truth(bootstrap: str, windows_topic: str, alerts_topic: str) -> list[str]:
    """Lines comparing the detector's episodes with the anomalies the simulator injected."""
    from detector.alerts import Alert
    from detector.errors import DecodeError
    from detector.messages import decode_window, header_value

    truth: dict[str, list[int]] = {}
    n_windows = n_anomalous = 0
    for msg in read_topic(bootstrap, windows_topic):
        try:
            window = decode_window(msg.key(), msg.value(), msg.headers())
        except DecodeError:
            continue
        n_windows += 1
        truth.setdefault(window.source_id, [])
        if header_value(msg.headers(), "label") == "1":
            n_anomalous += 1
            truth[window.source_id].append(window.seq)
    alerts = [Alert.model_validate_json(m.value()) for m in read_topic(bootstrap, alerts_topic)]
    episodes = episodes_from_alerts(
        (a.episode_id, a.source_id, a.state.value, a.input.seq) for a in alerts
    )
    match = match_episodes(truth, episodes)
    states = {s: sum(a.state.value == s for a in alerts) for s in ("opened", "ongoing", "resolved")}

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    return [
        f"injected: {n_anomalous} anomalous windows of {n_windows} ({match.incidents} "
        "incidents: runs of consecutive anomalous windows of a source)",
        f"detected: {match.episodes} episodes ({len(alerts)} alerts: {states['opened']} "
        f"opened, {states['ongoing']} ongoing, {states['resolved']} resolved)",
        f"episode precision {share(match.precision)} ({match.right} of {match.episodes} "
        f"episodes span an injected anomaly), recall {share(match.recall)} ({match.detected} "
        f"of {match.incidents} incidents inside an episode)",
    ]


def scrape(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        for line in text.decode().splitlines():
            if line.startswith("detector_") and " " in line:
                name, value = line.rsplit(" ", 1)
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=float(os.environ.get("DEMO_DURATION", "60"))
    )
    parser.add_argument("--rate", type=float, default=50.0, help="windows per second")
    parser.add_argument(
        "--target-far", type=float, default=0.002, help="promised false-alarm rate (SPOT threshold)"
    )
    parser.add_argument("--bundle", type=Path, default=REPO / "models" / "demo")
    args = parser.parse_args()
    work = REPO / "runs" / "demo"
    work.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    ensure_model(args.bundle, work)  # no broker needed: trained before one starts
    check_bundle(args.bundle)
    with broker() as bootstrap:
        from kafka_local import free_port

        port = free_port()
        env = {**os.environ, "DETECTOR_LOG_FORMAT": "json", "TF_CPP_MIN_LOG_LEVEL": "2"}
        suffix = str(int(time.time()))
        topics = [
            f"--windows-topic=demo-windows-{suffix}",
            f"--alerts-topic=demo-alerts-{suffix}",
            f"--events-topic=demo-events-{suffix}",
            f"--dead-letter-topic=demo-dead-letters-{suffix}",
            f"--state-topic=demo-state-{suffix}",
        ]
        det_log = (work / "detector.log").open("w")
        metrics_url = f"http://127.0.0.1:{port}"
        say(f"starting the detector (logs: {display(work / 'detector.log')})")
        detector = subprocess.Popen(
            [
                str(BIN / "detector"),
                "run",
                "--bundle",
                str(args.bundle),
                "--bootstrap-servers",
                bootstrap,
                "--instance-id",
                f"demo-{suffix}",
                "--group-id",
                f"demo-{suffix}",
                "--metrics-port",
                str(port),
                "--threshold-method",
                "spot",
                "--target-far",
                str(args.target_far),
                *topics,
            ],
            stdout=det_log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        sim_log = (work / "simulator.log").open("w")
        simulator = None
        try:
            from detector.follow import alert_legend, follow_alerts
            from detector.kafka.config import KafkaSettings

            deadline = time.monotonic() + 120
            while not scrape(port).get("detector_ready") and time.monotonic() < deadline:
                if detector.poll() is not None or stop.wait(0.5):
                    break
            if detector.poll() is not None:
                sys.exit(f"demo: the detector exited early; see {work / 'detector.log'}")
            say(
                f"detector ready: metrics {metrics_url}/metrics, health {metrics_url}/healthz "
                f"and {metrics_url}/readyz (while the demo runs)"
            )
            say(
                f"streaming simulated ECG from 4 sources at {args.rate:g} windows/s with 2% "
                f"injected anomalies for {args.duration:g} s; SPOT thresholds for a "
                f"{args.target_far:.1%} false-alarm rate; alerts below (Ctrl-C to stop)"
            )
            for line in alert_legend().splitlines():
                say(line)
            simulator = subprocess.Popen(
                [
                    str(BIN / "producer"),
                    "simulate",
                    "--kind",
                    "ecg",
                    "--sources",
                    "4",
                    "--rate",
                    str(args.rate),
                    "--anomaly-rate",
                    "0.02",
                    "--duration",
                    str(args.duration),
                    "--topic",
                    f"demo-windows-{suffix}",
                    "--bootstrap-servers",
                    bootstrap,
                    "--seed",
                    "1",
                ],
                stdout=sim_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            kafka = KafkaSettings(bootstrap_servers=bootstrap)
            end = time.monotonic() + args.duration + 5
            watcher = threading.Thread(
                target=follow_alerts,
                kwargs={
                    "kafka": kafka,
                    "topic": f"demo-alerts-{suffix}",
                    "follow": True,
                    "from_beginning": True,
                    "timeout_s": args.duration + 5,
                },
                daemon=True,
            )
            watcher.start()
            while time.monotonic() < end and not stop.wait(0.5):
                if detector.poll() is not None:
                    say("the detector stopped unexpectedly")
                    break
            metrics = scrape(port)
        finally:
            for proc in (simulator, detector):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (simulator, detector):
                if proc is not None:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            det_log.close()
            sim_log.close()
        scored = metrics.get('detector_windows_total{outcome="scored"}', 0)
        dead = {
            k.split('reason="', 1)[1].rstrip('"}'): v
            for k, v in metrics.items()
            if k.startswith("detector_dead_letters_total{") and v
        }
        say(
            f"done: {scored:.0f} windows scored, {sum(dead.values()):.0f} dead-lettered"
            + (f" ({', '.join(f'{r}: {n:.0f}' for r, n in dead.items())})" if dead else "")
            + f"; detector exit code {detector.returncode}"
        )
        if dead and not scored:
            say(f"every window was dead-lettered: see {display(work / 'detector.log')}")
        for line in compare_with_truth(
            bootstrap, f"demo-windows-{suffix}", f"demo-alerts-{suffix}"
        ):
            say(line)
        say(
            f"logs in {display(work)}; the commands are in .venv/bin: 'source .venv/bin/activate' "
            "(or .venv/bin/detector ...), then e.g. "
            f"'detector inspect {display(args.bundle)}'"
        )
    return 0 if detector.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
