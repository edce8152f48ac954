"""Models trained on simulated normal windows separate the injected anomalies (AUROC >= 0.95).

Two models: a PCA reconstruction model (numpy SVD, always), and the project's VAE trained
with ``training fit --format npz`` on the file ``producer simulate --out`` writes (the offline
demo's path). Training and test streams use different seeds: the model must generalise to
other patients/machines. It crosses three packages (producer, training, detector), so it lives
in ``tests/pipeline/``, not with the unit tests, and a broken import fails it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from detector.model import load_bundle
from producer.__main__ import main as producer_main
from producer.simulate import make_arrays
from training.__main__ import main as training_main

# The CLIs configure structlog (cached loggers): start and end with its defaults.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_structlog")]

N_TRAIN = 3000
N_TEST = 2000
ANOMALY_RATE = 0.2


def _auroc(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    """Mann-Whitney AUROC (ties get their average rank)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores[np.r_[False, np.diff(scores[order]) == 0]]):
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_auroc_helper_is_right_on_known_cases() -> None:
    labels = np.array([0, 0, 1, 1], dtype=np.int8)
    assert _auroc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert _auroc(np.array([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert _auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5


class PcaModel:
    """Per-channel standardisation, then PCA; score = squared reconstruction error."""

    def __init__(self, normal: npt.NDArray[np.float32], components: int = 10) -> None:
        self.offset = normal.mean(axis=(0, 1))
        self.scale = normal.std(axis=(0, 1)) + 1e-6
        x = self._flat(normal)
        self.mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.basis = vt[:components].T

    def _flat(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        z = (windows.astype(np.float64) - self.offset) / self.scale
        return z.reshape(len(windows), -1)

    def score(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        x = self._flat(windows) - self.mean
        residual = x - (x @ self.basis) @ self.basis.T
        out: npt.NDArray[np.float64] = (residual**2).mean(axis=1)
        return out


@pytest.mark.parametrize("kind", ["ecg", "sensor"])
def test_pca_on_normal_windows_separates_injected_anomalies(kind: str) -> None:
    normal = make_arrays(kind, N_TRAIN, seed=0, n_sources=4).values  # type: ignore[arg-type]
    test = make_arrays(kind, N_TEST, seed=1, n_sources=4, anomaly_rate=ANOMALY_RATE)  # type: ignore[arg-type]
    scores = PcaModel(normal).score(test.values)
    auroc = _auroc(scores, test.labels)
    types = np.asarray(test.anomaly_types)
    per_type = {
        t: round(
            _auroc(
                scores[(types == t) | (types == "none")],
                test.labels[(types == t) | (types == "none")],
            ),
            3,
        )
        for t in sorted(set(test.anomaly_types) - {"none"})
    }
    print(f"{kind} PCA: AUROC {auroc:.3f} on {int(test.labels.sum())} anomalies; {per_type}")
    assert auroc >= 0.95
    assert min(per_type.values()) >= 0.8, f"an anomaly type the model barely sees: {per_type}"


@pytest.mark.parametrize("kind", ["ecg", "sensor"])
def test_training_vae_on_a_simulated_normal_file_separates_anomalies(
    tmp_path: Path, kind: str
) -> None:
    data = tmp_path / "normal.npz"
    argv = ["simulate", "--kind", kind, "--sources", "4", "--count", str(N_TRAIN)]
    assert producer_main([*argv, "--anomaly-rate", "0", "--seed", "0", "--out", str(data)]) == 0
    bundle = tmp_path / "bundle"
    fit = ["fit", "--format", "npz", "--data", str(data), "--epochs", "15", "--folds", "2"]
    fit += ["--no-baseline", "--no-plots", "--quiet", "--seed", "0", "--threads", "2"]
    assert training_main([*fit, "--out", str(bundle)]) == 0
    test = make_arrays(kind, N_TEST, seed=1, n_sources=4, anomaly_rate=ANOMALY_RATE)  # type: ignore[arg-type]
    scores = np.asarray(load_bundle(bundle).score(test.values).scores, dtype=np.float64)
    auroc = _auroc(scores, test.labels)
    print(f"{kind} VAE (training fit): AUROC {auroc:.3f} on {int(test.labels.sum())} anomalies")
    assert auroc >= 0.95
