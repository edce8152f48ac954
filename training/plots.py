"""PNG figures of a training run (matplotlib, Agg backend, no display needed).

* ``loss_curves.png``: training and validation loss per epoch, model and baseline, each
  with its unit and what its scale means (the VAE's loss is a log-likelihood: negative).
* ``error_histograms.png``: test scores of normal and anomalous windows, with the threshold.
* ``roc.png``: ROC curves of the model and the baseline on the test windows.
* ``reconstructions.png``: a few test windows with their reconstruction and per-step error,
  each with its score against the threshold and the verdict (flagged or not, right or wrong).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["Curve", "ScoredSet", "plot_all", "verdict"]


@dataclass(frozen=True, slots=True)
class Curve:
    """One model's loss history.

    Attributes:
        name: the model.
        history: Keras' history (``loss``, ``val_loss``, ...).
        ylabel: what the loss is, with its unit.
        note: what its scale means, printed under the curves.
    """

    name: str
    history: dict[str, list[float]]
    ylabel: str = "loss"
    note: str = ""


@dataclass(frozen=True, slots=True)
class ScoredSet:
    """One model's test scores and threshold."""

    name: str
    scores: npt.NDArray[np.float32]
    threshold: float


def _figure(rows: int, cols: int, size: tuple[float, float]):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    return plt, fig, axes


def _loss_curves(path: Path, curves: list[Curve]) -> None:
    width = 5.5 * len(curves)
    notes = [textwrap.fill(f"{c.name}: {c.note}", width=int(width * 17)) for c in curves if c.note]
    lines = sum(n.count("\n") + 1 for n in notes)
    height = 3.8 + 0.14 * lines
    plt, fig, axes = _figure(1, len(curves), (width, height))
    for ax, curve in zip(axes[0], curves, strict=True):
        for key, label in (("loss", "training"), ("val_loss", "validation")):
            if key in curve.history:
                epochs = np.arange(1, len(curve.history[key]) + 1)
                ax.plot(epochs, curve.history[key], label=label)
        ax.set_title(f"{curve.name}: loss (lower is better)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(curve.ylabel)
        ax.legend()
    bottom = (0.14 * lines + 0.1) / height if notes else 0.0
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", ha="left")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _histograms(path: Path, sets: list[ScoredSet], anomalous: npt.NDArray[np.bool_]) -> None:
    plt, fig, axes = _figure(1, len(sets), (5.5 * len(sets), 3.8))
    for ax, s in zip(axes[0], sets, strict=True):
        positive = np.maximum(s.scores, np.finfo(np.float32).tiny)
        bins = np.geomspace(positive.min(), positive.max() * 1.01, 60)
        ax.hist(positive[~anomalous], bins=bins, alpha=0.6, label=f"normal ({(~anomalous).sum()})")
        if anomalous.any():
            ax.hist(
                positive[anomalous], bins=bins, alpha=0.6, label=f"anomalous ({anomalous.sum()})"
            )
        ax.axvline(s.threshold, color="k", linestyle="--", label=f"threshold {s.threshold:.3g}")
        ax.set_xscale("log")
        ax.set_title(f"{s.name}: test scores")
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _roc(path: Path, sets: list[ScoredSet], anomalous: npt.NDArray[np.bool_]) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt, fig, axes = _figure(1, 2, (11, 4.2))
    for s in sets:
        fpr, tpr, _ = roc_curve(anomalous, s.scores)
        auc = roc_auc_score(anomalous, s.scores)
        for ax in axes[0]:
            ax.plot(fpr, tpr, label=f"{s.name} (AUROC {auc:.4f})")
    axes[0][0].set_title("ROC (test)")
    axes[0][1].set_xlim(0, 0.05)
    axes[0][1].set_title("ROC, false-alarm rate <= 5%")
    for ax in axes[0]:
        ax.set_xlabel("false-alarm rate")
        ax.set_ylabel("recall")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def verdict(score: float, threshold: float, anomalous: bool) -> str:
    """What the detector makes of a labelled window: flagged when ``score > threshold``.

    Examples:
        >>> verdict(0.2, 0.1, True), verdict(0.05, 0.1, True)
        ('flagged: detected', 'not flagged: missed')
        >>> verdict(0.2, 0.1, False), verdict(0.05, 0.1, False)
        ('flagged: false alarm', 'not flagged: correct')
    """
    flagged = score > threshold
    if anomalous:
        return "flagged: detected" if flagged else "not flagged: missed"
    return "flagged: false alarm" if flagged else "not flagged: correct"


def _reconstructions(
    path: Path,
    x_norm: npt.NDArray[np.float32],
    x_hat: npt.NDArray[np.float32],
    step_errors: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    anomalous: npt.NDArray[np.bool_],
    channel_names: list[str],
    threshold: float,
) -> None:
    order = np.argsort(scores)
    normal_idx = [i for i in order if not anomalous[i]]
    anomal_idx = [i for i in order if anomalous[i]]
    picks = normal_idx[len(normal_idx) // 2 : len(normal_idx) // 2 + 1] + normal_idx[-1:]
    picks += anomal_idx[:1] + anomal_idx[len(anomal_idx) // 2 : len(anomal_idx) // 2 + 1]
    picks = list(dict.fromkeys(int(i) for i in picks))[:4]
    plt, fig, axes = _figure(2, len(picks), (4.2 * len(picks), 6.0))
    steps = np.arange(x_norm.shape[1])
    for col, i in enumerate(picks):
        ch = int(np.argmax(np.abs(x_norm[i] - x_hat[i]).sum(axis=0)))
        top, bottom = axes[0][col], axes[1][col]
        top.plot(steps, x_norm[i, :, ch], label="input")
        top.plot(steps, x_hat[i, :, ch], label="reconstruction")
        kind = "anomalous" if anomalous[i] else "normal"
        relation = ">" if scores[i] > threshold else "<="
        top.set_title(
            f"{kind} window ({channel_names[ch]})\nscore {scores[i]:.3g} {relation} threshold "
            f"{threshold:.3g}: {verdict(float(scores[i]), threshold, bool(anomalous[i]))}",
            fontsize=9,
        )
        top.legend(fontsize=7)
        bottom.fill_between(steps, step_errors[i], color="tab:red", alpha=0.6)
        # The score is the mean per-step error: the two lines compare like with like.
        bottom.axhline(scores[i], color="tab:red", linewidth=1, label="score (mean error)")
        bottom.axhline(threshold, color="k", linestyle="--", linewidth=1, label="threshold")
        bottom.set_xlabel("step")
        bottom.set_ylabel("per-step error")
        bottom.legend(fontsize=7)
    fig.suptitle(
        "Test windows: a typical and the highest-scored normal one, the lowest-scored and a "
        "typical anomalous one. A window is flagged when its score is above the threshold.",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_all(
    out_dir: Path,
    curves: list[Curve],
    sets: list[ScoredSet],
    anomalous: npt.NDArray[np.bool_],
    x_norm: npt.NDArray[np.float32],
    x_hat: npt.NDArray[np.float32],
    step_errors: npt.NDArray[np.float32],
    channel_names: list[str],
) -> list[str]:
    """Write every figure that the data allows into ``out_dir``; return their file names.

    Args:
        out_dir: the bundle's ``plots/`` folder (created).
        curves: loss histories (model first).
        sets: test scores and thresholds (model first).
        anomalous: (N,) test ground truth.
        x_norm: (N, T, C) normalised test windows.
        x_hat: (N, T, C) the model's reconstructions.
        step_errors: (N, T) the model's per-step errors.
        channel_names: C names.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if curves:
        _loss_curves(out_dir / "loss_curves.png", curves)
        written.append("loss_curves.png")
    if sets and len(anomalous):
        _histograms(out_dir / "error_histograms.png", sets, anomalous)
        written.append("error_histograms.png")
        _reconstructions(
            out_dir / "reconstructions.png",
            x_norm,
            x_hat,
            step_errors,
            sets[0].scores,
            anomalous,
            channel_names,
            sets[0].threshold,
        )
        written.append("reconstructions.png")
    if sets and 0 < anomalous.sum() < anomalous.size:
        _roc(out_dir / "roc.png", sets, anomalous)
        written.append("roc.png")
    return written
