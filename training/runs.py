"""A model run: one architecture cross-fitted on the normal training windows, calibrated.

The K fold models give every normal training window an out-of-fold score, and the threshold
for the target false-alarm rate is calibrated on these. The scoring model is then either the
K fold models together (the default: an ensemble whose score is the mean of its members'
scores, so no model scores windows it was trained on, and ensembling also averages out the
run-to-run spread of single models) or one final model fitted on all normal windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from detector.bundle import ScoreSpec, ThresholdRecommendation
from training.calibrate import calibrate
from training.models import ArchSpec, ensemble_model, inference_model
from training.settings import TrainingSettings
from training.train import CrossFit, FitConfig, TrainedModel, cross_fit, train_one

__all__ = ["ModelRun", "run_model", "score_spec_for"]

log = structlog.get_logger("training")


@dataclass(slots=True)
class ModelRun:
    """One architecture, cross-fitted and calibrated, with the models that will score.

    Attributes:
        spec: the architecture.
        score: the bundle's score specification (``members`` > 1 for an ensemble).
        member_score: the same for one member (how the out-of-fold scores were computed).
        cross: the cross-fit (out-of-fold scores, fold models).
        threshold: calibrated on the out-of-fold scores.
        members: the scoring models: the K fold models (ensemble) or one final model.
        seconds: wall time of all its fitting.
    """

    spec: ArchSpec
    score: ScoreSpec
    member_score: ScoreSpec
    cross: CrossFit
    threshold: ThresholdRecommendation
    members: list[TrainedModel]
    seconds: float

    @property
    def ensemble(self) -> bool:
        """Whether the fold models score together."""
        return self.score.members > 1

    def scorer(self) -> Any:
        """The Keras model to export (built-in layers only)."""
        if self.ensemble:
            return ensemble_model([m.model for m in self.members], self.spec)
        return inference_model(self.members[0].model, self.spec)


def score_spec_for(spec: ArchSpec, smoothing: int) -> ScoreSpec:
    """The VAE's smoothed MSE, or the tutorial's plain MAE for the baseline AE (one member)."""
    if spec.arch == "ae-baseline":
        return ScoreSpec(kind="mae", description="mean absolute error (the tutorial's)")
    return ScoreSpec(
        kind="mse",
        smoothing=smoothing,
        description=f"mean squared error of the posterior-mean reconstruction, residual "
        f"smoothed over {smoothing} steps",
    )


def run_model(
    spec: ArchSpec, x: npt.NDArray[np.float32], s: TrainingSettings, cfg: FitConfig, ensemble: bool
) -> ModelRun:
    """Cross-fit ``spec`` on normalised normal windows ``x``, calibrate, pick the scorer.

    Args:
        spec: the architecture.
        x: normalised normal training windows (N, T, C).
        s: the settings (folds, seed, target FAR, threshold method, smoothing).
        cfg: how to fit each model.
        ensemble: score with the K fold models together; else fit one final model on ``x``.
    """
    started = time.monotonic()
    member_score = score_spec_for(spec, s.smoothing)
    with_latent = spec.arch != "ae-baseline"
    log.info("cross_fit", model=spec.name, folds=s.folds, windows=len(x))
    cross = cross_fit(spec, x, s.folds, s.seed, cfg, member_score, with_latent=with_latent)
    threshold = calibrate(cross.scores, s.target_far, s.threshold_method)
    log.info("calibrated", model=spec.name, threshold=threshold.value, method=threshold.method)
    if not threshold.resolvable:
        log.warning(
            "target_far_not_resolvable",
            model=spec.name,
            target_far=s.target_far,
            held_out_normal=threshold.n_samples,
            min_resolvable_far=threshold.min_resolvable_far,
            note="too few normal windows to see this rate: the threshold is extrapolated and "
            "the realised rate may differ; train on more normal data or raise --target-far",
        )
    if ensemble:
        members = cross.models
        score = member_score.model_copy(
            update={
                "members": len(members),
                "description": f"{member_score.description}; mean over the {len(members)} "
                "cross-fitted members",
            }
        )
    else:
        members = [train_one(spec, x, s.seed, cfg, label=f"{spec.name} final")]
        score = member_score
    return ModelRun(
        spec, score, member_score, cross, threshold, members, time.monotonic() - started
    )
