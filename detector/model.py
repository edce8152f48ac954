"""The TensorFlow edge: load a model bundle and score batches with one compiled call.

The scoring contract is in :mod:`detector.bundle`. It is split so that only the model runs
in TensorFlow:

1. normalise the raw batch per channel (numpy, :meth:`Normalisation.apply`);
2. reconstruct it with ONE call of a ``tf.function`` whose input signature is
   ``[None, T, C]``, so any batch size reuses the same trace (``model.predict`` costs
   ~80 ms per call whatever its size; this call ~1-3 ms for a batch of 512);
3. residual, optional smoothing along T, weighted squared/absolute error, the mean over
   ensemble members if there are several, and the reductions to per-window, per-step and
   per-channel values (numpy, :func:`score_reconstruction`).

Training's evaluation calls the same functions (it scores through :func:`load_bundle`), so
offline figures and the detector agree exactly. Steps 1 and 3 import no TensorFlow, and
TensorFlow itself is imported only when a bundle is loaded, so the detector's pure core and
its tests can use :class:`ScoreResult` and :class:`Scorer` without it.

Examples:
    >>> model = load_bundle(Path("models/demo"))            # doctest: +SKIP
    >>> model.warmup()                                      # doctest: +SKIP
    >>> model.score(batch).scores.shape                     # doctest: +SKIP
    (2048,)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detector.bundle import MODEL_FILE, Manifest, ScoreSpec, read_manifest
from detector.errors import BundleError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = [
    "CompiledReconstructor",
    "LoadedModel",
    "Reconstructor",
    "ScoreResult",
    "Scorer",
    "compile_reconstructor",
    "load_bundle",
    "score_reconstruction",
    "smooth_steps",
]

Reconstructor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Scores of a batch of B windows of T steps and C channels (all float32)."""

    scores: npt.NDArray[np.float32]  # (B,)
    step_errors: npt.NDArray[np.float32]  # (B, T)
    channel_errors: npt.NDArray[np.float32]  # (B, C)


class Scorer(Protocol):
    """Anything that scores a (B, T, C) batch of raw windows in one call.

    :class:`LoadedModel` is one; unit tests of the detector core pass a plain object with a
    ``score`` method instead (``detector.core.Scorer`` is the same protocol).
    """

    def score(self, batch: npt.NDArray[np.float32]) -> ScoreResult: ...


def smooth_steps(r: npt.NDArray[np.float32], length: int) -> npt.NDArray[np.float32]:
    """Centred moving average of ``length`` (odd) steps along T (axis -2), edges repeated.

    Examples:
        >>> smooth_steps(np.array([[[0.0], [3.0], [0.0]]], np.float32), 3)[0, :, 0].tolist()
        [1.0, 1.0, 1.0]
    """
    if length <= 1:
        return r
    half = length // 2
    pad = [(0, 0)] * r.ndim
    pad[-2] = (half, half)
    padded = np.pad(r, pad, mode="edge")
    steps = r.shape[-2]
    total = padded[..., 0:steps, :].copy()
    for k in range(1, length):
        total += padded[..., k : k + steps, :]
    return (total / np.float32(length)).astype(np.float32, copy=False)


def score_reconstruction(
    x_norm: npt.NDArray[np.float32],
    x_hat: npt.NDArray[np.float32],
    spec: ScoreSpec,
    weights: npt.NDArray[np.float32] | None = None,
) -> ScoreResult:
    """Steps 3-5 of the scoring contract, in numpy.

    Args:
        x_norm: (B, T, C) normalised input.
        x_hat: (B, T, C) the model's reconstruction, or (B, M, T, C) for M members.
        spec: the manifest's score specification.
        weights: ``spec.weights`` as a float32 array, if the caller has it cached.
    """
    members = x_hat.ndim == x_norm.ndim + 1
    r = ((x_norm[:, None] if members else x_norm) - x_hat).astype(np.float32, copy=False)
    r = smooth_steps(r, spec.smoothing)
    err = np.square(r) if spec.kind == "mse" else np.abs(r)
    if spec.weights is not None:
        w = weights if weights is not None else np.asarray(spec.weights, dtype=np.float32)
        err = err * w
    if members:
        err = err.mean(axis=1, dtype=np.float32)
    return ScoreResult(
        scores=err.mean(axis=(1, 2), dtype=np.float32),
        step_errors=err.mean(axis=2, dtype=np.float32),
        channel_errors=err.mean(axis=1, dtype=np.float32),
    )


class CompiledReconstructor:
    """A Keras model behind one ``tf.function`` of signature ``[None, T, C]`` float32.

    Calls take a (B, T, C) numpy array and return (B, T, C), or (B, M, T, C) for an ensemble
    of ``members`` = M. The function is traced once, at the first call, and that trace serves
    every batch size (:attr:`traces` stays 1).
    """

    def __init__(self, model: Any, window_size: int, n_channels: int, members: int = 1) -> None:
        import tensorflow as tf

        member_axis = [members] if members > 1 else []

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, window_size, n_channels], tf.float32)],
            reduce_retracing=True,
        )
        def reconstruct(x: Any) -> Any:
            out = model(x, training=False)
            if isinstance(out, list | tuple):
                out = out[0]
            return tf.reshape(out, [tf.shape(x)[0], *member_axis, window_size, n_channels])

        self._fn = reconstruct
        self._constant = tf.constant

    def __call__(self, x_norm: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        result: npt.NDArray[np.float32] = self._fn(self._constant(x_norm)).numpy()
        return result

    @property
    def traces(self) -> int:
        """How many times the function has been traced (1 after the first call)."""
        return int(self._fn.experimental_get_tracing_count())


def compile_reconstructor(
    model: Any, window_size: int, n_channels: int, members: int = 1
) -> Reconstructor:
    """Wrap a Keras model as a :class:`CompiledReconstructor` (one compiled call per batch)."""
    return CompiledReconstructor(model, window_size, n_channels, members)


class LoadedModel:
    """A verified bundle, ready to score raw (un-normalised) windows.

    Attributes:
        manifest: the bundle's manifest.
        model: the Keras model: input -> encoder mean -> decoder, or M such members side by
            side (output (B, M, T, C)) when ``manifest.score.members`` is M > 1.
        reconstructor: its compiled call.
    """

    def __init__(self, manifest: Manifest, model: Any) -> None:
        self.manifest = manifest
        self.model = model
        self.reconstructor = CompiledReconstructor(
            model, manifest.window_size, manifest.n_channels, manifest.score.members
        )
        w = manifest.score.weights
        self._weights = np.asarray(w, dtype=np.float32) if w is not None else None
        self._shape = (manifest.window_size, manifest.n_channels)

    def _check(self, batch: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self._shape:
            raise ValueError(
                f"batch shape {x.shape}, the model expects (B, {self._shape[0]}, {self._shape[1]})"
            )
        return x

    def normalise(self, batch: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Step 1: the manifest's normalisation of a (B, T, C) raw batch."""
        return self.manifest.normalisation.apply(self._check(batch))

    def reconstruct(self, x_norm: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Step 2: the reconstruction of a normalised batch, in one compiled call.

        (B, T, C), or (B, M, T, C) for an ensemble of M members.
        """
        members = self.manifest.score.members
        if len(x_norm) == 0:
            return np.zeros((0, *([members] if members > 1 else []), *self._shape), np.float32)
        return self.reconstructor(np.ascontiguousarray(x_norm, dtype=np.float32))

    def score(self, batch: npt.NDArray[np.float32]) -> ScoreResult:
        """Score a (B, T, C) batch of raw windows (one compiled model call).

        Raises:
            ValueError: the batch is not (B, T, C) with the manifest's T and C.
        """
        x_norm = self.normalise(batch)
        x_hat = self.reconstruct(x_norm)
        return score_reconstruction(x_norm, x_hat, self.manifest.score, self._weights)

    def warmup(self) -> None:
        """Trace and run once, so the first real batch does not pay for it."""
        self.score(np.zeros((1, *self._shape), np.float32))


def load_bundle(bundle_dir: Path | str) -> LoadedModel:
    """Verify a bundle (schema version, sha256), load its model with ``safe_mode``, warm it up.

    Raises:
        BundleSchemaError: the manifest is missing, invalid, or of another schema version.
        BundleChecksumError: ``model.keras`` is missing or differs from the manifest's sha256.
        BundleError: the model cannot be loaded safely (e.g. custom or Lambda layers), or
            does not map (T, C) windows to (T, C) reconstructions.
    """
    path = Path(bundle_dir)
    manifest = read_manifest(path)
    model_path = path / MODEL_FILE
    try:
        import keras

        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises ValueError, TypeError, OSError, zipfile errors...
        raise BundleError(
            f"{model_path}: cannot be loaded with safe_mode (only built-in Keras layers are "
            f"accepted): {type(exc).__name__}: {exc}"
        ) from exc
    expected = (manifest.window_size, manifest.n_channels)
    in_shape = tuple(getattr(model, "input_shape", ()) or ())[1:]
    if in_shape != expected:
        raise BundleError(
            f"{model_path}: the model takes windows of shape {in_shape}, the manifest says "
            f"{expected}"
        )
    members = manifest.score.members
    out_shape = tuple(getattr(model, "output_shape", ()) or ())[1:]
    want = (members, *expected) if members > 1 else expected
    if members > 1 and out_shape != want:
        raise BundleError(
            f"{model_path}: the manifest says an ensemble of {members} members, output "
            f"{want}; the model outputs {out_shape}"
        )
    loaded = LoadedModel(manifest, model)
    try:
        loaded.warmup()
    except Exception as exc:  # a model whose output does not reshape to the window
        raise BundleError(
            f"{model_path}: the model does not map {expected} windows to reconstructions of "
            f"the same shape: {type(exc).__name__}: {exc}"
        ) from exc
    return loaded
