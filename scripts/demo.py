"""Run the whole path offline: broker, model, simulator, detector, alerts printed live."""

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

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"


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

    with broker() as bootstrap:
        ensure_model(args.bundle, work)
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
        say(f"starting the detector (logs: {work / 'detector.log'}, metrics: :{port}/metrics)")
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
            from detector.follow import follow_alerts
            from detector.kafka_config import KafkaSettings

            deadline = time.monotonic() + 120
            while not scrape(port).get("detector_ready") and time.monotonic() < deadline:
                if detector.poll() is not None or stop.wait(0.5):
                    break
            if detector.poll() is not None:
                sys.exit(f"demo: the detector exited early; see {work / 'detector.log'}")
            say(
                f"streaming simulated ECG from 4 sources at {args.rate:g} windows/s with 2% "
                f"injected anomalies for {args.duration:g} s; SPOT thresholds for a "
                f"{args.target_far:.1%} false-alarm rate; alerts below (Ctrl-C to stop)"
            )
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
        alerts = sum(v for k, v in metrics.items() if k.startswith("detector_alerts_total"))
        say(
            f"done: {scored:.0f} windows scored, {alerts:.0f} alerts, "
            f"detector exit code {detector.returncode}. Logs in {work}"
        )
    return 0 if detector.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
