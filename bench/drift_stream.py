"""The drift scenario's stream: simulated beats drifting in amplitude, anomaly episodes spliced in.

Pure data (numpy and the producer's simulator): the drift section streams it through Kafka,
the quality report (``python -m bench quality``) replays it offline beside the peers.
"""

from __future__ import annotations

import numpy as np

from bench.data import SIM_SOURCES, sim_batches, train_rounds
from producer.anomalies import ECG_ANOMALIES
from producer.scenarios import DriftScenario
from producer.windows import WindowBatch, concat_batches

__all__ = [
    "DRIFT_SCENARIOS",
    "DRIFT_SEED",
    "EPISODE_LEN",
    "EPISODE_START_P",
    "EPISODE_WARMUP",
    "drift_stream",
]

DRIFT_SEED = 31  # where the episodes go
# name -> (amplitude magnitude at full drift, what the scenario shows). The moderate drift
# is one a per-source recalibration should follow; the large one roughly doubles the normal
# scores over the ramp (720 windows per source in quick mode), faster than even an oracle
# with the labels tracks within 2x of the target rate.
DRIFT_SCENARIOS: dict[str, tuple[float, str]] = {
    "moderate": (0.2, "gradual drift that recalibration should absorb"),
    "large": (0.5, "drift beyond what recalibration absorbs quickly"),
}
EPISODE_START_P = 0.006  # per window outside an episode
EPISODE_LEN = (3, 12)  # consecutive anomalous windows
EPISODE_WARMUP = 50  # no episode in a source's first windows


def _stream(
    rounds: int, train_windows: int, drift: DriftScenario, rate: float, kind: str
) -> WindowBatch:
    return concat_batches(
        list(
            sim_batches(
                SIM_SOURCES * rounds,
                skip_rounds=train_rounds(train_windows),
                anomaly_rate=rate,
                anomaly_types=[kind],
                drift=drift,
            )
        )
    )


def drift_stream(
    rounds: int, train_windows: int, magnitude: float
) -> tuple[WindowBatch, DriftScenario]:
    """Drifting normal beats with anomaly episodes of 3-12 consecutive windows spliced in.

    Args:
        rounds: windows per source.
        train_windows: windows the simulated-ECG bundle trained on (the stream starts after).
        magnitude: amplitude drift at its full extent.

    Each anomalous stream is the normal one regenerated with every beat carrying one anomaly
    type (same seed, same sources, same drift), so an episode replaces a source's beats by
    its own beats with the anomaly, beat for beat. The episodes depend only on
    :data:`DRIFT_SEED`, so every magnitude carries the same ones.
    """
    n_sources = SIM_SOURCES
    first = train_rounds(train_windows)  # seq of the stream's first round
    drift = DriftScenario(
        "gradual",
        target="amplitude",
        magnitude=magnitude,
        start=first + int(rounds * 0.3),
        length=int(rounds * 0.4),
    )
    base = _stream(rounds, train_windows, drift, 0.0, ECG_ANOMALIES[0])
    anomalous = {kind: _stream(rounds, train_windows, drift, 1.0, kind) for kind in ECG_ANOMALIES}
    values = base.values.copy()
    labels = np.zeros(len(base), dtype=np.int8)
    types = ["none"] * len(base)
    rng = np.random.default_rng(DRIFT_SEED)
    for source in range(n_sources):
        r = EPISODE_WARMUP
        while r < rounds:
            if rng.random() >= EPISODE_START_P:
                r += 1
                continue
            length = int(rng.integers(EPISODE_LEN[0], EPISODE_LEN[1] + 1))
            kind = ECG_ANOMALIES[int(rng.integers(len(ECG_ANOMALIES)))]
            for j in range(r, min(r + length, rounds)):
                i = j * n_sources + source  # rounds: one window per source, in order
                values[i] = anomalous[kind].values[i]
                labels[i] = 1
                types[i] = kind
            r += length + 1
    stream = WindowBatch(
        list(base.source_ids),
        base.seqs,
        values,
        labels,
        types,
        list(base.regimes),
        base.channel_names,
    )
    return stream, drift
