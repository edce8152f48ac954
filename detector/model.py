"""The TensorFlow edge: load a model bundle and score batches with one compiled call.

The scoring contract is in :mod:`detector.bundle`:

1. normalise the raw batch per channel (numpy, :meth:`Normalisation.apply`);
2. reconstruct it with the model;
3. residual, optional smoothing along T, weighted squared/absolute error, the mean over
   ensemble members if there are several, and the reductions to per-window, per-step and
   per-channel values.

:func:`score_reconstruction` is steps 3-5 in numpy, the plain reference that training uses
for its reference errors. :class:`CompiledScorer` runs steps 2-5 as ONE call of a
``tf.function`` whose input signature is ``[None, T, C]``, so any batch size reuses the same
trace (``model.predict`` costs ~80 ms per call whatever its size; this call ~1-3 ms for a
batch of 512): steps 3-5 there cost ~0.3 µs per window against ~3.4 µs in numpy (ECG
windows, 3 members), and the call releases the GIL for all of it. The two agree to float32
rounding (tested to 1e-5 relative). Every offline figure (training's evaluation, the
benchmark's replays, the tests) scores through :meth:`LoadedModel.score`, as the detector
does, so offline and Kafka flag the same windows. TensorFlow itself is imported only when a
bundle is loaded, so the detector's pure core and its tests score without it (their shape,
:class:`detector.scores.BatchScores`, is numpy only).

Why one module of ~460 lines: it is the TensorFlow half of the scoring contract (steps
2-5): loading and checking a bundle, the compiled scorer, warm-up, and the numpy reference
(:func:`score_reconstruction`) kept beside the compiled one so their agreement is in one
place. The contract's values are in :mod:`detector.bundle`, its output in
:mod:`detector.scores`.

Examples:
    >>> model = load_bundle(Path("models/demo"))            # doctest: +SKIP
    >>> model.warmup()                                      # doctest: +SKIP
    >>> model.score(batch).scores.shape                     # doctest: +SKIP
    (2048,)
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.bundle import MODEL_FILE, Manifest, ScoreSpec, read_manifest
from detector.errors import BundleError
from detector.scores import BatchScores

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__all__ = [
    "WARMUP_MAX_BUCKET",
    "CompiledReconstructor",
    "CompiledScorer",
    "LoadedModel",
    "Reconstructor",
    "batch_bucket",
    "compile_reconstructor",
    "import_tensorflow",
    "load_bundle",
    "score_reconstruction",
    "smooth_steps",
]

Reconstructor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]

# Batch buckets above this are not compiled at start-up (see LoadedModel.warmup).
WARMUP_MAX_BUCKET = 128


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Send file descriptor 2 to a temporary file for the block; the list yields what was
    written there once the block ends (C++ code writes to fd 2 directly, past ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


@functools.cache
def import_tensorflow() -> Any:
    """Import TensorFlow and Keras without their start-up chatter, and return ``tensorflow``.

    TensorFlow 2.20+ writes its start-up lines (``oneDNN custom operations are on``, ``Could
    not find cuda drivers``, ``failed call to cuInit: UNKNOWN ERROR (303)``, absl's ``All log
    messages before absl::InitializeLog()``) straight to file descriptor 2 from C++, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says, and twice (TensorFlow, then Keras): they would break the
    one-JSON-object-per-line log. They are captured while TensorFlow and Keras are imported
    and the devices enumerated (which is when cuInit runs), and dropped; if the import fails,
    they are written out after all, before the exception propagates. TensorFlow's Python
    logger is set to errors only (its retracing notes are not for operators).
    """
    chatter: list[str] = []
    try:
        with _stderr_captured() as chatter:
            import keras  # noqa: F401 - imported inside the capture: its start-up is silenced
            import tensorflow as tf

            tf.config.list_physical_devices()
    except BaseException:
        sys.stderr.write("".join(chatter))  # a broken install: show what TensorFlow said
        raise
    tf.get_logger().setLevel("ERROR")
    return tf


def batch_bucket(n: int) -> int:
    """The batch size a batch of ``n`` windows is scored at (zero rows padded at the end).

    oneDNN builds (JIT-compiles) its matmul kernels per input shape and caches them; a live
    stream's batches take any size from 1 to ``max_batch``, and a size seen for the first
    time cost up to ~20 ms more (measured: p99 of a model call over random sizes 21.8 ms the
    first time, 14.9 ms the second). Rounding up to a power of two below 128 and to a
    multiple of 128 above keeps the shapes few (23 up to 2048; those up to 128 compiled at
    warm-up, :meth:`LoadedModel.warmup`), for at most 127 padded rows on a large batch.

    Examples:
        >>> [batch_bucket(n) for n in (1, 3, 100, 129, 2048)]
        [1, 4, 128, 256, 2048]
    """
    if n <= 128:
        return 1 << max(0, n - 1).bit_length()
    return -(-n // 128) * 128


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
) -> BatchScores:
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
    return BatchScores(
        scores=err.mean(axis=(1, 2), dtype=np.float32),
        step_errors=err.mean(axis=2, dtype=np.float32),
        channel_errors=err.mean(axis=1, dtype=np.float32),
    )


def _reconstruction(
    model: Any, window_size: int, n_channels: int, members: int
) -> Callable[[Any], Any]:
    """(B, T, C) tensor -> the model's (B, T, C) reconstruction, or (B, M, T, C) for M
    members; for use inside a ``tf.function``."""
    import tensorflow as tf

    member_axis = [members] if members > 1 else []

    def reconstruct(x: Any) -> Any:
        out = model(x, training=False)
        if isinstance(out, list | tuple):
            out = out[0]
        return tf.reshape(out, [tf.shape(x)[0], *member_axis, window_size, n_channels])

    return reconstruct


def _compiled(fn: Callable[[Any], Any], window_size: int, n_channels: int) -> Any:
    """``fn`` as a ``tf.function`` of signature ``[None, T, C]`` float32: one trace serves
    every batch size."""
    import tensorflow as tf

    return tf.function(
        fn,
        input_signature=[tf.TensorSpec([None, window_size, n_channels], tf.float32)],
        reduce_retracing=True,
    )


class CompiledReconstructor:
    """A Keras model behind one ``tf.function`` of signature ``[None, T, C]`` float32.

    Calls take a (B, T, C) numpy array and return (B, T, C), or (B, M, T, C) for an ensemble
    of ``members`` = M. The function is traced once, at the first call, and that trace serves
    every batch size (:attr:`traces` stays 1).
    """

    def __init__(self, model: Any, window_size: int, n_channels: int, members: int = 1) -> None:
        import tensorflow as tf

        self._fn = _compiled(
            _reconstruction(model, window_size, n_channels, members), window_size, n_channels
        )
        self._constant = tf.constant

    def __call__(self, x_norm: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        result: npt.NDArray[np.float32] = self._fn(self._constant(x_norm)).numpy()
        return result

    @property
    def traces(self) -> int:
        """How many times the function has been traced (1 after the first call)."""
        return int(self._fn.experimental_get_tracing_count())


class CompiledScorer:
    """Steps 2-5 of the scoring contract in one ``tf.function`` of signature ``[None, T, C]``.

    Calls take a normalised (B, T, C) numpy array (B >= 1) and return a :class:`BatchScores`.
    The same arithmetic as :func:`score_reconstruction`, in the same order (the smoothing
    sums the shifted residuals left to right, then divides by the length); only the order
    of the mean reductions may differ, so the two agree to float32 rounding.
    """

    def __init__(self, model: Any, window_size: int, n_channels: int, spec: ScoreSpec) -> None:
        import tensorflow as tf

        members = spec.members
        length = spec.smoothing
        half = length // 2
        # Edges repeated: padded step p is residual step clip(p - half, 0, T - 1).
        pad_index = np.clip(np.arange(-half, window_size + half), 0, window_size - 1)
        weights = (
            tf.constant(np.asarray(spec.weights, np.float32)) if spec.weights is not None else None
        )
        mse = spec.kind == "mse"
        reconstruct = _reconstruction(model, window_size, n_channels, members)

        def score(x: Any) -> Any:
            r = (x[:, None] if members > 1 else x) - reconstruct(x)
            if length > 1:
                padded = tf.gather(r, pad_index, axis=-2)
                total = padded[..., 0:window_size, :]
                for k in range(1, length):
                    total = total + padded[..., k : k + window_size, :]
                r = total / np.float32(length)
            err = tf.square(r) if mse else tf.abs(r)
            if weights is not None:
                err = err * weights
            if members > 1:
                err = tf.reduce_mean(err, axis=1)
            return (
                tf.reduce_mean(err, axis=[1, 2]),
                tf.reduce_mean(err, axis=2),
                tf.reduce_mean(err, axis=1),
            )

        self._fn = _compiled(score, window_size, n_channels)
        self._constant = tf.constant

    def __call__(self, x_norm: npt.NDArray[np.float32]) -> BatchScores:
        scores, steps, channels = self._fn(self._constant(x_norm))
        return BatchScores(scores.numpy(), steps.numpy(), channels.numpy())

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
        reconstructor: its compiled reconstruction (step 2 alone; plots and tests).
        scorer: its compiled scoring call (steps 2-5), what :meth:`score` runs.
    """

    def __init__(self, manifest: Manifest, model: Any) -> None:
        self.manifest = manifest
        self.model = model
        self.reconstructor = CompiledReconstructor(
            model, manifest.window_size, manifest.n_channels, manifest.score.members
        )
        self.scorer = CompiledScorer(
            model, manifest.window_size, manifest.n_channels, manifest.score
        )
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

    def score(self, batch: npt.NDArray[np.float32]) -> BatchScores:
        """Score a (B, T, C) batch of raw windows (one compiled call).

        Raises:
            ValueError: the batch is not (B, T, C) with the manifest's T and C.
        """
        x_norm = self.normalise(batch)
        if len(x_norm) == 0:
            return BatchScores.empty(*self._shape)
        n = len(x_norm)
        size = batch_bucket(n)
        if size == n:
            return self.scorer(np.ascontiguousarray(x_norm, dtype=np.float32))
        padded = np.zeros((size, *self._shape), np.float32)
        padded[:n] = x_norm
        full = self.scorer(padded)
        return full.take(slice(0, n))

    def warmup(self, max_batch: int = 1, largest: int | None = WARMUP_MAX_BUCKET) -> list[int]:
        """Trace the scoring call and run it at every batch size :func:`batch_bucket` uses
        up to ``max_batch``, but not above ``largest`` (None: no limit); returns the sizes.

        What a first call costs more than later ones was measured (2 cores, the demo's ECG
        model, 140 x 1): up to 128 it matters against calls of 2-10 ms (sizes 2 and 128: 28
        and 25 ms the first time, 2.4 and 9.8 ms after); above 128 it is lost in the call
        itself (the 15 sizes up to 2048: 990 ms cold against 975 ms warm, summed), while
        warming them added 1.0-1.9 s to every start. So only the 8 sizes up to 128 are
        warmed (0.07-0.3 s); a larger batch, which only a backlog brings, compiles its size
        when it first occurs.
        """
        sizes = []
        size = 1
        top = max_batch if largest is None else min(max_batch, largest)
        while True:
            self.score(np.zeros((size, *self._shape), np.float32))
            sizes.append(size)
            if size >= top:
                break
            size = batch_bucket(size + 1)
        return sizes


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
    import_tensorflow()
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
