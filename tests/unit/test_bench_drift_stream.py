"""The drift scenario's stream: simulated beats with anomaly episodes spliced in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bench import stats
from bench.broker import BrokerInfo
from bench.config import QUICK
from bench.context import Context
from bench.quality import EPISODE_LEN, _drift_stream


def test_episodes_replace_whole_beats_and_carry_their_truth() -> None:
    cfg = replace(QUICK, drift_sources=3, drift_rounds=600)
    ctx = Context(BrokerInfo("127.0.0.1:9", "env", None, None, 0.0), "t", cfg, Path("."), None)
    stream, drift = _drift_stream(ctx)
    n = cfg.drift_sources * cfg.drift_rounds
    assert len(stream) == n and drift.kind == "gradual"
    labels = stream.labels.astype(int)
    types = np.asarray(stream.anomaly_types)
    assert labels.sum() > 0
    assert ((types != "none") == (labels == 1)).all()
    # per source (rounds are interleaved), every episode is 3-12 consecutive windows
    for source in range(cfg.drift_sources):
        own = labels[source :: cfg.drift_sources].tolist()
        for start, end in stats.episodes(own):
            assert EPISODE_LEN[0] <= end - start <= EPISODE_LEN[1] or end == len(own)
            assert len(set(types[source :: cfg.drift_sources][start:end])) == 1
    assert list(stream.source_ids[: cfg.drift_sources]) == ["ecg-0", "ecg-1", "ecg-2"]
    # the drift is in the regimes and leaves the labels alone
    assert stream.regimes[0] == "baseline" and stream.regimes[-1].startswith("drift:gradual")
