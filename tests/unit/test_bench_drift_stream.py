"""The drift scenario's stream: simulated beats with anomaly episodes spliced in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bench import stats
from bench.broker import BrokerInfo
from bench.config import QUICK
from bench.context import Context
from bench.data import SIM_SOURCES, sim_batches, train_rounds
from bench.quality import EPISODE_LEN, _drift_stream
from producer.simulate import make_arrays


def test_episodes_replace_whole_beats_and_carry_their_truth() -> None:
    cfg = replace(QUICK, drift_rounds=300, sim_train_windows=320)
    ctx = Context(BrokerInfo("127.0.0.1:9", "env", None, None, 0.0), "t", cfg, Path("."), None)
    stream, drift = _drift_stream(ctx)
    s = SIM_SOURCES
    assert len(stream) == s * cfg.drift_rounds and drift.kind == "gradual"
    # the stream starts after the bundle's training rounds
    assert int(stream.seqs[0]) == train_rounds(cfg.sim_train_windows) == 20
    assert drift.start == 20 + 90
    labels = stream.labels.astype(int)
    types = np.asarray(stream.anomaly_types)
    assert labels.sum() > 0
    assert ((types != "none") == (labels == 1)).all()
    # per source (rounds are interleaved), every episode is 3-12 consecutive windows of a type
    for source in range(s):
        own = labels[source::s].tolist()
        for start, end in stats.episodes(own):
            assert EPISODE_LEN[0] <= end - start <= EPISODE_LEN[1] or end == len(own)
            assert len(set(types[source::s][start:end])) == 1
    assert list(stream.source_ids[:3]) == ["ecg-0", "ecg-1", "ecg-2"]
    assert stream.regimes[0] == "baseline" and stream.regimes[-1].startswith("drift:gradual")


def test_streams_skip_exactly_the_training_rounds() -> None:
    train = make_arrays("ecg", 5 * SIM_SOURCES, seed=101, n_sources=SIM_SOURCES)
    whole = next(sim_batches(8 * SIM_SOURCES))
    after = next(sim_batches(3 * SIM_SOURCES, skip_rounds=5))
    np.testing.assert_array_equal(whole.values[: len(train)], train.values)
    np.testing.assert_array_equal(after.values, whole.values[len(train) :])
    assert after.seqs[0] == 5 and len(after) == 3 * SIM_SOURCES
