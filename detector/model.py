"""The TensorFlow edge: load a model bundle and score batches with one compiled call.

The scoring contract is in :mod:`detector.bundle`: normalise per channel, reconstruct with the
bundle's deterministic model (input -> encoder mean -> decoder), weighted squared or absolute
error, mean over (steps, channels) for the score, over channels per step, over steps per
channel. All of it runs inside one ``tf.function`` traced once for any batch size, so a batch
of 2048 windows costs one call (``model.predict`` costs ~80 ms per call whatever its size).

Examples:
    >>> model = load_bundle(Path("models/demo"))            # doctest: +SKIP
    >>> model.warmup()                                      # doctest: +SKIP
    >>> model.score(batch).scores.shape                     # doctest: +SKIP
    (2048,)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.bundle import MODEL_FILE, Manifest, read_manifest
from detector.errors import BundleError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["LoadedModel", "ScoreResult", "load_bundle"]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Scores of a batch of B windows of T steps and C channels."""

    scores: npt.NDArray[np.float32]  # (B,)
    step_errors: npt.NDArray[np.float32]  # (B, T)
    channel_errors: npt.NDArray[np.float32]  # (B, C)


class LoadedModel:
    """A verified bundle, ready to score raw (un-normalised) windows."""

    def __init__(self, manifest: Manifest, model: Any) -> None:
        import tensorflow as tf

        self.manifest = manifest
        self.model = model
        t, c = manifest.window_size, manifest.n_channels
        offset = tf.constant(np.asarray(manifest.normalisation.offset, np.float32))
        scale = tf.constant(np.asarray(manifest.normalisation.scale, np.float32))
        weights = manifest.score.weights
        w = tf.constant(np.asarray(weights, np.float32)) if weights is not None else None
        squared = manifest.score.kind == "mse"

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, t, c], tf.float32)], reduce_retracing=True
        )
        def score_fn(x: Any) -> tuple[Any, Any, Any]:
            xn = (x - offset) / scale
            recon = model(xn, training=False)
            if isinstance(recon, list | tuple):
                recon = recon[0]
            diff = xn - tf.reshape(recon, tf.shape(xn))
            err = tf.square(diff) if squared else tf.abs(diff)
            if w is not None:
                err = err * w
            return (
                tf.reduce_mean(err, axis=[1, 2]),
                tf.reduce_mean(err, axis=2),
                tf.reduce_mean(err, axis=1),
            )

        self._score_fn = score_fn
        self._tf = tf

    def score(self, batch: npt.NDArray[np.float32]) -> ScoreResult:
        """Score a (B, T, C) batch of raw windows in one compiled call."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.manifest.window_size, self.manifest.n_channels):
            raise ValueError(
                f"batch shape {x.shape}, the model expects "
                f"(B, {self.manifest.window_size}, {self.manifest.n_channels})"
            )
        scores, steps, channels = self._score_fn(self._tf.constant(x))
        return ScoreResult(
            np.asarray(scores, dtype=np.float32),
            np.asarray(steps, dtype=np.float32),
            np.asarray(channels, dtype=np.float32),
        )

    def warmup(self) -> None:
        """Trace and run once, so the first real batch does not pay for it."""
        m = self.manifest
        self.score(np.zeros((1, m.window_size, m.n_channels), np.float32))


def load_bundle(bundle_dir: Path | str) -> LoadedModel:
    """Verify a bundle (schema version, sha256) and load its model with ``safe_mode``.

    Raises:
        BundleError: (or a subclass) the bundle is missing, altered, of another schema
            version, or its model cannot be loaded or does not fit the manifest.
    """
    path = Path(bundle_dir)
    manifest = read_manifest(path)
    try:
        import keras

        model = keras.saving.load_model(path / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises ValueError, TypeError, OSError, ...
        raise BundleError(f"{path / MODEL_FILE}: cannot be loaded: {exc}") from exc
    loaded = LoadedModel(manifest, model)
    try:
        loaded.warmup()
    except Exception as exc:  # a model whose output does not match the window shape
        raise BundleError(
            f"{path}: the model does not map ({manifest.window_size}, {manifest.n_channels}) "
            f"windows to reconstructions of the same shape: {exc}"
        ) from exc
    return loaded
