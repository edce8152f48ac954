"""detector.model: bundle verification, safe loading, and scoring exactly per the contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from detector.bundle import (
    CHECKSUM_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    Normalisation,
    ReferenceErrors,
    ScoreSpec,
    ThresholdRecommendation,
    file_sha256,
    write_checksums,
)
from detector.errors import BundleChecksumError, BundleError, BundleSchemaError
from detector.model import score_reconstruction, smooth_steps
from detector.scores import BatchScores, Scorer

T, C = 12, 2


def _model(t: int = T, c: int = C, lam: bool = False, out_t: int | None = None) -> Any:
    keras.utils.set_random_seed(0)
    inp = keras.Input((t, c))
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(5, activation="tanh")(h)
    if lam:
        h = keras.layers.Lambda(lambda v: v * 2.0)(h)
    h = keras.layers.Dense((out_t or t) * c)(h)
    return keras.Model(inp, keras.layers.Reshape((out_t or t, c))(h))


def _bundle(
    tmp: Path, model: Any | None = None, score: ScoreSpec | None = None, t: int = T
) -> Path:
    out = tmp / "bundle"
    out.mkdir(parents=True, exist_ok=True)
    (model if model is not None else _model()).save(out / MODEL_FILE)
    manifest = Manifest(
        model_name="unit",
        model_version="1",
        created_at=datetime.now(tz=UTC),
        arch="test",
        window_size=t,
        n_channels=C,
        channel_names=["a", "b"],
        normalisation=Normalisation(method="standard", offset=[1.0, -2.0], scale=[2.0, 0.5]),
        score=score or ScoreSpec(),
        reference_errors=ReferenceErrors(n=3, how="unit", quantiles={"0.99": 1.0}, sample=[1.0]),
        threshold=ThresholdRecommendation(value=1.0, target_far=0.01, method="x", n_samples=3),
        model_sha256=file_sha256(out / MODEL_FILE),
    )
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json())
    write_checksums(out)
    return out


def _reference_score(x: np.ndarray, model: Any, spec: ScoreSpec) -> np.ndarray:
    """The contract of detector.bundle, written out independently (slow and plain)."""
    offset, scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    xn = (x - offset) / scale
    r = xn - np.asarray(model(xn.astype(np.float32)))
    half = spec.smoothing // 2
    smoothed = np.empty_like(r)
    for t in range(r.shape[1]):
        idx = np.clip(np.arange(t - half, t + half + 1), 0, r.shape[1] - 1)
        smoothed[:, t] = r[:, idx].mean(axis=1)
    e = smoothed**2 if spec.kind == "mse" else np.abs(smoothed)
    if spec.weights is not None:
        e = e * np.asarray(spec.weights)
    return e.mean(axis=(1, 2))


@pytest.mark.parametrize(
    "spec",
    [
        ScoreSpec(),
        ScoreSpec(kind="mae"),
        ScoreSpec(smoothing=3),
        ScoreSpec(
            kind="mse", smoothing=5, weights=np.linspace(0.5, 2, T * C).reshape(T, C).tolist()
        ),
    ],
)
def test_scores_follow_the_contract(tmp_path: Path, spec: ScoreSpec) -> None:
    from detector.model import load_bundle

    model = _model()
    loaded = load_bundle(_bundle(tmp_path, model, spec))
    x = np.random.default_rng(0).normal(size=(7, T, C)).astype(np.float32)
    result = loaded.score(x)
    np.testing.assert_allclose(result.scores, _reference_score(x, model, spec), rtol=2e-5)
    assert result.scores.dtype == result.step_errors.dtype == np.float32
    assert result.step_errors.shape == (7, T) and result.channel_errors.shape == (7, C)
    np.testing.assert_allclose(result.step_errors.mean(axis=1), result.scores, rtol=1e-5)
    np.testing.assert_allclose(result.channel_errors.mean(axis=1), result.scores, rtol=1e-5)


def test_one_trace_serves_every_batch_size(tmp_path: Path) -> None:
    from detector.model import load_bundle

    loaded = load_bundle(_bundle(tmp_path))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, T, C)).astype(np.float32)
    whole = loaded.score(x).scores
    for b in (1, 3, 17, 64, 300):
        np.testing.assert_allclose(loaded.score(x[:b]).scores, whole[:b], rtol=1e-5)
    assert loaded.scorer.traces == 1


def test_empty_batch_and_wrong_shape(tmp_path: Path) -> None:
    from detector.model import load_bundle

    loaded = load_bundle(_bundle(tmp_path))
    empty = loaded.score(np.zeros((0, T, C), np.float32))
    assert empty.scores.shape == (0,) and empty.step_errors.shape == (0, T)
    with pytest.raises(ValueError, match=r"expects \(B, 12, 2\)"):
        loaded.score(np.zeros((4, T + 1, C), np.float32))


def test_a_loaded_model_is_a_scorer(tmp_path: Path) -> None:
    from detector.model import load_bundle

    def first_scores(scorer: Scorer, batch: np.ndarray) -> BatchScores:
        return scorer.score(batch)

    loaded = load_bundle(_bundle(tmp_path))
    assert first_scores(loaded, np.zeros((2, T, C), np.float32)).scores.shape == (2,)


def test_tampered_model_refuses_to_load(tmp_path: Path) -> None:
    from detector.model import load_bundle

    bundle = _bundle(tmp_path)
    with (bundle / MODEL_FILE).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleChecksumError, match=f"does not match {CHECKSUM_FILE}"):
        load_bundle(bundle)
    (bundle / CHECKSUM_FILE).unlink()  # an older bundle: the manifest's model_sha256 still holds
    with pytest.raises(BundleChecksumError, match="does not match the manifest"):
        load_bundle(bundle)
    (bundle / MODEL_FILE).unlink()
    with pytest.raises(BundleChecksumError, match="missing"):
        load_bundle(bundle)


def test_other_schema_version_refuses_to_load(tmp_path: Path) -> None:
    from detector.model import load_bundle

    bundle = _bundle(tmp_path)
    doc = json.loads((bundle / MANIFEST_FILE).read_text())
    doc["schema_version"] = 99
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc))
    write_checksums(bundle)
    with pytest.raises(BundleSchemaError, match="schema version 99"):
        load_bundle(bundle)
    with pytest.raises(BundleSchemaError, match="no manifest"):
        load_bundle(tmp_path / "nowhere")


def test_unsafe_or_mismatched_models_refuse_to_load(tmp_path: Path) -> None:
    from detector.model import load_bundle

    with pytest.raises(BundleError, match="safe_mode"):
        load_bundle(_bundle(tmp_path / "lambda", _model(lam=True)))
    with pytest.raises(BundleError, match=r"windows of shape \(12, 2\), the manifest says \(10"):
        load_bundle(_bundle(tmp_path / "shape", _model(), t=10))
    with pytest.raises(BundleError, match="does not map"):
        load_bundle(_bundle(tmp_path / "out", _model(out_t=T - 1)))
    corrupt = _bundle(tmp_path / "corrupt")
    (corrupt / MODEL_FILE).write_bytes(b"not a keras archive")
    doc = json.loads((corrupt / MANIFEST_FILE).read_text())
    doc["model_sha256"] = file_sha256(corrupt / MODEL_FILE)
    (corrupt / MANIFEST_FILE).write_text(json.dumps(doc))
    write_checksums(corrupt)
    with pytest.raises(BundleError, match="cannot be loaded"):
        load_bundle(corrupt)


def _ensemble(members: int) -> Any:
    keras.utils.set_random_seed(1)
    inp = keras.Input((T, C))
    flat = keras.layers.Flatten()(inp)
    outs = [
        keras.layers.Reshape((1, T, C))(keras.layers.Dense(T * C)(flat)) for _ in range(members)
    ]
    return keras.Model(inp, keras.layers.Concatenate(axis=1)(outs))


def test_ensemble_score_is_the_mean_of_member_scores(tmp_path: Path) -> None:
    from detector.model import load_bundle

    model = _ensemble(3)
    spec = ScoreSpec(smoothing=3, members=3)
    loaded = load_bundle(_bundle(tmp_path, model, spec))
    x = np.random.default_rng(2).normal(size=(5, T, C)).astype(np.float32)
    xn = (x - np.array([1.0, -2.0])) / np.array([2.0, 0.5])
    recon = np.asarray(model(xn.astype(np.float32)))  # (5, 3, T, C)
    assert loaded.reconstruct(xn.astype(np.float32)).shape == (5, 3, T, C)
    one = ScoreSpec(smoothing=3)
    per_member = [score_reconstruction(xn, recon[:, k], one).scores for k in range(3)]
    np.testing.assert_allclose(loaded.score(x).scores, np.mean(per_member, axis=0), rtol=1e-5)
    assert loaded.score(np.zeros((0, T, C), np.float32)).scores.shape == (0,)
    with pytest.raises(BundleError, match="ensemble of 2 members"):
        load_bundle(_bundle(tmp_path / "two", model, ScoreSpec(members=2)))


@pytest.mark.parametrize(
    "spec",
    [
        ScoreSpec(members=3),
        ScoreSpec(kind="mae", smoothing=3, members=3),
        ScoreSpec(smoothing=5, members=3, weights=np.linspace(0, 2, T * C).reshape(T, C).tolist()),
    ],
)
def test_the_compiled_scorer_is_the_numpy_reference(tmp_path: Path, spec: ScoreSpec) -> None:
    """The detector scores in one tf.function; training's reference errors come from the
    numpy :func:`score_reconstruction`: both must give the same figures for every window,
    step and channel."""
    from detector.model import load_bundle

    loaded = load_bundle(_bundle(tmp_path, _ensemble(3), spec))
    x = np.random.default_rng(4).normal(size=(33, T, C)).astype(np.float32)
    xn = loaded.normalise(x)
    reference = score_reconstruction(xn, loaded.reconstruct(xn), spec)
    result = loaded.score(x)
    for name in ("scores", "step_errors", "channel_errors"):
        got, want = getattr(result, name), getattr(reference, name)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=name)


def test_smoothing_repeats_edges() -> None:
    r = np.array([[[1.0], [0.0], [0.0], [0.0], [4.0]]], np.float32)
    assert smooth_steps(r, 3)[0, :, 0].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0, 4 / 3, 8 / 3])
    assert smooth_steps(r, 1) is r


def test_score_reconstruction_is_numpy_only() -> None:
    x = np.zeros((1, 2, 1), np.float32)
    x_hat = np.array([[[1.0], [-3.0]]], np.float32)
    assert score_reconstruction(x, x_hat, ScoreSpec()).scores.tolist() == [5.0]
    assert score_reconstruction(x, x_hat, ScoreSpec(kind="mae")).scores.tolist() == [2.0]
    w = ScoreSpec(weights=[[2.0], [0.0]])
    assert score_reconstruction(x, x_hat, w).step_errors.tolist() == [[2.0, 0.0]]


def test_even_smoothing_is_rejected() -> None:
    with pytest.raises(ValueError, match="odd"):
        ScoreSpec(smoothing=4)


def test_batches_are_scored_at_a_few_padded_sizes(tmp_path: Path) -> None:
    """Padding to a bucket must not change a window's score, and warm-up compiles exactly
    the bucket sizes a max_batch can produce."""
    from detector.model import batch_bucket, load_bundle

    loaded = load_bundle(_bundle(tmp_path))
    x = np.random.default_rng(5).normal(size=(300, T, C)).astype(np.float32)
    alone = np.concatenate([loaded.score(x[i : i + 1]).scores for i in range(5)])
    for n in (5, 129, 300):
        result = loaded.score(x[:n])
        assert result.scores.shape == (n,) and result.step_errors.shape == (n, T)
        np.testing.assert_allclose(result.scores[:5], alone, rtol=1e-5)
    sizes = {batch_bucket(n) for n in range(1, 2049)}
    assert len(sizes) == 23 and max(sizes) == 2048
    assert all(batch_bucket(n) >= n for n in range(1, 5000))


def _edit_threshold(bundle: Path, value: float) -> None:
    doc = json.loads((bundle / MANIFEST_FILE).read_text())
    doc["threshold"]["value"] = value
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc))


def test_an_edited_manifest_refuses_to_load(tmp_path: Path) -> None:
    """Issue 14, D6: a threshold edited 0.05 -> 1000 loaded, and inspect said checksum ok."""
    from detector.bundle import read_manifest
    from detector.model import load_bundle

    bundle = _bundle(tmp_path)
    _edit_threshold(bundle, 1000.0)
    with pytest.raises(BundleChecksumError, match=r"manifest\.json: sha256 .* does not match"):
        load_bundle(bundle)
    with pytest.raises(BundleChecksumError, match="edited"):
        read_manifest(bundle)
    # Even a change that keeps the JSON equal (whitespace) is an edit of the exact bytes.
    bundle2 = _bundle(tmp_path / "two")
    (bundle2 / MANIFEST_FILE).write_bytes((bundle2 / MANIFEST_FILE).read_bytes() + b" ")
    with pytest.raises(BundleChecksumError):
        read_manifest(bundle2)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "no checksum for manifest.json, model.keras"),
        ("abc  manifest.json\n", "line 1 is not"),
        (f"{'0' * 64}  ../manifest.json\n", "outside the bundle"),
    ],
)
def test_a_malformed_checksum_file_refuses_to_load(
    tmp_path: Path, content: str, match: str
) -> None:
    from detector.bundle import read_manifest

    bundle = _bundle(tmp_path)
    (bundle / CHECKSUM_FILE).write_text(content)
    with pytest.raises(BundleChecksumError, match=match):
        read_manifest(bundle)


def test_the_checksum_file_is_what_sha256sum_checks(tmp_path: Path) -> None:
    import hashlib

    bundle = _bundle(tmp_path)
    lines = (bundle / CHECKSUM_FILE).read_text().splitlines()
    expected = {
        name: hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        for name in (MANIFEST_FILE, MODEL_FILE)
    }
    assert lines == [f"{digest}  {name}" for name, digest in expected.items()]


def test_an_older_bundle_without_the_checksum_file_loads_with_a_warning(
    tmp_path: Path, fresh_structlog: None
) -> None:
    import structlog

    from detector.bundle import read_manifest

    bundle = _bundle(tmp_path)
    (bundle / CHECKSUM_FILE).unlink()
    with structlog.testing.capture_logs() as logs:
        manifest = read_manifest(bundle)
    assert manifest.model_name == "unit"
    (warning,) = [e for e in logs if e["event"] == "bundle_manifest_unverified"]
    assert warning["log_level"] == "warning"
