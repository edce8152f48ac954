"""A model trained on simulated normal windows separates the injected anomalies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from producer.simulate import make_arrays

pytestmark = pytest.mark.slow


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_injected_ecg_anomalies_are_separable(tmp_path: Path) -> None:
    kind = "ecg"
    from detector.model import load_bundle
    from tests.bundle_factory import build_bundle

    normal = make_arrays(kind, 3000, seed=0, n_sources=4).values
    bundle = build_bundle(tmp_path / kind, normal, epochs=30)
    test = make_arrays(kind, 3000, seed=1, n_sources=4, anomaly_rate=0.1)
    scores = load_bundle(bundle).score(test.values).scores
    auroc = _auroc(np.asarray(scores, dtype=np.float64), test.labels)
    print(f"{kind}: AUROC {auroc:.3f} on {int(test.labels.sum())} injected anomalies")
    assert auroc >= 0.95
