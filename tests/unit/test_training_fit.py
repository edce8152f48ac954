"""End to end: ``training fit`` writes a bundle that the detector's loader reloads and agrees with.

Slow (trains small models): ``pytest -m slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main
from training.data import load_dataset, split_dataset
from training.normalise import fit_normalisation

pytestmark = pytest.mark.slow

T, C = 24, 2


def _windows(tmp_path: Path, n: int = 400, seed: int = 0) -> Path:
    """Two-channel sine windows; 20 % anomalous (a bump on channel 0, a flat channel 1)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, T)
    phase = rng.uniform(0, 0.3, size=(n, 1))
    base = np.stack([np.sin(t + phase), 0.5 * np.cos(t + phase)], axis=-1)
    x = 3.0 + 2.0 * base + rng.normal(0, 0.05, size=(n, T, C))
    labels = (rng.uniform(size=n) < 0.2).astype(np.int8)
    bad = labels == 1
    x[bad, 8:14, 0] += 1.5
    x[bad, :, 1] = 3.0
    path = tmp_path / "windows.npz"
    np.savez(path, windows=x.astype(np.float32), labels=labels, channel_names=np.array(["a", "b"]))
    return path


def dataset_windows(path: Path) -> np.ndarray:
    return load_dataset(path).windows


def _fit(data: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "fit", "--data", str(data), "--out", str(out), "--epochs", "40", "--folds", "2",
            "--widths", "32,16", "--latent", "4", "--batch-size", "64", "--learning-rate", "3e-3",
            "--seed", "0", "--quiet", *extra,
        ]
    )  # fmt: skip


def test_fit_writes_a_bundle_the_detector_reloads_with_the_same_figures(tmp_path: Path) -> None:
    from detector.model import load_bundle

    data = _windows(tmp_path)
    out = tmp_path / "bundle"
    assert _fit(data, out) == 0
    assert {p.name for p in out.iterdir()} == {
        "model.keras",
        "manifest.json",
        "bundle.sha256",
        "report.json",
        "plots",
    }
    assert {p.name for p in (out / "plots").iterdir()} == {
        "loss_curves.png", "error_histograms.png", "reconstructions.png", "roc.png",
    }  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    loaded = load_bundle(out)
    m = loaded.manifest
    assert (m.window_size, m.n_channels, m.channel_names) == (T, C, ["a", "b"])
    assert m.arch == "vae-dense" and m.score.smoothing == 3
    assert m.score.members == 2  # the two cross-fitted fold models score together
    assert loaded.reconstruct(loaded.normalise(dataset_windows(data)[:3])).shape == (3, 2, T, C)
    assert m.reference_errors.n == m.threshold.n_samples == report["data"]["train_normal_windows"]

    # Normalisation was fitted on the normal training windows only.
    dataset = load_dataset(data)
    split = split_dataset(dataset)
    normal_train = split.train[~dataset.anomalous()[split.train]]
    expected = fit_normalisation(dataset.windows[normal_train], "standard")
    assert m.normalisation.offset == pytest.approx(expected.offset, rel=1e-6)

    # Scoring the test split through the detector's loader gives the report's figures.
    from sklearn.metrics import roc_auc_score

    scores = loaded.score(dataset.windows[split.test]).scores
    y = dataset.anomalous()[split.test]
    assert roc_auc_score(y, scores) == report["model"]["test"]["auroc"]
    assert (
        int(np.sum(scores > m.threshold.value))
        == report["model"]["test"]["tp"] + report["model"]["test"]["fp"]
    )
    assert m.metrics["test_auroc"] == report["model"]["test"]["auroc"]
    # The task is easy: the VAE must separate it, and the baseline is reported beside it.
    assert report["model"]["test"]["auroc"] > 0.95
    assert report["baseline"]["test"]["auroc"] is not None
    assert report["model"]["latent_expectation"]["test"]["auroc"] is not None

    # `training evaluate` reproduces them too.
    result_path = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--output",
                 str(result_path), "--quiet"]) == 0  # fmt: skip
    evaluated = json.loads(result_path.read_text())
    assert evaluated["metrics"]["auroc"] == report["model"]["test"]["auroc"]


def test_fit_is_reproducible_and_replaces_a_bundle(tmp_path: Path) -> None:
    data = _windows(tmp_path, n=200, seed=1)
    out = tmp_path / "bundle"
    assert _fit(data, out, "--no-plots", "--no-baseline", "--no-ensemble") == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["score"]["members"] == 1
    assert _fit(data, out, "--no-plots", "--no-baseline", "--no-ensemble") == 0  # in place
    second = json.loads((out / "manifest.json").read_text())
    assert second["threshold"] == first["threshold"]
    assert second["reference_errors"]["sample"] == first["reference_errors"]["sample"]
    assert not list(tmp_path.glob(".bundle.*"))  # no staging or old folder left behind


def test_conv_vae_and_baseline_export_load_with_safe_mode(tmp_path: Path) -> None:
    from detector.model import load_bundle

    data = _windows(tmp_path, n=200, seed=2)
    for arch in ("conv", "ae-baseline"):
        out = tmp_path / arch
        assert (
            _fit(data, out, "--arch", arch, "--widths", "8,8", "--no-plots", "--epochs", "3") == 0
        )
        loaded = load_bundle(out)
        assert loaded.manifest.arch == ("vae-conv" if arch == "conv" else "ae-baseline")
        assert loaded.score(np.zeros((3, T, C), np.float32)).scores.shape == (3,)


def test_fit_on_a_csv_row_range_without_a_test_set(tmp_path: Path) -> None:
    """Real-data flags: a row range, chosen columns, repeated and backward times (clamped by
    default), a label-like column that is not a channel, and --test-fraction 0."""
    rng = np.random.default_rng(0)
    lines = ["timestamp,a,b,noise,changepoint"]
    for i in range(1200):
        stamp = i - 3 if i % 50 == 0 else i  # every 50th row goes back in time
        a, b = np.sin(i / 5), np.cos(i / 5)
        lines.append(f"{stamp},{a:.4f},{b:.4f},{rng.normal():.4f},{int(i == 600)}")
    data = tmp_path / "rig.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "bundle"
    argv = ["--window", "24", "--stride", "4", "--rows", "100:1100", "--columns", "a,b"]
    assert _fit(data, out, *argv, "--test-fraction", "0", "--epochs", "3") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["test"] is None and report["baseline"]["test"] is None
    assert report["data"]["windows"] == (1000 - 24) // 4 + 1
    assert report["data"]["train_normal_windows"] == report["data"]["windows"]
    assert report["data"]["time_policy_rows"] > 0 and report["data"]["rows"] == "100:1100"
    assert json.loads((out / "manifest.json").read_text())["channel_names"] == ["a", "b"]
    assert {p.name for p in (out / "plots").iterdir()} == {"loss_curves.png"}
