"""What the demo says about its run: the bundle check before it starts, and its episodes
compared with the anomalies it injected. Pure (no Kafka, no TensorFlow): the demo reads the
topics and hands the records over; tests call these functions directly.

Truth is per window (the simulator's ``label`` header). Consecutive anomalous windows of a
source are one *incident*. An alert *episode* spans the windows from its ``opened`` alert to
its ``resolved`` one (or to the end of the run). An episode is right when it spans an
anomalous window of its source; an incident is detected when an episode spans one of its
windows. Precision: right episodes / episodes; recall: detected incidents / incidents.

Examples:
    >>> truth = {"ecg-0": [5, 6, 40], "ecg-1": [9]}
    >>> episodes = [Episode("ep-a", "ecg-0", 5, 11), Episode("ep-b", "ecg-1", 20, 25)]
    >>> m = match_episodes(truth, episodes)
    >>> m.incidents, m.detected, m.episodes, m.right
    (3, 1, 2, 1)
    >>> m.precision, round(m.recall or 0, 3)
    (0.5, 0.333)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Episode",
    "EpisodeMatch",
    "bundle_mismatch",
    "episodes_from_alerts",
    "incidents",
    "match_episodes",
]


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert episode: its source and the window seqs it spans (first and last)."""

    episode_id: str
    source_id: str
    first_seq: int
    last_seq: int | None  # None: still open when the run ended


@dataclass(frozen=True, slots=True)
class EpisodeMatch:
    """Episodes against injected truth (see the module docstring)."""

    incidents: int
    detected: int
    episodes: int
    right: int

    @property
    def precision(self) -> float | None:
        """Share of episodes that span an injected anomaly (None without episodes)."""
        return self.right / self.episodes if self.episodes else None

    @property
    def recall(self) -> float | None:
        """Share of incidents an episode spans (None without incidents)."""
        return self.detected / self.incidents if self.incidents else None


def incidents(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive anomalous seqs of one source, as (first, last).

    >>> incidents([7, 3, 4, 5, 9])
    [(3, 5), (7, 7), (9, 9)]
    """
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def episodes_from_alerts(alerts: Iterable[tuple[str, str, str, int]]) -> list[Episode]:
    """Episodes from alerts given as (episode id, source, state, input seq), in any order.

    >>> episodes_from_alerts([("e1", "s", "opened", 4), ("e1", "s", "ongoing", 6),
    ...                       ("e1", "s", "resolved", 12), ("e2", "s", "opened", 30)])
    [Episode(episode_id='e1', source_id='s', first_seq=4, last_seq=12), \
Episode(episode_id='e2', source_id='s', first_seq=30, last_seq=None)]
    """
    first: dict[str, tuple[str, int]] = {}
    last: dict[str, int] = {}
    for episode_id, source, state, seq in alerts:
        seen = first.get(episode_id)
        if seen is None or seq < seen[1]:
            first[episode_id] = (source, seq)
        if state == "resolved":
            last[episode_id] = seq
    return [
        Episode(eid, source, seq, last.get(eid))
        for eid, (source, seq) in sorted(first.items(), key=lambda kv: (kv[1][1], kv[0]))
    ]


def match_episodes(truth: Mapping[str, Sequence[int]], episodes: Sequence[Episode]) -> EpisodeMatch:
    """Compare episodes with the anomalous window seqs of each source."""
    by_source: dict[str, list[Episode]] = {}
    for ep in episodes:
        by_source.setdefault(ep.source_id, []).append(ep)

    def spans(ep: Episode, lo: int, hi: int) -> bool:
        end = ep.last_seq if ep.last_seq is not None else float("inf")
        return ep.first_seq <= hi and lo <= end

    n_incidents = detected = 0
    right: set[str] = set()
    for source, seqs in truth.items():
        for lo, hi in incidents(seqs):
            n_incidents += 1
            hits = [ep for ep in by_source.get(source, []) if spans(ep, lo, hi)]
            if hits:
                detected += 1
                right.update(ep.episode_id for ep in hits)
    return EpisodeMatch(n_incidents, detected, len(episodes), len(right))


def bundle_mismatch(
    bundle: str,
    window_size: int,
    n_channels: int,
    model_id: str,
    stream_window: int,
    stream_channels: int,
) -> str | None:
    """Why a bundle cannot score the demo's stream, with what to do; None when it can.

    >>> print(bundle_mismatch("models/demo", 64, 4, "vae-dense-x", 140, 1))
    models/demo holds vae-dense-x, a model of 64x4 windows, but the demo streams ECG windows \
of 140x1: every window would be dead-lettered (bad_shape). It is not the demo's model \
(did a 'training fit --out models/demo' replace it?). Move it away (mv models/demo \
models/mine) or delete it, and run 'make demo' again: it trains its own (about 1-2 min).
    >>> bundle_mismatch("models/demo", 140, 1, "m", 140, 1) is None
    True
    """
    if (window_size, n_channels) == (stream_window, stream_channels):
        return None
    return (
        f"{bundle} holds {model_id}, a model of {window_size}x{n_channels} windows, but the "
        f"demo streams ECG windows of {stream_window}x{stream_channels}: every window would "
        f"be dead-lettered (bad_shape). It is not the demo's model (did a 'training fit --out "
        f"{bundle}' replace it?). Move it away (mv {bundle} models/mine) or delete it, and "
        "run 'make demo' again: it trains its own (about 1-2 min)."
    )
