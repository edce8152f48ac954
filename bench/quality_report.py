"""``make quality`` (``python -m bench quality``): detection quality beside peer tools, QUALITY.md.

Every development data set is split once; the product (its four threshold methods, through
the same core as the service: :mod:`detector.backtest`) and the peer tools
(:mod:`bench.peers`) see the same training windows and the same test windows, in stream
order. Peers set their thresholds the causal way (a quantile of their scores on held-out
normal training windows), as a deployed tool would. No Kafka here: that the backtest and the
service give the same alerts is an integration test (``tests/integration``).

Data sets (the first three ship with the machine or the project; aeon's are read from the
installed wheel, never copied):

* ``ecg5000``: the TensorFlow tutorial's split; every beat its own source, so every method
  judges it by the bundle's threshold (figures over all windows).
* ``sim-drift-moderate`` / ``sim-drift-large``: the simulator's ECG stream (16 sources)
  with gradual amplitude drift and anomaly episodes (:func:`bench.drift_stream.drift_stream`).
* ``daphnet-s06r02e0``: 9 accelerometer channels at 64 Hz, no freezing episode in this
  recording (false alarms only). Trained on the first 20% of rows (the subject standing),
  scored on the rest (walking): a regime change the training rows never showed.
* ``kdd-tsad-135``: UCR anomaly archive series 135 (one channel, one labelled anomaly),
  trained on its TRAIN file, scored on the TEST file after the training rows.

The real recordings use one window length (64 rows) and stride 1 when scoring, chosen
before looking at results and the same for both. For them a second bundle, trained with
``--centre-windows`` (input normalisation that ignores each window's level, so a slow level
drift cannot raise every score), is backtested with the adaptive method too: the choice is
measured here, not assumed. Figures are after each source's warm-up
(its windows before its first own threshold) unless the table says otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DATASETS", "main"]

REPO = Path(__file__).resolve().parents[1]
METHODS = ("adaptive", "quantile", "spot", "static")
TARGET_FAR = 0.01
BAND = (0.5, 2.0)
REAL_WINDOW = 64
REAL_FIT = ("--epochs", "60", "--folds", "3", "--no-baseline", "--no-plots", "--quiet")
DATASETS = ("ecg5000", "sim-drift-moderate", "sim-drift-large", "daphnet-s06r02e0", "kdd-tsad-135")


@dataclass(slots=True)
class Split:
    """One data set, ready for the product and the peers."""

    name: str
    bundle: Path
    train_normal: npt.NDArray[np.float32]  # (N, T, C) normal training windows (peers)
    test: npt.NDArray[np.float32]  # (M, T, C) in stream order
    labels: npt.NDArray[np.bool_] | None
    sources: list[str]
    times: npt.NDArray[np.int64]
    protocol: str
    variants: dict[str, Path] | None = None  # row label -> another bundle (adaptive only)


def _aeon_data(name: str) -> Path:
    try:
        # untyped (no py.typed), and only in the [eval] extra: imported by name
        aeon = importlib.import_module("aeon")
    except ImportError as exc:
        raise SystemExit(
            "quality: the aeon package is missing: pip install -e '.[eval]' (make quality does)"
        ) from exc
    return Path(str(aeon.__file__)).parent / "datasets" / "data" / name


class _MemoScorer:
    """The bundle's scorer, remembering batches: four methods score the same batches once."""

    def __init__(self, score: Callable[[Any], Any]) -> None:
        self._score = score
        self._memo: dict[bytes, Any] = {}

    def __call__(self, batch: npt.NDArray[np.float32]) -> Any:
        key = hashlib.sha1(np.ascontiguousarray(batch).tobytes()).digest()
        if key not in self._memo:
            self._memo[key] = self._score(batch)
        return self._memo[key]


def _fit(name: str, data: Path, args: list[str], log: Callable[[str], None]) -> Path:
    from bench.bundles import BundleJob

    job = BundleJob(name, data, args)
    log(f"bundle {name}: {'cached' if job.cached else 'training'} ({' '.join(args)})")
    return job.start().result()


def _ecg5000(log: Callable[[str], None]) -> Split:
    from bench.config import FULL
    from bench.data import ecg5000_path
    from training.data import load_dataset, split_dataset

    path = ecg5000_path()
    if not path.is_file():
        raise FileNotFoundError(f"ECG5000 not found at {path} (set ECG5000_PATH)")
    bundle = _fit("ecg5000", path, list(FULL.ecg_fit_args), log)
    data = load_dataset(path, "ecg5000")
    split = split_dataset(data)
    anomalous = data.anomalous()
    train = split.train[~anomalous[split.train]]  # normal training beats only
    test = data.windows[split.test].astype(np.float32)
    n = test.shape[0]
    return Split(
        "ecg5000", bundle, data.windows[train].astype(np.float32), test,
        anomalous[split.test].astype(bool), [f"beat-{i}" for i in range(n)],
        np.arange(n, dtype=np.int64) * 1000,
        "tutorial split (train_test_split 0.2, seed 21); each test beat its own source",
    )  # fmt: skip


def _sim(magnitude_name: str, log: Callable[[str], None], workdir: Path) -> Split:
    from bench.bundles import BundleJob, write_sim_npz
    from bench.config import QUICK
    from bench.data import SIM_SEED, event_time_ms
    from bench.drift_stream import DRIFT_SCENARIOS, drift_stream
    from bench.sections.drift import Drift

    rounds = Drift.quick.rounds

    npz = workdir / "sim-train.npz"
    job = BundleJob(
        "sim-ecg",
        npz,
        list(QUICK.sim_fit_args),
        [f"n={QUICK.sim_train_windows}", f"seed={SIM_SEED}"],
        make_data=lambda: write_sim_npz(npz, QUICK.sim_train_windows),
    )
    log(f"bundle sim-ecg: {'cached' if job.cached else 'training'}")
    bundle = job.start().result()
    if not npz.is_file():
        write_sim_npz(npz, QUICK.sim_train_windows)
    train = np.load(npz)["windows"].astype(np.float32)
    magnitude = DRIFT_SCENARIOS[magnitude_name][0]
    stream, _ = drift_stream(rounds, QUICK.sim_train_windows, magnitude)
    times = np.asarray([event_time_ms(int(s)) for s in stream.seqs], dtype=np.int64)
    values = stream.values.astype(np.float32)
    if values.ndim == 2:
        values = values[:, :, None]
    if train.ndim == 2:
        train = train[:, :, None]
    return Split(
        f"sim-drift-{magnitude_name}", bundle, train, values, stream.labels.astype(bool),
        list(stream.source_ids), times,
        f"simulated ECG, 16 sources x {rounds} windows, gradual amplitude drift "
        f"of {magnitude:.0%}, anomaly episodes of 3-12 windows",
    )  # fmt: skip


def _real(
    name: str,
    train_file: Path,
    test_file: Path,
    train_rows: tuple[int | None, int | None],
    score_from: int,
    columns: list[str],
    log: Callable[[str], None],
) -> Split:
    from detector.datafile import read_windows

    rows = f"{train_rows[0] or ''}:{train_rows[1] or ''}"
    args = [
        "--format", "csv", "--window", str(REAL_WINDOW), "--stride", "2", "--rows", rows,
        "--columns", ",".join(columns), "--test-fraction", "0", *REAL_FIT,
    ]  # fmt: skip
    bundle = _fit(name, train_file, args, log)
    centred = _fit(name + "-centred", train_file, [*args, "--centre-windows"], log)
    train = read_windows(
        train_file, fmt="csv", window=REAL_WINDOW, stride=1, columns=columns, rows=train_rows
    )
    test = read_windows(test_file, fmt="csv", window=REAL_WINDOW, stride=1, columns=columns)
    keep = np.flatnonzero(test.end_row >= score_from)
    normal = train.values if train.labels is None else train.values[~train.labels]
    return Split(
        name, bundle, normal.astype(np.float32), test.values[keep],
        None if test.labels is None or not test.labels.any() else test.labels[keep],
        [name] * keep.shape[0], test.event_time_ms[keep],
        f"trained on rows {rows} of {train_file.name} (window {REAL_WINDOW}, stride 2); "
        f"scored on {test_file.name} from row {score_from}, stride 1",
        {"adaptive, centred windows": centred},
    )  # fmt: skip


def load_split(name: str, log: Callable[[str], None], workdir: Path) -> Split:
    """Build (or reuse) the bundle and the windows of one data set."""
    if name == "ecg5000":
        return _ecg5000(log)
    if name.startswith("sim-drift-"):
        return _sim(name.removeprefix("sim-drift-"), log, workdir)
    if name == "daphnet-s06r02e0":
        path = _aeon_data("Daphnet_S06R02E0") / "S06R02E0.csv"
        cut = 1408  # the first 20% of its 7,040 rows
        columns = [
            "ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd",
            "leg_vert", "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert",
            "trunk_horiz_lateral",
        ]  # fmt: skip
        return _real(name, path, path, (0, cut), cut, columns, log)
    if name == "kdd-tsad-135":
        folder = _aeon_data("KDD-TSAD_135")
        train = folder / "135_UCR_Anomaly_InternalBleeding16_TRAIN.csv"
        test = folder / "135_UCR_Anomaly_InternalBleeding16_TEST.csv"
        return _real(name, train, test, (None, None), 1200, ["value"], log)
    raise ValueError(f"unknown data set {name!r}; choose from {DATASETS}")


def _run_lengths(flags: npt.NDArray[np.bool_], sources: list[str]) -> int:
    """Runs of consecutive flagged windows per source (a peer's 'episodes')."""
    last: dict[str, bool] = {}
    runs = 0
    for flag, source in zip(flags.tolist(), sources, strict=True):
        if flag and not last.get(source, False):
            runs += 1
        last[source] = flag
    return runs


def _peer_row(split: Split, result: Any, flags: npt.NDArray[np.bool_]) -> dict[str, Any]:
    from detector.backtest import auroc, episode_spans

    y = np.zeros(flags.shape[0], dtype=bool) if split.labels is None else split.labels
    normal = ~y
    fp = int((flags & normal).sum())
    tp = int((flags & y).sum())
    recall = None if split.labels is None or not y.any() else tp / int(y.sum())
    precision = None if tp + fp == 0 else tp / (tp + fp)
    f1 = (
        None
        if recall is None or precision is None or recall + precision == 0
        else 2 * precision * recall / (precision + recall)
    )
    runs = _run_lengths(flags, split.sources)
    false_runs = _run_lengths(flags & normal, split.sources)
    detect = []
    if split.labels is not None:
        for span in episode_spans(y, split.sources):
            hit = next((k for k, j in enumerate(span) if flags[j]), None)
            if hit is not None:
                detect.append(hit)
    return {
        "auroc": None if split.labels is None else auroc(result.scores, y),
        "far": fp / max(int(normal.sum()), 1),
        "recall": recall,
        "f1": f1,
        "episodes": runs,
        "false_episodes_per_1000_normal": 1000.0 * false_runs / max(int(normal.sum()), 1),
        "median_windows_to_detect": float(np.median(detect)) if detect else None,
        "fit_s": round(result.fit_seconds, 1),
    }


def _recall_at(scores: npt.NDArray[np.floating], y: npt.NDArray[np.bool_], far: float) -> float:
    """Recall when the threshold is set so that ``far`` of the normal windows are flagged."""
    normal = np.sort(np.asarray(scores)[~y])
    if normal.shape[0] == 0 or not y.any():
        return float("nan")
    k = int(np.floor(far * normal.shape[0]))
    thr = normal[-k - 1] if k < normal.shape[0] else -np.inf
    return float((np.asarray(scores)[y] > thr).mean())


def evaluate(split: Split, log: Callable[[str], None]) -> dict[str, Any]:
    """The product's methods and the peers on one split."""
    from bench.peers import PEER_UNAVAILABLE, PEERS, run_peer
    from detector.backtest import replay_records, summarise, window_records
    from detector.core import build_decider
    from detector.model import load_bundle
    from detector.settings import LifecycleSettings
    from detector.threshold import ThresholdConfig

    model = load_bundle(split.bundle)
    scorer = _MemoScorer(model.score)
    records = window_records(split.test, split.sources, split.times, topic="quality")
    product: dict[str, Any] = {}
    product_scores: npt.NDArray[np.float64] | None = None
    for method in METHODS:
        t0 = time.perf_counter()
        core = build_decider(
            model.manifest, ThresholdConfig(method=method, target_far=TARGET_FAR),
            LifecycleSettings(),
        )  # fmt: skip
        run = replay_records(core, scorer, records)
        idx = np.asarray(run.index)
        labels = None if split.labels is None else split.labels[idx]
        summary = summarise(
            run, labels, [split.sources[i] for i in idx], split.times[idx], TARGET_FAR
        )
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        product[method] = summary
        if method == "adaptive":  # every method scores alike: one copy, in test order
            product_scores = np.full(split.test.shape[0], np.nan)
            product_scores[idx] = run.scores
        part = summary["after_warmup"] if summary["after_warmup"]["windows"] else None
        far = (part or summary["all_windows"])["far"]
        log(f"{split.name}: {method}: FAR {far}")
    variants: dict[str, Any] = {}
    for label, path in (split.variants or {}).items():
        other = load_bundle(path)
        core = build_decider(
            other.manifest, ThresholdConfig(target_far=TARGET_FAR), LifecycleSettings()
        )
        run = replay_records(core, other.score, records)
        idx = np.asarray(run.index)
        labels = None if split.labels is None else split.labels[idx]
        variants[label] = summarise(
            run, labels, [split.sources[i] for i in idx], split.times[idx], TARGET_FAR
        )
        log(f"{split.name}: {label}: FAR {_figures(variants[label])['far']}")
    peers: dict[str, Any] = {}
    for name in PEERS:
        t0 = time.perf_counter()
        result = run_peer(name, split.train_normal, split.test, TARGET_FAR)
        peers[name] = _peer_row(split, result, np.asarray(result.static_flags, dtype=bool))
        if name == "river_hst":
            peers[name + "_online"] = _peer_row(split, result, np.asarray(result.flags, bool))
        peers[name]["scores"] = result.scores
        log(f"{split.name}: peer {name}: FAR {peers[name]['far']:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    # Ranking at matched rates, both ways: each peer's recall at the adaptive method's
    # realised rate, and the product's (its scores) at each peer's realised rate.
    adaptive = _figures(product["adaptive"])
    assert product_scores is not None
    if split.labels is not None and adaptive["far"] is not None:
        scored = np.isfinite(product_scores)
        for name in PEERS:
            peers[name]["recall_at_adaptive_far"] = _recall_at(
                peers[name]["scores"], split.labels, max(adaptive["far"], 1e-9)
            )
            peers[name]["product_recall_at_peer_far"] = _recall_at(
                product_scores[scored], split.labels[scored], peers[name]["far"]
            )
    for row in peers.values():
        row.pop("scores", None)
    return {
        "protocol": split.protocol,
        "bundle": str(split.bundle),
        "test_windows": int(split.test.shape[0]),
        "anomalous_windows": None if split.labels is None else int(split.labels.sum()),
        "product": product,
        "variants": variants,
        "peers": peers,
        "peers_unavailable": PEER_UNAVAILABLE,
    }


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    """After warm-up when any source calibrated, otherwise over every window."""
    after: dict[str, Any] = summary["after_warmup"]
    every: dict[str, Any] = summary["all_windows"]
    return after if after["windows"] else every


def _f(value: float | None, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.2%}" if pct else f"{value:.3f}"


def render(results: dict[str, Any], command: str) -> str:
    """QUALITY.md from the results."""
    out = [
        "# Detection quality",
        "",
        f"Written by `{command}` on {results['date']} ({results['seconds']:.0f} s). "
        "Regenerate with `make quality`; the figures below are all from that one run.",
        "",
        f"Target false-alarm rate {TARGET_FAR:.0%} for every method and peer. **FAR** is the "
        "realised share of *normal* windows flagged; for the product it is counted after each "
        "source's warm-up (its windows before its first own threshold; ECG5000 beats are "
        "their own sources, so there it is every window), and the promise is FAR within "
        f"[{BAND[0]}x, {BAND[1]}x] of the target. Peers are fitted on the same normal "
        "training windows and set their thresholds the causal way (the 99% quantile of their "
        "scores on held-out normal training windows). *Recall at the adaptive FAR* compares "
        "ranking fairly: each peer's recall when its threshold flags the same share of normal "
        "test windows as the product's adaptive method did (an oracle setting no deployed "
        "peer would have; the product's own recall there is causal, so this favours the "
        "peer); *product's recall at this FAR* is the other way round: the product's scores "
        "thresholded to flag as many normal windows as that peer did. Episodes: runs of "
        "flagged windows (the product: its alert episodes) that opened on a normal window, "
        "per 1,000 normal windows.",
        "",
        "Protocols and the reasons behind them: `bench/quality_report.py`'s docstring. Peers: "
        "`bench/peers.py`.",
        "",
    ]
    for name, ds in results["datasets"].items():
        out += [
            f"## {name}",
            "",
            ds.get("protocol", ""),
            "",
            f"Command: `make quality` (this data set alone: `.venv/bin/python -m bench quality "
            f"--only {name}`, figures in `bench/results/quality.json`).",
            "",
        ]
        if "error" in ds:
            out += [f"Not run: {ds['error']}", ""]
            continue
        out += [
            f"{ds['test_windows']} test windows"
            + (
                f", {ds['anomalous_windows']} anomalous"
                if ds["anomalous_windows"]
                else ", no anomaly labelled: false alarms only"
            )
            + ".",
            "",
            "| detector | AUROC | FAR | FAR / target | recall | recall at the adaptive FAR "
            "| product's recall at this FAR | F1 | false episodes / 1k normal "
            "| median windows to detect |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method in METHODS:
            s = ds["product"][method]
            fig = _figures(s)
            far = fig["far"]
            out.append(
                f"| product, {method}{' (default)' if method == 'adaptive' else ''} "
                f"| {_f(fig['auroc'])} | {_f(far, True)} "
                f"| {_f(None if far is None else far / TARGET_FAR)} | {_f(fig['recall'])} "
                f"| {_f(fig['recall']) if method == 'adaptive' else ''} | | {_f(fig['f1'])} "
                f"| {_f(fig['false_episodes_per_1000_normal'])} "
                f"| {_f(s['median_windows_to_detect'])} |"
            )
        for label, s in ds.get("variants", {}).items():
            fig = _figures(s)
            far = fig["far"]
            out.append(
                f"| product, {label} | {_f(fig['auroc'])} | {_f(far, True)} "
                f"| {_f(None if far is None else far / TARGET_FAR)} | {_f(fig['recall'])} "
                f"| | | {_f(fig['f1'])} | {_f(fig['false_episodes_per_1000_normal'])} "
                f"| {_f(s['median_windows_to_detect'])} |"
            )
        for peer, row in ds["peers"].items():
            out.append(
                f"| peer, {peer} | {_f(row['auroc'])} | {_f(row['far'], True)} "
                f"| {_f(row['far'] / TARGET_FAR)} | {_f(row['recall'])} "
                f"| {_f(row.get('recall_at_adaptive_far'))} "
                f"| {_f(row.get('product_recall_at_peer_far'))} | {_f(row['f1'])} "
                f"| {_f(row['false_episodes_per_1000_normal'])} "
                f"| {_f(row['median_windows_to_detect'])} |"
            )
        ad = ds["product"]["adaptive"]
        fig = _figures(ad)
        verdict = _verdict(ds)
        out += [
            "",
            f"Adaptive: {ad['warmup_windows']} warm-up windows; over every window FAR "
            f"{_f(ad['all_windows']['far'], True)}; events {ad['events']}.",
            "",
            f"**Verdict:** {verdict}",
            "",
        ]
        if ds["peers_unavailable"]:
            out += [f"Peers not run: {ds['peers_unavailable']}", ""]
    return "\n".join(out) + "\n"


def _verdict(ds: dict[str, Any]) -> str:
    fig = _figures(ds["product"]["adaptive"])
    far = fig["far"]
    parts = []
    if far is None:
        return "no normal window to measure."
    ratio = far / TARGET_FAR
    inside = BAND[0] <= ratio <= BAND[1]
    parts.append(
        f"realised FAR {far:.2%} = {ratio:.2f}x target, "
        + ("inside" if inside else "OUTSIDE")
        + f" [{BAND[0]}x, {BAND[1]}x]"
    )
    share = (ds["anomalous_windows"] or 0) / max(ds["test_windows"], 1)
    if ratio < BAND[0] and share > TARGET_FAR:
        parts.append(
            f"why: {share:.1%} of the windows are anomalous, more than the target rate; the "
            "online correction cannot tell anomalies from false alarms, charges each episode "
            "up to its budget (DETECTOR_THRESHOLD__MARGIN_EPISODE_BUDGET) and so errs strict "
            "(fewer false alarms than promised)"
        )
    if fig["recall"] is not None:
        better = [
            p
            for p, row in ds["peers"].items()
            if row.get("recall_at_adaptive_far") is not None
            and row["recall_at_adaptive_far"] > fig["recall"]
        ]
        beaten = [
            p
            for p, row in ds["peers"].items()
            if row.get("product_recall_at_peer_far") is not None
            and row["recall"] is not None
            and row["recall"] > row["product_recall_at_peer_far"]
        ]
        parts.append(
            "at each peer's own realised FAR the product's scores catch more"
            if not beaten
            else f"at their own realised FAR {', '.join(beaten)} catch more than the product's "
            "scores would"
        )
        parts.append(
            f"recall {fig['recall']:.3f}"
            + (
                "; above every peer at the same FAR"
                if not better
                else f"; below {', '.join(better)} at the same FAR (that peer ranks these "
                "windows better; its own causal threshold is in its row)"
            )
        )
    return "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench quality``."""
    parser = argparse.ArgumentParser(prog="python -m bench quality", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated data sets ({','.join(DATASETS)})")
    parser.add_argument("--markdown", type=Path, default=REPO / "QUALITY.md")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "quality.json")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite QUALITY.md from the results file of an earlier run, running nothing",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        earlier = json.loads(args.out.read_text())
        args.markdown.write_text(render(earlier, earlier.get("command", "python -m bench quality")))
        print(f"quality: wrote {args.markdown} from {args.out}")
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        print(f"quality: unknown data set(s) {unknown}; choose from {DATASETS}", file=sys.stderr)
        return 2
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[quality {time.monotonic() - started:6.1f}s] {line}", flush=True)

    command = "python -m bench quality" + "".join(
        " " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[2:])
    )
    results: dict[str, Any] = {"datasets": {}}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        for name in names:
            try:
                split = load_split(name, log, Path(tmp))
                results["datasets"][name] = evaluate(split, log)
                log(f"{name}: {_verdict(results['datasets'][name])}")
            except (FileNotFoundError, SystemExit) as exc:
                failed += 1
                results["datasets"][name] = {"error": str(exc)}
                log(f"{name}: not run: {exc}")
    results["seconds"] = time.monotonic() - started
    results["command"] = command
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    if not args.only:
        args.markdown.write_text(render(results, command))
        log(f"wrote {args.markdown} and {args.out}")
    else:
        log(f"wrote {args.out} (QUALITY.md is written by a run of every data set)")
    return 1 if failed else 0
