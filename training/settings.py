"""Settings of the ``training`` process: environment (``TRAINING_*``), ``.env``, then CLI flags.

Every field can be set as ``TRAINING_<NAME>`` (e.g. ``TRAINING_EPOCHS=50``,
``TRAINING_WIDTHS=[512,256]``) or in a ``.env`` file; command-line flags override both.
Tests build it with keyword arguments.

Examples:
    >>> TrainingSettings(epochs=5, arch="conv").epochs
    5
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector.datafile import TimePolicy, parse_row_range
from detector.log import LogFormat
from training.calibrate import ThresholdMethod
from training.data import Format
from training.models import Arch
from training.normalise import NormMethod

__all__ = ["TrainingSettings"]


class TrainingSettings(BaseSettings):
    """How ``training fit`` builds a bundle (defaults: measured on ECG5000, see README)."""

    model_config = SettingsConfigDict(
        env_prefix="TRAINING_", env_file=".env", extra="ignore", validate_default=True
    )

    # data
    format: Format = "auto"
    window: int | None = Field(None, ge=2, description="csv: window length in rows.")
    stride: int | None = Field(
        None, ge=1, description="csv: rows between windows (default window)."
    )
    label_column: str | None = Field(
        None, description="csv: label column, 1 = anomalous (default 'label' or 'is_anomaly')."
    )
    columns: str | None = Field(
        None,
        description="csv: comma-separated channel columns (default: every numeric column "
        "but the time, label, source and label-like ones).",
    )
    time_column: str | None = Field(None, description="csv: time column (default: by name).")
    source_column: str | None = Field(
        None, description="csv: source id column; windows are cut within each source."
    )
    rows: str | None = Field(
        None, description="Data rows A:B (0-based, B excluded, either side optional)."
    )
    time_policy: TimePolicy = Field(
        "clamp",
        description="csv times that repeat or go back: clamp (previous + 1 ms), drop, error.",
    )
    test_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share held out for test (csv: the last windows; npz: random); "
        "0 = no test set, train on every window (ecg5000 too).",
    )
    split_seed: int = Field(21, description="npz: seed of the train/test split.")
    normalisation: NormMethod | Literal["auto"] = "auto"
    centre_windows: bool = Field(
        False,
        description="Subtract each window's own per-channel mean before normalising (scores "
        "then ignore slow level drift; see detector.bundle.Normalisation).",
    )

    # model
    arch: Arch = "dense"
    latent: int = Field(16, ge=1)
    widths: list[int] | None = Field(None, description="Hidden widths; default per arch.")
    beta: float = Field(1.0, ge=0)
    kernel_size: int = Field(7, ge=1)

    # fitting
    epochs: int = Field(150, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(20, ge=0, description="Early-stopping patience in epochs; 0 = off.")
    val_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0

    # scoring and calibration
    smoothing: int = Field(3, ge=1, description="Odd moving-average length on the residual.")
    folds: int = Field(5, ge=2, description="K of the out-of-fold calibration.")
    ensemble: bool = Field(
        True,
        description="Score with the K cross-fitted models together (mean of their scores); "
        "False: one final model fitted on all normal training windows.",
    )
    target_far: float = Field(0.01, gt=0, lt=0.5)
    threshold_method: ThresholdMethod = "gpd"

    # baseline and outputs
    baseline: bool = Field(True, description="Also fit and report the tutorial's plain AE.")
    baseline_epochs: int = Field(20, ge=1)
    baseline_batch_size: int = Field(512, ge=1)
    plots: bool = True
    model_name: str = ""
    model_version: str = ""

    # process
    threads: int = Field(2, ge=1, description="TensorFlow intra-op threads.")
    quiet: bool = False
    log_level: str = "INFO"
    log_format: LogFormat = "auto"

    def column_list(self) -> list[str] | None:
        """``columns`` as a list (None: the default channels)."""
        if not self.columns:
            return None
        return [c.strip() for c in self.columns.split(",") if c.strip()]

    def row_range(self) -> tuple[int | None, int | None] | None:
        """``rows`` parsed (None: every row)."""
        return None if self.rows is None else parse_row_range(self.rows)

    @model_validator(mode="after")
    def _check(self) -> TrainingSettings:
        if self.rows is not None:
            parse_row_range(self.rows)  # a ValueError here is a validation error
        if self.smoothing % 2 != 1:
            raise ValueError("smoothing must be odd (1 = none)")
        if self.widths is not None and (not self.widths or min(self.widths) < 1):
            raise ValueError("widths must be positive integers")
        return self
