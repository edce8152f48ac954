"""Backtest: the service's core driven over a file, offline, with per-window output.

``detector backtest`` reads a labelled (or unlabelled) file with the one data module
(:mod:`detector.datafile`), encodes every window as the record the producer would have sent,
and puts the records through the same :class:`~detector.core.BatchDecider` as the service
(decode and validation, the bundle's scorer, per-source thresholds, episodes) in stream order.
Records are numbered as offsets of one partition of ``topic``, so the alert ids are the ones
the service gives the same file replayed into an empty one-partition topic of that name.

It writes, into ``OUT``:

* ``windows.csv``: one row per window: ``end_row``, ``event_time_ms``, ``source_id``,
  ``score``, ``threshold``, ``scope``, ``flagged``, ``episode_id``, ``label``;
* ``summary.json``: :func:`summarise` (realised false-alarm rate on normal windows after each
  source's warm-up, recall, precision, F1, AUROC, episodes per 1,000 normal windows, time to
  detect, threshold changes, events) with the settings that produced it;
* ``alerts.jsonl`` and ``events.jsonl``: every alert and event, as the topics would carry them;
* ``timeline.png``: score and threshold over time, labelled windows shaded, episodes marked
  (when matplotlib is installed: ``pip install '.[train]'``).

**Warm-up.** A source's windows before its first own threshold (``scope == "source"``) are
judged by the bundle's global threshold. The summary reports the rates after warm-up (the
promise is about the calibrated detector) and over every window, side by side.

Why one module of ~520 lines: the replay, its summary (AUROC, episode recall, realised
false-alarm rate) and the files it writes share one :class:`BacktestRun` and one layout
(``windows.csv``, ``summary.json``); ``detector backtest``, the quality report and the Kafka
parity test read them back. Reading files is :mod:`detector.datafile`'s, deciding is the
core's.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from detector.alerts import Alert
from detector.core import BatchDecider, BatchScores, InputRecord, Prepared, build_decider
from detector.errors import ConfigError
from detector.events import Event, encode_event
from detector.lifecycle import LifecycleSettings
from detector.messages import encode_binary
from detector.threshold import ThresholdConfig

__all__ = [
    "BacktestRun",
    "auroc",
    "backtest_file",
    "episode_spans",
    "replay_records",
    "summarise",
    "window_records",
    "write_outputs",
]

SCORE_BATCH = 1024


@dataclass(slots=True)
class BacktestRun:
    """Per-window decisions, in the order of the records given.

    Attributes:
        scores, thresholds, flags: each window's score, the threshold it was judged against,
            and whether it was flagged.
        scopes: ``"source"`` or ``"global"``: whose threshold judged it.
        episode_ids: the episode the window belongs to (``""`` outside any).
        index: for each decided window, its position in the records given (dead letters
            leave gaps).
        inputs: for each decided window, its record's (partition, offset).
        alerts, events: everything the core emitted, in order.
        dead_letters: (position, reason, detail) of records the core refused.
    """

    scores: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    flags: list[bool] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    episode_ids: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    inputs: list[tuple[int, int]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    dead_letters: list[tuple[int, str, str]] = field(default_factory=list)


def window_records(
    values: npt.NDArray[np.floating],
    source_ids: Sequence[str],
    event_time_ms: npt.NDArray[np.integer],
    *,
    topic: str = "backtest",
) -> list[InputRecord]:
    """Windows as the records a producer would send (binary encoding, key = source id).

    Offsets count from 0 on partition 0 of ``topic``, in the order given.
    """
    records = []
    seq: dict[str, int] = {}
    for i in range(values.shape[0]):
        source = source_ids[i]
        n = seq.get(source, 0)
        seq[source] = n + 1
        t = int(event_time_ms[i])
        value, headers = encode_binary(source, n, t, values[i])
        records.append(InputRecord(topic, 0, i, source.encode(), value, headers, t))
    return records


def replay_records(
    core: BatchDecider,
    score: Callable[[npt.NDArray[np.float32]], BatchScores],
    records: list[InputRecord],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestRun:
    """Decide every record as the service would, one window at a time, scored in batches.

    Args:
        core: a fresh core (its state is the run's).
        score: the bundle's scorer (``LoadedModel.score``), or any function with its contract.
        records: in stream order.
        progress: called with (records done, total) after every scored batch.
    """
    out = BacktestRun()
    position = {id(r): i for i, r in enumerate(records)}
    for start in range(0, len(records), SCORE_BATCH):
        prepared = core.prepare(records[start : start + SCORE_BATCH])
        out.dead_letters.extend(
            (position[id(d.record)], d.reason, d.detail) for d in prepared.dead_letters
        )
        if prepared.windows:
            result = score(prepared.batch)
            for i, (record, window) in enumerate(
                zip(prepared.records, prepared.windows, strict=True)
            ):
                one = Prepared([record], [window], prepared.batch[i : i + 1], [])
                part = result.take(slice(i, i + 1))
                info = core.bank.get(window.source_id)
                was = core.tracker.episode_id(window.source_id)
                decisions = core.decide(one, part, window.event_time_ms)
                if one.dead_letters:  # the model scored it NaN or infinite
                    out.dead_letters.extend(
                        (position[id(d.record)], d.reason, d.detail) for d in one.dead_letters
                    )
                    continue
                now = core.tracker.episode_id(window.source_id)
                out.scores.append(float(part.scores[0]))
                out.thresholds.append(float(info.value))
                out.scopes.append(info.scope)
                out.flags.append(decisions.flagged > 0)
                ended = [a.episode_id for a in decisions.alerts if a.state.value == "resolved"]
                out.episode_ids.append(now or was or (ended[0] if ended else ""))
                out.index.append(position[id(record)])
                out.inputs.append((record.partition, record.offset))
                out.alerts.extend(decisions.alerts)
                out.events.extend(decisions.events)
        if progress is not None:
            progress(min(start + SCORE_BATCH, len(records)), len(records))
    return out


def auroc(scores: npt.ArrayLike, positive: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes.

    >>> auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.shape[0], dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.shape[0]]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def episode_spans(labels: npt.NDArray[np.bool_], sources: Sequence[str]) -> list[list[int]]:
    """Runs of consecutive anomalous windows of one source (positions into ``labels``)."""
    spans: list[list[int]] = []
    current: dict[str, list[int]] = {}
    for i, (anomalous, source) in enumerate(zip(labels.tolist(), sources, strict=True)):
        run = current.get(source)
        if anomalous:
            if run is None:
                run = current[source] = []
                spans.append(run)
            run.append(i)
        elif run is not None:
            del current[source]
    return spans


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def summarise(
    run: BacktestRun,
    labels: npt.NDArray[np.bool_] | None,
    sources: Sequence[str],
    event_time_ms: npt.NDArray[np.integer],
    target_far: float,
) -> dict[str, Any]:
    """Realised rates and detection figures of a run (see the module docstring).

    ``labels``, ``sources`` and ``event_time_ms`` are per decided window (``run.index``
    order). Without labels every window counts as normal and recall is None.
    """
    flags = np.asarray(run.flags, dtype=bool)
    n = flags.shape[0]
    y = np.zeros(n, dtype=bool) if labels is None else np.asarray(labels, dtype=bool)
    warm = np.asarray([s == "source" for s in run.scopes], dtype=bool)
    calibrated = np.zeros(n, dtype=bool)  # from each source's first own threshold on
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if warm[i]:
            seen.add(source)
        calibrated[i] = source in seen
    scores = np.asarray(run.scores, dtype=np.float64)
    # a run built by hand may leave inputs out: then its records are window_records' (offset
    # = position on partition 0)
    inputs = run.inputs or [(0, record) for record in run.index]
    position = {key: i for i, key in enumerate(inputs)}
    opened = [
        position[(a.input.partition, a.input.offset)]
        for a in run.alerts
        if a.state.value == "opened"
    ]

    def part(mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
        normal = mask & ~y
        anomalous = mask & y
        tp = int((flags & anomalous).sum())
        fp = int((flags & normal).sum())
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, int(anomalous.sum())) if labels is not None else None
        f1 = (
            None
            if precision is None or recall is None or precision + recall == 0
            else 2 * precision * recall / (precision + recall)
        )
        openers = [i for i in opened if mask[i]]
        false_openers = sum(1 for i in openers if not y[i])
        return {
            "windows": int(mask.sum()),
            "normal_windows": int(normal.sum()),
            "anomalous_windows": int(anomalous.sum()),
            "flagged": int((flags & mask).sum()),
            "far": _ratio(fp, int(normal.sum())),
            "far_vs_target": None
            if _ratio(fp, int(normal.sum())) is None
            else fp / int(normal.sum()) / target_far,
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "auroc": auroc(scores[mask], y[mask]) if labels is not None else None,
            "episodes": len(openers),
            "false_episodes": false_openers,
            "false_episodes_per_1000_normal": _ratio(1000.0 * false_openers, int(normal.sum())),
        }

    detect = []
    times = np.asarray(event_time_ms, dtype=np.int64)
    spans = episode_spans(y, sources) if labels is not None else []
    for span in spans:
        hit = next((j for j in span if flags[j]), None)
        detect.append(
            None
            if hit is None
            else {"windows": span.index(hit), "ms": int(times[hit] - times[span[0]])}
        )
    found = [d for d in detect if d is not None]
    events: dict[str, int] = {}
    for ev in run.events:
        events[ev.type] = events.get(ev.type, 0) + 1
    alerts: dict[str, int] = {}
    for alert in run.alerts:
        alerts[alert.state.value] = alerts.get(alert.state.value, 0) + 1
    dead: dict[str, int] = {}
    for _, reason, _ in run.dead_letters:
        dead[reason] = dead.get(reason, 0) + 1
    return {
        "target_far": target_far,
        "after_warmup": part(calibrated),
        "all_windows": part(np.ones(n, dtype=bool)),
        "warmup_windows": int((~calibrated).sum()),
        "labelled": labels is not None,
        "anomaly_spans": len(spans),
        "spans_detected": len(found),
        "median_windows_to_detect": None
        if not found
        else float(np.median([d["windows"] for d in found])),
        "median_ms_to_detect": None if not found else float(np.median([d["ms"] for d in found])),
        "threshold_states_due": events.get("threshold_recalibrated", 0),
        "events": events,
        "alerts": alerts,
        "dead_letters": dead,
    }


def write_outputs(
    out: Path,
    run: BacktestRun,
    *,
    end_row: npt.NDArray[np.integer],
    event_time_ms: npt.NDArray[np.integer],
    sources: Sequence[str],
    labels: npt.NDArray[np.bool_] | None,
    summary: dict[str, Any],
    plot: bool = True,
) -> list[Path]:
    """Write windows.csv, summary.json, alerts.jsonl, events.jsonl (and timeline.png).

    The per-window arrays are per decided window (``run.index`` order). Returns the paths
    written.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    path = out / "windows.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["end_row", "event_time_ms", "source_id", "score", "threshold", "scope",
             "flagged", "episode_id", "label"]
        )  # fmt: skip
        for i in range(len(run.flags)):
            w.writerow(
                [
                    int(end_row[i]),
                    int(event_time_ms[i]),
                    sources[i],
                    f"{run.scores[i]:.9g}",
                    f"{run.thresholds[i]:.9g}",
                    run.scopes[i],
                    int(run.flags[i]),
                    run.episode_ids[i],
                    "" if labels is None else int(labels[i]),
                ]
            )
    written.append(path)
    path = out / "summary.json"
    path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    written.append(path)
    path = out / "alerts.jsonl"
    path.write_bytes(b"".join(a.model_dump_json().encode() + b"\n" for a in run.alerts))
    written.append(path)
    path = out / "events.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in run.events))
    written.append(path)
    if plot:
        png = _timeline(out / "timeline.png", run, event_time_ms, sources, labels, summary)
        if png is not None:
            written.append(png)
    return written


def _timeline(
    path: Path,
    run: BacktestRun,
    event_time_ms: npt.NDArray[np.integer],
    sources: Sequence[str],
    labels: npt.NDArray[np.bool_] | None,
    summary: dict[str, Any],
) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = sorted(set(sources), key=list(sources).index)[:4]  # the first few sources
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 3.2 * len(names)), squeeze=False)
    x_all = np.arange(len(run.flags))
    for ax, name in zip(axes[:, 0], names, strict=False):
        mask = np.asarray([s == name for s in sources])
        x = x_all[mask]
        score = np.asarray(run.scores)[mask]
        thr = np.asarray(run.thresholds)[mask]
        flag = np.asarray(run.flags)[mask]
        if labels is not None:
            lab = np.asarray(labels)[mask]
            for span in episode_spans(lab, [name] * int(mask.sum())):
                ax.axvspan(x[span[0]], x[span[-1]], color="tab:red", alpha=0.15, lw=0)
        ax.plot(x, score, lw=0.6, color="tab:blue", label="score")
        ax.plot(x, thr, lw=1.0, color="black", drawstyle="steps-post", label="threshold")
        ax.plot(x[flag], score[flag], ".", ms=3, color="tab:red", label="flagged")
        if np.all(score > 0) and score.max() / max(score.min(), 1e-30) > 100:
            ax.set_yscale("log")
        ax.set_ylabel("reconstruction score")
        ax.set_title(f"source {name}", loc="left", fontsize=10)
    after = summary["after_warmup"]
    far = after["far"]
    rec = after["recall"]
    head = (
        f"realised false-alarm rate {far:.2%} (target {summary['target_far']:.2%})"
        if far is not None
        else "no normal window"
    )
    if rec is not None:
        head += f", recall {rec:.1%}"
    axes[0, 0].set_title(head + " after warm-up; red bands: labelled anomalies", loc="right",
                         fontsize=9)  # fmt: skip
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("window (stream order)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def backtest_file(
    bundle_dir: Path,
    data_path: Path,
    out: Path,
    *,
    threshold: ThresholdConfig,
    lifecycle: LifecycleSettings,
    read: dict[str, Any] | None = None,
    score_from_row: int = 0,
    topic: str = "backtest",
    plot: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``detector backtest``: read, replay through a fresh core, summarise, write ``out``.

    Args:
        bundle_dir: the model bundle.
        data_path: the file (any format of :func:`detector.datafile.read_windows`).
        out: the output folder (created).
        threshold, lifecycle: the settings the service would run with.
        read: keyword arguments for :func:`~detector.datafile.read_windows` (``window``
            defaults to the bundle's).
        score_from_row: windows whose last row is before this data row are not scored
            (earlier rows are context only, e.g. the training rows).
        topic: the topic name the alert ids are computed for.
        plot: write ``timeline.png`` (needs matplotlib).
        progress: called with one line of progress text now and then.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        BundleError: the bundle cannot be loaded.
        DataFileError: the file cannot be read.
        ConfigError: the file does not fit the bundle (window length, channels), or no
            window is left to score.
    """
    from detector import model as model_module
    from detector.bundle import read_manifest
    from detector.datafile import read_windows

    say = progress or (lambda _line: None)
    manifest = read_manifest(bundle_dir)  # no TensorFlow yet: file problems are found first
    kwargs = {"window": manifest.window_size, **(read or {})}
    data = read_windows(data_path, **kwargs)
    if data.values.shape[1:] != (manifest.window_size, manifest.n_channels):
        raise ConfigError(
            f"{data_path}: windows of {data.values.shape[1]} steps x {data.values.shape[2]} "
            f"channels ({', '.join(data.channel_names)}); the bundle expects "
            f"{manifest.window_size} x {manifest.n_channels} ({', '.join(manifest.channel_names)})"
            "; choose the channels with --columns"
        )
    keep = np.flatnonzero(data.end_row >= score_from_row)
    if keep.shape[0] == 0:
        raise ConfigError(
            f"{data_path}: no window ends at or after row {score_from_row} "
            f"(the file has {int(data.end_row.max()) + 1 if len(data) else 0} data rows)"
        )
    for note in data.notes():
        say(note)
    sources = [data.source_ids[i] for i in keep]
    times = data.event_time_ms[keep]
    records = window_records(data.values[keep], sources, times, topic=topic)
    model = model_module.load_bundle(bundle_dir)
    core = build_decider(model.manifest, threshold, lifecycle)
    say(f"backtest: {len(records)} windows of {data_path.name} through {bundle_dir}")

    def tick(done: int, total: int) -> None:
        if done == total or done % (SCORE_BATCH * 8) == 0:
            say(f"backtest: {done}/{total} windows")

    run = replay_records(core, model.score, records, progress=tick)
    idx = np.asarray(run.index, dtype=np.intp)
    labels = None if data.labels is None else data.labels[keep][idx]
    kept_sources = [sources[i] for i in idx]
    summary = summarise(run, labels, kept_sources, times[idx], threshold.target_far)
    summary["settings"] = {
        "bundle": str(bundle_dir),
        "data": str(data_path),
        "format": data.fmt,
        "score_from_row": score_from_row,
        "window": manifest.window_size,
        "stride": data.window_stride or None,
        "time_policy": data.time_policy,
        "time_policy_touched": data.policy_touched,
        "threshold": threshold.model_dump(),
        "lifecycle": lifecycle.model_dump(),
    }
    write_outputs(
        out,
        run,
        end_row=data.end_row[keep][idx],
        event_time_ms=times[idx],
        sources=kept_sources,
        labels=labels,
        summary=summary,
        plot=plot,
    )
    return summary
