"""Build small real bundles for tests, without the training package.

A dense autoencoder of built-in Keras layers, fitted for a few epochs on the given normal
windows and exported to the bundle contract (detector.bundle), so detector tests exercise
the real loader and a real compiled model while staying fast and independent of training/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    Normalisation,
    ReferenceErrors,
    ThresholdRecommendation,
    file_sha256,
    write_checksums,
)


def build_bundle(
    out: Path,
    normal: npt.NDArray[np.float32],
    epochs: int = 20,
    seed: int = 0,
    target_far: float = 0.01,
) -> Path:
    """Fit a tiny dense AE on ``normal`` (N, T, C) and write a bundle to ``out``."""
    import keras

    keras.utils.set_random_seed(seed)
    n, t, c = normal.shape
    offset = normal.mean(axis=(0, 1))
    scale = normal.std(axis=(0, 1)) + 1e-6
    xn = ((normal - offset) / scale).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    fit_idx, ref_idx = order[: int(0.7 * n)], order[int(0.7 * n) :]
    inputs = keras.Input((t, c), name="window")
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = keras.layers.Dense(32, activation="relu", name="enc")(h)
    z = keras.layers.Dense(6, name="z_mean")(h)
    h = keras.layers.Dense(32, activation="relu", name="dec")(z)
    h = keras.layers.Dense(t * c, name="out")(h)
    model = keras.Model(inputs, keras.layers.Reshape((t, c), name="recon")(h))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(xn[fit_idx], xn[fit_idx], epochs=epochs, batch_size=64, verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    recon = model.predict(xn[ref_idx], verbose=0)
    ref = ((xn[ref_idx] - recon) ** 2).mean(axis=(1, 2))
    threshold = float(np.quantile(ref, 1 - target_far))
    manifest = Manifest(
        model_name="test-dense-ae",
        model_version=f"seed{seed}",
        created_at=datetime.now(tz=UTC),
        arch="ae-test",
        window_size=t,
        n_channels=c,
        channel_names=[f"ch{i}" for i in range(c)],
        normalisation=Normalisation(
            method="standard", offset=offset.tolist(), scale=scale.tolist()
        ),
        reference_errors=ReferenceErrors(
            n=len(ref),
            how="held-out 30% of the normal windows",
            quantiles={"0.99": float(np.quantile(ref, 0.99))},
            sample=ref.tolist(),
        ),
        threshold=ThresholdRecommendation(
            value=threshold,
            target_far=target_far,
            method="empirical quantile",
            n_samples=len(ref),
        ),
        model_sha256=file_sha256(out / MODEL_FILE),
    )
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    write_checksums(out)
    return out
