"""Render docs/dashboard.png: the Grafana dashboard's main panels, drawn from a real run.

Nothing is mocked and nothing is made up: on this machine it runs

* a one-node Kafka broker (``kafka_local``, the project's JVM broker);
* ``detector run`` with the demo's ECG bundle (``models/demo`` when it is there and fits the
  stream, else the demo's own recipe trained once into ``runs/render-dashboard/bundle``),
  default settings (adaptive thresholds, target false-alarm rate 1%, exactly-once);
* ``producer simulate``: 4 ECG sources at 40 windows/s with 2% injected anomalies and a step
  drift (the noise of every source grows fourfold a quarter of the way in);
* Prometheus (Debian's ``prometheus`` package, as ``make setup`` installs it) on a free port,
  scraping the detector every 2 s and evaluating ``ops/prometheus/rules.yml``.

During the stream it does what happens on a real Day 2 (times for the default 200 s): a few
bad records (undecodable, wrong shape, NaN) at about 40 s; a burst at about 90 s (``producer
replay`` of a recorded file as fast as it goes, two more sources: a producer catching up); a
detector restart at about 130 s (SIGTERM, then a new process, which restores its state from
the state topic).
Then it queries the dashboard's own PromQL (``ops/grafana/dashboards/vae-stream-detector.json``,
Grafana's variables filled in) over the run through ``/api/v1/query_range`` and draws eight
of its panels with matplotlib.

Usage (4-5 minutes; 40 s more the first time, to train the bundle)::

    .venv/bin/python ops/render_dashboard.py                 # writes docs/dashboard.png
    .venv/bin/python ops/render_dashboard.py --duration 120 --out /tmp/dash.png

Every process it starts (broker, Prometheus, detector, producers, training) is stopped when
it ends, on success, error, Ctrl-C or SIGTERM alike, and each is bound to it with
``PR_SET_PDEATHSIG``, so not even a SIGKILL of this script leaves one behind. Logs and the
Prometheus data of the last run stay in ``runs/render-dashboard/`` (gitignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kafka_local import LocalKafka, free_port
from kafka_local.procs import die_with_parent, stop_process

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
DASHBOARD = REPO / "ops" / "grafana" / "dashboards" / "vae-stream-detector.json"
RULES = REPO / "ops" / "prometheus" / "rules.yml"
WORK = REPO / "runs" / "render-dashboard"
DATA = WORK / "queried.json"  # what the last run queried, for --replot
SCRAPE_S = 2  # scrape and rule evaluation interval, and the query step
RATE_INTERVAL = "20s"  # Grafana's $__rate_interval for the panels
ECG_WINDOW, ECG_CHANNELS = 140, 1  # producer simulate --kind ecg
SOURCES, RATE, TARGET_FAR = 4, 40.0, 0.01


def say(text: str) -> None:
    print(f"render-dashboard: {text}", flush=True)


# -- processes ---------------------------------------------------------------------------------


class Processes:
    """The child processes of this run, and its broker.

    Each process leads its own session and is bound to this one with PR_SET_PDEATHSIG;
    :meth:`stop_all` stops them newest first (SIGTERM, then SIGKILL), then the broker.
    """

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.broker: LocalKafka | None = None

    def start(
        self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
        self._procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        try:
            for name, proc in reversed(self._procs):
                if proc.poll() is None:
                    say(f"stopping {name} (pid {proc.pid})")
                stop_process(proc, 60)
            self._procs.clear()
        finally:
            if self.broker is not None:  # last: the detector commits on its way out
                say("stopping the Kafka broker")
                self.broker.stop()
                self.broker = None


def run_to_end(procs: Processes, name: str, argv: Sequence[str], log: Path) -> None:
    """Run a command to its end (stopped with the rest if interrupted); exit on failure."""
    proc = procs.start(name, argv, log)
    if proc.wait() != 0:
        sys.exit(f"render-dashboard: {name} failed (exit {proc.returncode}); see {log}")


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    sys.exit(f"render-dashboard: {what} not within {timeout_s:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # one is enough: the clean-up must not be cut short
    raise KeyboardInterrupt(f"signal {signum}")


# -- the run -----------------------------------------------------------------------------------


def ensure_bundle(requested: Path | None, procs: Processes) -> Path:
    """The bundle to run: the one asked for, else models/demo if it fits the ECG stream,
    else the demo's recipe trained once into runs/render-dashboard/bundle."""
    from detector.bundle import read_manifest
    from detector.errors import BundleError

    def fits(bundle: Path) -> bool:
        try:
            m = read_manifest(bundle)
        except BundleError:
            return False
        return (m.window_size, m.n_channels) == (ECG_WINDOW, ECG_CHANNELS)

    if requested is not None:
        if not fits(requested):
            sys.exit(f"render-dashboard: {requested} is not a bundle of 140x1 ECG windows")
        return requested
    for candidate in (REPO / "models" / "demo", WORK / "bundle"):
        if fits(candidate):
            return candidate
    bundle = WORK / "bundle"
    say("no ECG bundle yet: training one with the demo's recipe into " + str(bundle) + " (~40 s)")
    npz = WORK / "normal.npz"
    simulate = [str(BIN / "producer"), "simulate", "--kind", "ecg", "--sources", "16"]
    simulate += ["--count", "4000", "--anomaly-rate", "0", "--seed", "0", "--quiet"]
    run_to_end(procs, "producer simulate", [*simulate, "--out", str(npz)], WORK / "train.log")
    fit = [str(BIN / "training"), "fit", "--format", "npz", "--data", str(npz), "--epochs"]
    fit += ["15", "--no-baseline", "--no-plots", "--seed", "0", "--quiet", "--out", str(bundle)]
    run_to_end(procs, "training fit", fit, WORK / "train.log")
    return bundle


@dataclass
class Marks:
    """Wall-clock times (s since the epoch) of what the run did, for the annotations."""

    stream_start: float = 0.0
    stream_end: float = 0.0
    bad_records: float | None = None
    burst: float | None = None
    bad_count: int = 0
    burst_count: int = 0
    restart: tuple[float, float] | None = None  # SIGTERM sent .. new process ready
    queried: float = 0.0  # the end of the queried range


def start_prometheus(procs: Processes, metrics_port: int) -> str:
    binary = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    if binary is None:
        sys.exit(
            "render-dashboard: prometheus not found (Debian package prometheus; `make setup` "
            "installs it as root where apt-get works, see scripts/setup_ops.sh)"
        )
    prom_dir = WORK / "prometheus"
    shutil.rmtree(prom_dir, ignore_errors=True)
    prom_dir.mkdir(parents=True)
    config = {  # JSON is YAML
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "detector", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        ],
    }
    (prom_dir / "prometheus.yml").write_text(json.dumps(config, indent=1))
    port = free_port()
    argv = [
        binary,
        f"--config.file={prom_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={prom_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    proc = procs.start("prometheus", argv, WORK / "prometheus.log")
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            sys.exit(f"render-dashboard: prometheus exited; see {WORK / 'prometheus.log'}")
        return http_ok(url + "/-/ready")

    wait_for("Prometheus ready", ready, 60)
    return url


class Detector:
    """``detector run`` as a process; :meth:`restart` stops it cleanly and starts it again."""

    def __init__(self, procs: Processes, bundle: Path, bootstrap: str, port: int, tag: str) -> None:
        self.procs, self.port = procs, port
        self.argv = [
            str(BIN / "detector"),
            "run",
            "--bundle",
            str(bundle),
            "--bootstrap-servers",
            bootstrap,
            "--metrics-port",
            str(port),
            "--instance-id",
            f"{tag}-1",
            "--group-id",
            tag,
            f"--windows-topic={tag}-windows",
            f"--alerts-topic={tag}-alerts",
            f"--events-topic={tag}-events",
            f"--dead-letter-topic={tag}-dead-letters",
            f"--state-topic={tag}-state",
            "--target-far",
            str(TARGET_FAR),
            "--log-format",
            "json",
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
        self.env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.procs.start("detector", self.argv, WORK / "detector.log", self.env)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                sys.exit(f"render-dashboard: the detector exited; see {WORK / 'detector.log'}")
            return http_ok(f"http://127.0.0.1:{self.port}/readyz")

        wait_for("the detector ready", ready, 240)

    def restart(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 60)
        self.start()


def send_bad_records(bootstrap: str, topic: str) -> int:
    """Records the detector must dead-letter, one reason each: undecodable, bad_shape,
    non_finite (a producer that sends garbage, one with another window shape, a sensor
    reporting NaN)."""
    import numpy as np
    from confluent_kafka import Producer

    from detector.messages import encode_binary

    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    now_ms = int(time.time() * 1000)
    sent = 0
    for i in range(12):
        producer.produce(topic, key=b"ecg-0", value=b"{not json at all")
        sensor = np.zeros((64, 4), np.float32)  # a sensor window where ECG beats belong
        nan = np.full((ECG_WINDOW, ECG_CHANNELS), np.nan, np.float32)
        for source, values in (("sensor-9", sensor), ("ecg-1", nan)):
            value, headers = encode_binary(source, 10**6 + i, now_ms, values)
            wire: list[tuple[str, str | bytes]] = list(headers)
            producer.produce(topic, key=source.encode(), value=value, headers=wire)
        sent += 3
    if producer.flush(30) != 0:
        sys.exit("render-dashboard: the bad records were not delivered")
    return sent


def run_stream(args: argparse.Namespace, procs: Processes, bundle: Path) -> tuple[str, Marks]:
    """Broker, Prometheus, detector and the stream; returns Prometheus' URL and the marks.

    The processes keep running (Prometheus must answer the queries): the caller stops them.
    """
    say("starting a local Kafka broker ...")
    procs.broker = LocalKafka()
    bootstrap = procs.broker.start()
    metrics_port = free_port()
    prom = start_prometheus(procs, metrics_port)
    tag = f"render-{int(time.time())}"
    detector = Detector(procs, bundle, bootstrap, metrics_port, tag)
    say(f"broker {bootstrap}, Prometheus {prom}; starting the detector (bundle {bundle}) ...")
    detector.start()
    wait_for("the first scrape", lambda: prom_value(prom, 'up{job="detector"}') == 1.0, 60)

    marks = Marks()
    duration = args.duration
    simulate = [
        str(BIN / "producer"),
        "simulate",
        "--kind",
        "ecg",
        "--sources",
        str(SOURCES),
        "--rate",
        str(RATE),
        "--anomaly-rate",
        "0.02",
        "--drift",
        "step",
        "--drift-target",
        "noise",
        "--drift-magnitude",
        "3",
        "--duration",
        str(duration),
        "--encoding",
        "binary",
        "--seed",
        "1",
        "--topic",
        f"{tag}-windows",
        "--bootstrap-servers",
        bootstrap,
        "--progress-every",
        "30",
    ]
    burst_file = WORK / "burst.npz"
    burst = [str(BIN / "producer"), "simulate", "--kind", "ecg", "--sources", "2"]
    burst += ["--count", str(args.burst), "--anomaly-rate", "0", "--seed", "2"]
    burst += ["--source-prefix", "burst", "--quiet", "--out", str(burst_file)]
    run_to_end(procs, "producer simulate (burst file)", burst, WORK / "producer.log")

    say(f"streaming {SOURCES} ECG sources at {RATE:g} windows/s for {duration:g} s ...")
    marks.stream_start = time.time()
    stream = procs.start("producer simulate", simulate, WORK / "producer.log")

    def at(fraction: float) -> None:
        """Sleep until this share of the stream's duration has passed."""
        delay = marks.stream_start + fraction * duration - time.time()
        if delay > 0:
            time.sleep(delay)
        if stream.poll() not in (None, 0):
            sys.exit(f"render-dashboard: the producer failed; see {WORK / 'producer.log'}")

    at(0.2)
    marks.bad_records = time.time()
    marks.bad_count = send_bad_records(bootstrap, f"{tag}-windows")
    say(f"sent {marks.bad_count} bad records (undecodable, bad_shape, non_finite)")
    at(0.45)
    marks.burst, marks.burst_count = time.time(), args.burst
    say(f"burst: replaying {args.burst} recorded windows as fast as they go ...")
    replay = [str(BIN / "producer"), "replay", "--file", str(burst_file), "--rate", "0"]
    replay += ["--event-time", "send", "--encoding", "binary", "--topic", f"{tag}-windows"]
    replay += ["--bootstrap-servers", bootstrap, "--quiet"]
    run_to_end(procs, "producer replay", replay, WORK / "producer.log")
    burst_file.unlink()  # 560 bytes a window: not worth keeping
    at(0.65)
    say("restarting the detector (SIGTERM, then a new process restoring its state) ...")
    stopped = time.time()
    detector.restart()
    marks.restart = (stopped, time.time())
    say(f"detector back after {marks.restart[1] - stopped:.0f} s")
    if stream.wait() != 0:
        sys.exit(f"render-dashboard: the producer failed; see {WORK / 'producer.log'}")
    marks.stream_end = time.time()
    say("stream done; letting the rates settle for 25 s ...")
    time.sleep(25)
    return prom, marks


# -- Prometheus queries ------------------------------------------------------------------------


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus: {body}")
    return body["data"]


def prom_value(prom: str, expr: str) -> float | None:
    with contextlib.suppress(urllib.error.URLError, OSError, RuntimeError):
        result = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if result["result"]:
            return float(result["result"][0]["value"][1])
    return None


@dataclass
class Series:
    labels: dict[str, str]
    t: list[float]
    v: list[float]


def query_range(prom: str, expr: str, start: float, end: float) -> list[Series]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(SCRAPE_S)}
    data = _get(f"{prom}/api/v1/query_range?" + urllib.parse.urlencode(params))
    return [
        Series(r["metric"], [float(t) for t, _ in r["values"]], [float(v) for _, v in r["values"]])
        for r in data["result"]
    ]


def dashboard_targets() -> dict[str, list[tuple[str, str]]]:
    """Panel title -> its (expr, legendFormat) pairs, Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    fill = {"$__rate_interval": RATE_INTERVAL, "$instance": ".*", "$source": ".*"}
    out: dict[str, list[tuple[str, str]]] = {}
    for panel in dashboard["panels"]:
        targets = []
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in fill.items():
                expr = expr.replace(var, value)
            targets.append((expr, target.get("legendFormat", "")))
        out[panel["title"]] = targets
    return out


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat with one instance: ``{{instance}}`` is dropped."""
    text = re.sub(r"\{\{\s*instance\s*\}\}", "", fmt)
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), text)
    return re.sub(r"\s+", " ", text).strip()


def fetch(prom: str, marks: Marks) -> dict[str, list[tuple[str, list[Series]]]]:
    """Every target of the panels drawn, over the run: title -> [(legendFormat, series)]."""
    start, end = marks.stream_start - 20, marks.queried
    targets = dashboard_targets()
    out: dict[str, list[tuple[str, list[Series]]]] = {}
    for title in PANELS:
        if title not in targets:
            sys.exit(f"render-dashboard: the dashboard has no panel {title!r} any more")
        out[title] = [(fmt, query_range(prom, expr, start, end)) for expr, fmt in targets[title]]
    return out


def totals(prom: str, marks: Marks) -> dict[str, dict[str, int]]:
    """What the run published, by label, counted by Prometheus over the whole run."""
    span = f"{math.ceil(marks.queried - marks.stream_start + 20)}s"
    out: dict[str, dict[str, int]] = {}
    for name, metric, label in (
        ("windows", "detector_windows_total", "outcome"),
        ("alerts", "detector_alerts_total", "state"),
        ("events", "detector_events_total", "type"),
        ("dead_letters", "detector_dead_letters_total", "reason"),
    ):
        expr = f"sum by ({label}) (increase({metric}[{span}]))"
        result = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        out[name] = {
            r["metric"].get(label, ""): round(float(r["value"][1])) for r in result["result"]
        }
    return out


# -- drawing -----------------------------------------------------------------------------------

PANELS = (
    "Throughput",
    "Consumer lag",
    "Batch latency",
    "End-to-end lag",
    "Flag rate against the target",
    "Per-source threshold",
    "Alerts published",
    "Events",
    "Dead letters",
    "Firing Prometheus alerts",
)


def render(
    data: dict[str, list[tuple[str, list[Series]]]],
    marks: Marks,
    counts: dict[str, dict[str, int]],
    bundle: str,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    t0 = marks.stream_start
    plt.rcParams.update(
        {
            "font.size": 8.5,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "legend.fontsize": 7.5,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    fig, axes = plt.subplots(4, 2, figsize=(10.5, 13), sharex=True)
    ax_list = list(axes.ravel())

    def minute(t: float) -> float:
        return (t - t0) / 60

    def xy(s: Series) -> tuple[list[float], list[float]]:
        """The points, with a break where the series has no samples (a restart)."""
        xs: list[float] = []
        ys: list[float] = []
        for i, (t, v) in enumerate(zip(s.t, s.v, strict=True)):
            if i and t - s.t[i - 1] > 3 * SCRAPE_S:
                xs.append(math.nan)
                ys.append(math.nan)
            xs.append(minute(t))
            ys.append(v)
        return xs, ys

    def lines(ax: Any, title: str, **style: Any) -> None:
        """The panel's queries as Grafana draws them: one line per series, its legendFormat."""
        for fmt, series in data[title]:
            for s in sorted(series, key=lambda s: legend(fmt, s.labels)):
                label = legend(fmt, s.labels)
                kwargs = dict(style)
                if label.startswith("target"):
                    kwargs.update(color="black", linestyle="--", linewidth=1.2)
                if s.labels.get("source") == "_global":
                    label = "bundle's threshold (global fallback)"
                    kwargs.update(color="grey", linestyle=":", linewidth=1.4)
                ax.plot(*xy(s), label=label, **kwargs)

    def finish(
        ax: Any, title: str, ylabel: str, note: str = "", ncol: int = 1, loc: str = "best"
    ) -> None:
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if note:
            ax.text(1.0, 1.015, note, transform=ax.transAxes, ha="right", va="bottom", color="0.4")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc=loc, ncol=ncol, framealpha=0.85)

    ax = ax_list[0]
    lines(ax, "Throughput", linewidth=1.3)
    ax.set_yscale("symlog", linthresh=10)
    finish(ax, "Throughput", "windows / s (log above 10)")

    ax = ax_list[1]
    lines(ax, "Consumer lag", linewidth=1.3)
    ax.set_yscale("symlog", linthresh=10)
    finish(ax, "Consumer lag", "records waiting (log above 10)")

    ax = ax_list[2]
    lines(ax, "Batch latency", linewidth=1.2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v * 1000:g} ms"))
    finish(ax, "Batch latency", "decode to commit, per batch", ncol=2, loc="upper right")

    ax = ax_list[3]
    lines(ax, "End-to-end lag", linewidth=1.3)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g} s"))
    finish(ax, "End-to-end lag", "event time to commit", "oldest window of each batch")

    ax = ax_list[4]
    lines(ax, "Flag rate against the target", linewidth=1.4)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    finish(ax, "Flag rate against the target", "scored windows flagged", "anomalies count too")

    ax = ax_list[5]
    lines(ax, "Per-source threshold", linewidth=1.2)
    ax.set_yscale("log")
    finish(ax, "Per-source threshold", "score (log)")

    # Alerts, with the rarer events as vertical markers (Grafana would show annotations).
    ax = ax_list[6]
    lines(ax, "Alerts published", linewidth=1.3)
    ax.set_yscale("symlog", linthresh=10)
    marker_colors = {
        "shift_accepted": "tab:purple",
        "retrain_recommended": "tab:red",
        "drift_detected": "tab:brown",
    }
    for _fmt, series in data["Events"]:
        for s in series:
            kind = s.labels.get("type", "")
            if kind not in marker_colors:
                continue
            label: str | None = f"event {kind} ({counts['events'].get(kind, 0)})"
            for i, (t, v) in enumerate(zip(s.t, s.v, strict=True)):
                if v > 0 and (i == 0 or s.v[i - 1] <= 0):  # a burst of them begins
                    ax.axvline(minute(t), color=marker_colors[kind], linestyle="-.", label=label)
                    label = None
    recal = counts["events"].get("threshold_recalibrated", 0)
    ax.plot([], [], " ", label=f"(and {recal} threshold_recalibrated)")
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # headroom: the legend above the lines
    finish(ax, "Alerts published, and events", "alerts / min (log above 10)", loc="upper left")

    # Dead letters, with the rule alerts that fired shaded.
    ax = ax_list[7]
    styles = iter([("-", 3.0), ("--", 2.0), (":", 1.6)] * 4)  # equal counts overlap
    for fmt, series in data["Dead letters"]:  # the reasons that occurred
        for s in sorted(series, key=lambda s: legend(fmt, s.labels)):
            if any(v > 0 for v in s.v):
                style, width = next(styles)
                ax.plot(*xy(s), label=legend(fmt, s.labels), linestyle=style, linewidth=width)
    firing: dict[str, set[float]] = {}
    for _fmt, series in data["Firing Prometheus alerts"]:
        for s in series:
            firing.setdefault(s.labels.get("alertname", "?"), set()).update(s.t)
    for i, (name, times) in enumerate(sorted(firing.items())):
        spans: list[list[float]] = []
        for t in sorted(times):
            if spans and t - spans[-1][1] <= SCRAPE_S * 1.5:
                spans[-1][1] = t
            else:
                spans.append([t, t])
        label = f"rule alert firing: {name}"
        for a, b in spans:
            ax.axvspan(minute(a), minute(b), color=f"C{i + 5}", alpha=0.2, label=label)
            label = None
    finish(ax, "Dead letters, and firing rule alerts", "records / min", "reasons that occurred")

    # What the run did, on every panel; named above the top two.
    for k, ax in enumerate(ax_list):
        texts: list[tuple[float, str]] = []
        if marks.restart:
            a, b = (minute(t) for t in marks.restart)
            ax.axvspan(a, b, color="0.6", alpha=0.25, zorder=0)
            texts.append(((a + b) / 2, "detector\nrestart"))
        for when, text in ((marks.bad_records, "bad\nrecords"), (marks.burst, "burst")):
            if when is not None:
                ax.axvline(minute(when), color="0.45", linestyle=":", linewidth=1)
                texts.append((minute(when), text))
        if k < 2:
            ax.set_title(ax.get_title(loc="left"), loc="left", pad=24)
            for x, text in texts:
                ax.annotate(
                    text,
                    (x, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    fontsize=7.5,
                    color="0.3",
                )
    for ax in ax_list[-2:]:
        ax.set_xlabel("minutes since the stream started")
    ax_list[0].set_xlim(minute(marks.stream_start - 20), minute(marks.queried))

    fig.suptitle(
        "vae-stream-detector: the Grafana dashboard's queries on a real run",
        fontsize=12.5,
        fontweight="bold",
        x=0.01,
        ha="left",
        y=0.997,
    )
    w, d = counts["windows"], counts["dead_letters"]
    alerts = ", ".join(f"{n} {state}" for state, n in sorted(counts["alerts"].items()) if n)
    events = ", ".join(f"{n} {kind}" for kind, n in sorted(counts["events"].items()) if n)
    about = (
        f"detector run ({bundle}; adaptive thresholds, target false-alarm rate "
        f"{TARGET_FAR:.0%}) on a local Kafka broker, fed by producer simulate: {SOURCES} ECG "
        f"sources at {RATE:g} windows/s, 2% injected anomalies, step drift (noise x4 from a "
        f"quarter in); {marks.bad_count} bad records (undecodable, bad_shape, non_finite); a "
        f"burst of {marks.burst_count:,} windows from 2 more sources, sent as fast as they go; "
        "a detector restart (SIGTERM, then a new process). Scraped every 2 s by Prometheus with "
        "ops/prometheus/rules.yml; drawn by ops/render_dashboard.py. Counted by Prometheus: "
        f"{w.get('scored', 0):,} windows scored, {sum(d.values())} dead-lettered; alerts: "
        f"{alerts}; events: {events}."
    )
    fig.text(0.01, 0.975, textwrap.fill(about, 175), fontsize=7.5, color="0.25", va="top")
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=2.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    _shrink(tmp)
    tmp.replace(out)


def _shrink(path: Path) -> None:
    """Quantise to a palette of 128 colours: the same picture at a third of the bytes."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, format="PNG", optimize=True)


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "dashboard.png", help="the PNG to write"
    )
    parser.add_argument(
        "--duration", type=float, default=200.0, help="seconds of stream (default 200)"
    )
    parser.add_argument(
        "--burst", type=int, default=150000, help="windows sent at full speed (150000)"
    )
    parser.add_argument(
        "--bundle", type=Path, help="an ECG bundle (default models/demo, else one trained here)"
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help=f"only draw again what the last run queried ({display(DATA)}): no run",
    )
    args = parser.parse_args(argv)
    if args.duration < 60:
        parser.error("--duration must be at least 60 s")
    started = time.monotonic()
    if args.replot:
        if not DATA.exists():
            parser.error(f"no {display(DATA)} yet: run without --replot first")
        saved = json.loads(DATA.read_text())
        data = {
            title: [(fmt, [Series(**s) for s in series]) for fmt, series in targets]
            for title, targets in saved["data"].items()
        }
        render(data, Marks(**saved["marks"]), saved["counts"], saved["bundle"], args.out)
        say(f"wrote {display(args.out)} ({args.out.stat().st_size // 1024} KB)")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    WORK.mkdir(parents=True, exist_ok=True)
    for log in ("detector.log", "producer.log", "prometheus.log", "train.log"):
        (WORK / log).unlink(missing_ok=True)
    procs = Processes()
    try:
        bundle = ensure_bundle(args.bundle, procs)
        prom, marks = run_stream(args, procs, bundle)
        say("querying Prometheus ...")
        marks.queried = time.time()
        data = fetch(prom, marks)
        counts = totals(prom, marks)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        procs.stop_all()
    DATA.write_text(
        json.dumps(
            {
                "data": {t: [(f, [asdict(s) for s in ss]) for f, ss in v] for t, v in data.items()},
                "marks": asdict(marks),
                "counts": counts,
                "bundle": display(bundle),
            }
        )
    )
    render(data, marks, counts, display(bundle), args.out)
    say(
        f"wrote {display(args.out)} ({args.out.stat().st_size // 1024} KB) in "
        f"{time.monotonic() - started:.0f} s; logs in {display(WORK)}"
    )
    return 0


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
