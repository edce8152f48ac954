"""Training loops: one seeded model, and K-fold cross-fitting for out-of-fold scores.

Models train on normal windows only. Each fit holds out ``val_fraction`` of its windows for
early stopping: the validation loss is computed once per epoch, training stops after
``patience`` epochs without improvement, and the best epoch's weights are restored.
Cross-fitting trains K models, each on K-1 folds of the normal training windows, and scores
every window with the model that did not see it: these out-of-fold scores are the
calibration sample (:mod:`training.calibrate`) and the manifest's reference distribution.
They are what a model trained this way scores on normal windows it has never seen.

Scores are computed with :func:`detector.model.score_reconstruction` behind the same
compiled reconstruction call the detector uses, so they obey the bundle's contract exactly.
Runs are seeded (weights, shuffling, sampling, folds) and TensorFlow's ops are made
deterministic, so the same seed gives the same bundle.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from detector.bundle import ScoreSpec
from detector.model import compile_reconstructor, score_reconstruction
from training.models import ArchSpec, build_model, inference_model

__all__ = [
    "CrossFit",
    "FitConfig",
    "TrainedModel",
    "configure_tensorflow",
    "cross_fit",
    "latent_expectation_scores",
    "score_windows",
    "train_one",
]

log = structlog.get_logger("training")
LATENT_SAMPLES = 8


@dataclass(frozen=True, slots=True)
class FitConfig:
    """How to fit one model."""

    epochs: int = 150
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 20  # 0 = no early stopping
    val_fraction: float = 0.1
    log_every: int = 25  # epochs between progress lines; 0 = only the last


@dataclass(slots=True)
class TrainedModel:
    """A fitted model and its history."""

    model: Any
    spec: ArchSpec
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    seconds: float
    n_train: int
    n_val: int


@dataclass(slots=True)
class CrossFit:
    """Out-of-fold scores of the normal training windows."""

    scores: npt.NDArray[np.float32]
    fold: npt.NDArray[np.intp]
    models: list[TrainedModel] = field(default_factory=list)
    latent_scores: npt.NDArray[np.float32] | None = None
    seconds: float = 0.0


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (TensorFlow's C++ start-up chatter bypasses Python)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def configure_tensorflow(threads: int, deterministic: bool = True) -> None:
    """Import TensorFlow quietly, limit its thread pools and make its ops deterministic.

    Call before any TensorFlow op runs. Python exceptions still surface normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    tf.get_logger().setLevel("ERROR")  # per-fold tf.functions trip its "retracing" heuristic
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised (tests that call it twice): keep what is set
        pass
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _progress_callback(label: str, total: int, every: int) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if every and (epoch + 1) % every == 0:
                logs = logs or {}
                log.info(
                    "epoch",
                    model=label,
                    epoch=epoch + 1,
                    of=total,
                    loss=round(float(logs.get("loss", np.nan)), 4),
                    val_loss=round(float(logs.get("val_loss", np.nan)), 4),
                    seconds=round(time.monotonic() - self.started, 1),
                )

    return Progress()


def _validation_stopper(x_val: npt.NDArray[np.float32], patience: int, beta: float | None) -> Any:
    """Early stopping on the loss of ``x_val``, computed in one compiled call per epoch.

    Keras' own validation pass costs ~70 ms an epoch here (it rebuilds its data pipeline);
    this costs ~1 ms. For the VAE the loss decodes the posterior mean, so it does not jitter
    with the latent sample. The best epoch's weights are restored at the end. ``beta`` None
    means a plain autoencoder (mean absolute error).
    """
    import keras
    import tensorflow as tf

    class ValidationStopper(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best = np.inf
            self.best_epoch = 0
            self.best_weights: list[Any] | None = None
            self.wait = 0
            self._x = tf.constant(x_val)
            self._fn: Any = None

        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            model = self.model
            if beta is None:
                self._fn = tf.function(
                    lambda x: tf.reduce_mean(tf.abs(x - model(x, training=False)))
                )
            else:

                def vae_loss(x: Any) -> Any:
                    rec, kl = model.loss_terms(x, training=False, sample=False)
                    return rec + beta * kl

                self._fn = tf.function(vae_loss)

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            value = float(self._fn(self._x))
            if logs is not None:
                logs["val_loss"] = value  # History runs after this callback and records it
            if value < self.best:
                self.best, self.best_epoch, self.wait = value, epoch + 1, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
                if patience and self.wait >= patience:
                    self.model.stop_training = True

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return ValidationStopper()


def train_one(
    spec: ArchSpec, x: npt.NDArray[np.float32], seed: int, cfg: FitConfig, label: str = "model"
) -> TrainedModel:
    """Fit one model on normalised normal windows ``x`` (N, T, C), seeded.

    ``cfg.val_fraction`` of ``x`` (a seeded random subset) is held out for early stopping.
    """
    import keras

    order = np.random.default_rng(seed).permutation(len(x))
    n_val = round(cfg.val_fraction * len(x)) if len(x) >= 10 else 0
    x_val, x_fit = x[order[:n_val]], x[order[n_val:]]
    model = build_model(spec, seed)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    is_ae = spec.arch == "ae-baseline"
    model.compile(optimizer=optimizer, loss="mae" if is_ae else None, steps_per_execution=8)
    callbacks: list[Any] = []
    if n_val:
        callbacks.append(_validation_stopper(x_val, cfg.patience, None if is_ae else spec.beta))
    callbacks.append(_progress_callback(label, cfg.epochs, cfg.log_every))
    started = time.monotonic()
    hist = model.fit(
        x_fit,
        x_fit if is_ae else None,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.monotonic() - started
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    epochs_run = len(history.get("loss", []))
    val_losses = history.get("val_loss")
    best = int(np.argmin(val_losses)) + 1 if val_losses else epochs_run
    log.info(
        "fitted",
        model=label,
        epochs=epochs_run,
        best_epoch=best,
        n_train=len(x_fit),
        n_val=n_val,
        seconds=round(seconds, 1),
    )
    return TrainedModel(model, spec, history, epochs_run, best, seconds, len(x_fit), n_val)


def score_windows(
    trained: TrainedModel, x_norm: npt.NDArray[np.float32], score: ScoreSpec
) -> npt.NDArray[np.float32]:
    """Scores of normalised windows under the bundle's contract (posterior-mean scorer)."""
    spec = trained.spec
    recon = compile_reconstructor(
        inference_model(trained.model, spec), spec.window_size, spec.n_channels
    )
    return score_reconstruction(x_norm, recon(x_norm), score).scores


def latent_expectation_scores(
    trained: TrainedModel,
    x_norm: npt.NDArray[np.float32],
    score: ScoreSpec,
    samples: int = LATENT_SAMPLES,
    seed: int = 0,
) -> npt.NDArray[np.float32] | None:
    """The alternative score: the error averaged over ``samples`` draws of z ~ q(z|x).

    None for the plain AE (it has no posterior).
    """
    if trained.spec.arch == "ae-baseline":
        return None
    model = trained.model
    z_mean, z_log_var = (np.asarray(t) for t in model.encoder(x_norm, training=False))
    rng = np.random.default_rng(seed)
    total = np.zeros(len(x_norm), dtype=np.float64)
    for _ in range(samples):
        z = z_mean + np.exp(0.5 * z_log_var) * rng.standard_normal(z_mean.shape)
        x_hat = np.asarray(model.decoder(z.astype(np.float32), training=False))
        total += score_reconstruction(x_norm, x_hat, score).scores
    return (total / samples).astype(np.float32)


def cross_fit(
    spec: ArchSpec,
    x: npt.NDArray[np.float32],
    folds: int,
    seed: int,
    cfg: FitConfig,
    score: ScoreSpec,
    with_latent: bool = False,
    on_fold: Callable[[int, TrainedModel], None] | None = None,
) -> CrossFit:
    """Out-of-fold scores of every window in ``x`` from ``folds`` models (seeded folds).

    Args:
        spec: the architecture.
        x: normalised normal training windows (N, T, C).
        folds: K >= 2.
        seed: seeds the fold assignment and each model (``seed * 1000 + k``).
        cfg: how to fit each model.
        score: the scoring contract to apply.
        with_latent: also compute the latent-expectation scores (VAE only).
        on_fold: called after each fold model is fitted.

    Raises:
        ValueError: fewer than 2 folds or fewer windows than folds.
    """
    if folds < 2 or len(x) < folds:
        raise ValueError(f"cross-fitting needs >= 2 folds and >= 1 window per fold ({folds=})")
    started = time.monotonic()
    fold = (np.random.default_rng(seed).permutation(len(x)) % folds).astype(np.intp)
    scores = np.zeros(len(x), dtype=np.float32)
    latent = np.zeros(len(x), dtype=np.float32) if with_latent else None
    out = CrossFit(scores, fold)
    for k in range(folds):
        held = fold == k
        trained = train_one(spec, x[~held], seed * 1000 + k, cfg, label=f"fold {k + 1}/{folds}")
        scores[held] = score_windows(trained, x[held], score)
        if latent is not None:
            lat = latent_expectation_scores(trained, x[held], score, seed=seed * 1000 + k)
            if lat is not None:
                latent[held] = lat
        out.models.append(trained)
        if on_fold is not None:
            on_fold(k, trained)
    out.latent_scores = latent
    out.seconds = time.monotonic() - started
    return out
