"""Plain builders for unit tests: manifests, records and scorers without TensorFlow."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from detector.bundle import (
    Manifest,
    Normalisation,
    ReferenceErrors,
    ThresholdRecommendation,
)
from detector.core import BatchScores, InputRecord
from detector.messages import encode_binary, encode_json


def make_manifest(window: int = 8, channels: int = 1, threshold: float = 1.0) -> Manifest:
    """A valid manifest whose reference scores sit well below ``threshold``."""
    ref = np.random.default_rng(0).uniform(0.0, threshold * 0.9, size=500).tolist()
    return Manifest(
        model_name="test-model",
        model_version="1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        arch="vae-dense",
        window_size=window,
        n_channels=channels,
        channel_names=[f"ch{i}" for i in range(channels)],
        normalisation=Normalisation(method="none", offset=[0.0] * channels, scale=[1.0] * channels),
        reference_errors=ReferenceErrors(
            n=len(ref), how="test", quantiles={"0.99": threshold}, sample=ref
        ),
        threshold=ThresholdRecommendation(
            value=threshold, target_far=0.01, method="test", n_samples=500
        ),
        model_sha256="ab" * 32,
    )


class MeanScorer:
    """Score = mean of the raw values; contributions = the values themselves."""

    calls = 0

    def score(self, batch: npt.NDArray[np.float32]) -> BatchScores:
        self.calls += 1
        return BatchScores(
            batch.mean(axis=(1, 2)).astype(np.float32),
            batch.mean(axis=2).astype(np.float32),
            batch.mean(axis=1).astype(np.float32),
        )


def record(
    offset: int,
    level: float,
    source: str = "s1",
    window: int = 8,
    binary: bool = False,
    partition: int = 0,
) -> InputRecord:
    """A window whose mean is ``level`` (so MeanScorer scores it ``level``)."""
    values = np.full(window, level, dtype=np.float32)
    if binary:
        value, headers = encode_binary(source, offset, 1_000 * offset, values)
    else:
        value, headers = encode_json(source, offset, 1_000 * offset, values), None
    return InputRecord("windows", partition, offset, source.encode(), value, headers, 0)
