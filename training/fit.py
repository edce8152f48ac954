"""``training fit``: data -> normal training windows -> calibrated model -> bundle.

1. Load the data and split it (ECG5000: the tutorial's split). Abnormal windows of the
   training part are set aside: nothing is fitted or calibrated on them.
2. Fit the normalisation on the normal training windows.
3. Cross-fit K models on the normal training windows: every window gets an out-of-fold score
   from the model that did not see it. The threshold for ``target_far`` is calibrated on
   these K x (N/K) = N held-out scores (not on a few hundred), and they are the manifest's
   reference distribution.
4. Fit the final model on all normal training windows; export input -> encoder mean ->
   decoder as ``model.keras``.
5. The same for the tutorial's plain AE (the baseline), unless disabled.
6. Load the bundle with the detector's own loader and score the test windows with it: the
   report's figures are the detector's figures. Write ``report.json`` and ``plots/``.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from detector.bundle import Manifest
from detector.model import compile_reconstructor, load_bundle, score_reconstruction
from training.calibrate import calibrate, reference_errors
from training.data import Dataset, Split, load_dataset, split_dataset
from training.errors import DataError
from training.evaluate import metrics
from training.export import (
    check_out_dir,
    library_versions,
    publish,
    save_model,
    staging_dir,
    write_json,
    write_manifest,
)
from training.models import ArchSpec
from training.normalise import default_method, fit_normalisation
from training.plots import Curve, ScoredSet, plot_all
from training.report import build_report, manifest_metrics, training_info
from training.runs import ModelRun, run_model
from training.settings import TrainingSettings
from training.train import (
    FitConfig,
    configure_tensorflow,
    latent_expectation_scores,
)

__all__ = ["fit_bundle"]

log = structlog.get_logger("training")
MIN_NORMAL_PER_FOLD = 4


def _split_normal(data: Dataset, s: TrainingSettings) -> tuple[Split, npt.NDArray[np.intp]]:
    split = split_dataset(data, s.test_fraction, s.split_seed)
    anomalous = data.anomalous()
    normal_train = split.train[~anomalous[split.train]]
    need = max(MIN_NORMAL_PER_FOLD * s.folds, 20)
    if len(normal_train) == 0:
        raise DataError(
            data.path,
            "no normal windows in the training part; check the labels "
            "(ecg5000: 1 = normal; csv/npz: 0 = normal)",
        )
    if len(normal_train) < need:
        raise DataError(
            data.path,
            f"only {len(normal_train)} normal training windows; {s.folds}-fold calibration "
            f"needs at least {need}",
        )
    return split, normal_train


def fit_bundle(s: TrainingSettings, data_path: Path, out: Path) -> dict[str, Any]:
    """Train, calibrate, evaluate and write a bundle to ``out``; return the report.

    Raises:
        DataError: the data cannot be used.
        ConfigError: ``out`` cannot be written.
    """
    started = time.monotonic()
    check_out_dir(out)
    data = load_dataset(
        data_path,
        s.format,
        s.window,
        s.stride,
        s.label_column,
        columns=s.column_list(),
        time_column=s.time_column,
        source_column=s.source_column,
        rows=s.row_range(),
        time_policy=s.time_policy,
    )
    for note in data.notes:
        log.warning("data_note", note=note)
    split, normal_train = _split_normal(data, s)
    stage = staging_dir(out.resolve())  # fail on an unwritable --out before training
    try:
        manifest, report = _fit_into(stage, s, data, split, normal_train, started)
        publish(stage, out.resolve())
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("bundle_written", out=str(out), model=manifest.model_id)
    return report


def _fit_into(
    stage: Path,
    s: TrainingSettings,
    data: Dataset,
    split: Split,
    normal_train: npt.NDArray[np.intp],
    started: float,
) -> tuple[Manifest, dict[str, Any]]:
    """Everything from normalisation to the written report, inside ``stage``."""
    method = default_method(data.format) if s.normalisation == "auto" else s.normalisation
    norm = fit_normalisation(data.windows[normal_train], method, centre=s.centre_windows)
    x_train = norm.apply(data.windows[normal_train])
    t, c = data.window_size, data.n_channels
    configure_tensorflow(s.threads)  # after the data checks, so bad input fails fast
    log.info(
        "data",
        path=str(data.path),
        format=data.format,
        windows=len(data.windows),
        shape=[t, c],
        train_normal=len(normal_train),
        test=len(split.test),
        split=split.how,
    )
    cfg = FitConfig(s.epochs, s.batch_size, s.learning_rate, s.patience, s.val_fraction)
    spec = ArchSpec(
        s.arch,
        t,
        c,
        s.latent,
        tuple(s.widths) if s.widths else None,
        s.beta,
        s.kernel_size,
        sigmoid_output=method == "minmax",
    )
    run = run_model(spec, x_train, s, cfg, ensemble=s.ensemble and spec.arch != "ae-baseline")
    baseline: ModelRun | None = None
    if s.baseline and spec.arch != "ae-baseline":
        bspec = ArchSpec("ae-baseline", t, c, sigmoid_output=method == "minmax")
        bcfg = FitConfig(s.baseline_epochs, s.baseline_batch_size, 1e-3, 0, 0.0, log_every=0)
        baseline = run_model(bspec, x_train, s, bcfg, ensemble=False)

    x_test = data.windows[split.test]
    y_test = data.anomalous()[split.test]
    sha = save_model(run.scorer(), stage)
    created = datetime.now(tz=UTC)
    stem = data.path.stem
    manifest = Manifest(
        model_name=s.model_name or f"{spec.name}-{stem}",
        model_version=s.model_version or f"{created:%Y%m%dT%H%M%SZ}-seed{s.seed}",
        created_at=created,
        arch=spec.name,
        window_size=t,
        n_channels=c,
        channel_names=data.channel_names,
        normalisation=norm,
        score=run.score,
        reference_errors=reference_errors(
            run.cross.scores,
            f"out-of-fold scores of all {len(x_train)} normal training windows, "
            f"{s.folds} folds, each scored by the one model that did not see it"
            + (
                " (the ensemble averages members, so its own normal scores are a little "
                "lower: a conservative reference)"
                if run.ensemble
                else ""
            ),
            s.target_far,
            seed=s.seed,
        ),
        threshold=run.threshold,
        library_versions=library_versions(),
        training=training_info(s, data, split.how, len(normal_train), spec),
        model_sha256=sha,
    )
    write_manifest(stage, manifest)
    loaded = load_bundle(stage)  # the detector's loader: checksum, schema, safe_mode
    has_test = len(split.test) > 0  # --test-fraction 0: no test set, no test figures
    result = loaded.score(x_test) if has_test else None
    model_test = None if result is None else metrics(result.scores, y_test, run.threshold.value)
    x_test_norm = loaded.normalise(x_test)
    evaluation = _evaluate(run, baseline, x_train, x_test_norm, y_test, s)
    evaluation["model"]["test"] = model_test
    report = build_report(
        s,
        data,
        split.how,
        len(normal_train),
        run,
        baseline,
        evaluation,
        time.monotonic() - started,
    )
    if s.plots and result is None:
        no_errors = np.zeros(x_test_norm.shape[:2], dtype=np.float32)
        report["plots"] = plot_all(
            stage / "plots",
            _curves(run, baseline),
            [],
            y_test,
            x_test_norm,
            x_test_norm,
            no_errors,
            data.channel_names,
        )  # no test set: the loss curves only
    elif s.plots:
        report["plots"] = _plots(
            stage, run, baseline, evaluation, result, loaded, x_test_norm, y_test, data
        )
    report["timing"]["total_seconds"] = round(time.monotonic() - started, 1)
    manifest.metrics = manifest_metrics(report)
    write_manifest(stage, manifest)
    write_json(stage / "report.json", report)
    return manifest, report


def _evaluate(
    run: ModelRun,
    baseline: ModelRun | None,
    x_train: npt.NDArray[np.float32],
    x_test_norm: npt.NDArray[np.float32],
    y_test: npt.NDArray[np.bool_],
    s: TrainingSettings,
) -> dict[str, Any]:
    """Everything but the model's own test metrics (those come from the loaded bundle)."""
    out: dict[str, Any] = {"model": {"oof_false_alarm_rate": _rate(run)}}
    if not len(y_test):  # no test set: only what the training windows tell
        if baseline is not None:
            out["baseline"] = {
                "oof_false_alarm_rate": _rate(baseline),
                "test": None,
                "tutorial_threshold": None,
                "test_scores": np.zeros(0),
            }
        return out
    latent_oof = run.cross.latent_scores
    per_member = [
        p
        for m in run.members
        if (p := latent_expectation_scores(m, x_test_norm, run.member_score, seed=s.seed))
        is not None
    ]
    latent_test = np.mean(per_member, axis=0) if per_member else None
    if latent_oof is not None and latent_test is not None:
        thr = calibrate(latent_oof, s.target_far, s.threshold_method)
        out["model"]["latent_expectation"] = {
            "threshold": thr.value,
            "test": metrics(latent_test, y_test, thr.value),
        }
    if baseline is not None:
        b = baseline.members[0]
        recon = compile_reconstructor(b.model, b.spec.window_size, b.spec.n_channels)
        scores = score_reconstruction(x_test_norm, recon(x_test_norm), baseline.score).scores
        train_err = score_reconstruction(x_train, recon(x_train), baseline.score).scores
        tutorial = float(np.mean(train_err) + np.std(train_err))
        out["baseline"] = {
            "oof_false_alarm_rate": _rate(baseline),
            "test": metrics(scores, y_test, baseline.threshold.value),
            "tutorial_threshold": {
                "value": tutorial,
                "how": "mean + 1 std of the training windows' errors (the tutorial's rule)",
                "test": metrics(scores, y_test, tutorial),
            },
            "test_scores": scores,
        }
    return out


def _rate(run: ModelRun) -> float:
    return float(np.mean(run.cross.scores > run.threshold.value))


def _curves(run: ModelRun, baseline: ModelRun | None) -> list[Curve]:
    first = f"{run.spec.name} (member 1)" if run.ensemble else run.spec.name
    curves = [_curve(first, run)]
    if baseline is not None:
        curves.append(_curve(baseline.spec.name, baseline))
    return curves


def _curve(name: str, run: ModelRun) -> Curve:
    """A loss history with its unit and what its scale means."""
    history = run.members[0].history
    spec = run.spec
    if spec.arch == "ae-baseline":
        return Curve(name, history, "mean absolute error (normalised units)")
    n = spec.window_size * spec.n_channels
    note = (
        f"VAE loss per window = ½·T·C·ln(MSE) + β·KL, in nats up to a constant (T·C = {n}, "
        f"β = {spec.beta:g}): a log-likelihood, so it is negative once the reconstruction "
        f"MSE of the normalised window is below 1, and {n / 2:g} nats lower means an MSE "
        "e (2.7) times smaller."
    )
    rec = history.get("val_reconstruction") or history.get("reconstruction")
    if rec:
        note += f" Last epoch: MSE ≈ {np.exp(2 * rec[-1] / n):.2g}."
    return Curve(name, history, "loss (nats per window)", note)


def _plots(
    stage: Path,
    run: ModelRun,
    baseline: ModelRun | None,
    evaluation: dict[str, Any],
    result: Any,
    loaded: Any,
    x_test_norm: npt.NDArray[np.float32],
    y_test: npt.NDArray[np.bool_],
    data: Dataset,
) -> list[str]:
    curves = _curves(run, baseline)
    sets = [ScoredSet(run.spec.name, result.scores, run.threshold.value)]
    if baseline is not None:
        sets.append(
            ScoredSet(
                baseline.spec.name, evaluation["baseline"]["test_scores"], baseline.threshold.value
            )
        )
    x_hat = loaded.reconstruct(x_test_norm)
    if x_hat.ndim == 4:  # members: show their mean
        x_hat = x_hat.mean(axis=1)
    return plot_all(
        stage / "plots",
        curves,
        sets,
        y_test,
        x_test_norm,
        x_hat,
        result.step_errors,
        data.channel_names,
    )
