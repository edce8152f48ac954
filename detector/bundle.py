"""The model bundle contract: a directory with ``model.keras`` and ``manifest.json``.

Training writes bundles; the detector reads them. This module is pure (pydantic, numpy,
hashlib): the TensorFlow side lives in :mod:`detector.model`.

Layout::

    bundle/
      model.keras     deterministic scorer of built-in layers: input -> encoder mean -> decoder
      manifest.json   :class:`Manifest`
      bundle.sha256   sha256 of manifest.json's exact bytes and of model.keras, in
                      ``sha256sum`` format (``sha256sum -c bundle.sha256`` checks it too)
      report.json     evaluation report (training writes it; the detector ignores it)
      plots/          PNG figures

Integrity: the manifest says how to score and where to flag (normalisation, threshold), so it
is checked like the model. :func:`read_manifest` refuses a bundle whose ``manifest.json`` or
``model.keras`` differs from ``bundle.sha256`` (and a ``model.keras`` that differs from the
manifest's ``model_sha256``). A bundle written before ``bundle.sha256`` existed still loads,
with a ``bundle_manifest_unverified`` warning: its model is checked, its manifest cannot be.
These are checksums against accidents and unreviewed edits, not signatures: whoever can
write the bundle can rewrite them.

Scoring contract (applied identically by training's evaluation and the detector):

1. ``x_norm = (x - normalisation.offset) / normalisation.scale`` per channel, x of shape (T, C).
2. ``x_hat = model(x_norm)`` with the same shape; or, for an ensemble of ``score.members``
   = M > 1 members, of shape (M, T, C): one reconstruction per member.
3. ``r = x_norm - x_hat`` (per member), then, if ``score.smoothing`` is L > 1, ``r`` is replaced
   by its centred moving average of L steps along T (edge values repeated, so ``r[t]`` becomes
   the mean of ``r[clip(t - L//2 .. t + L//2, 0, T-1)]``); 1 (the default) leaves ``r`` as is.
4. ``e = score.weights * r ** 2`` if ``score.kind == "mse"`` or ``abs(r)`` for ``"mae"``;
   weights are (T, C) or absent (ones). With members, ``e`` is averaged over them: the
   ensemble's score is the mean of its members' scores (not the error of their mean).
5. score = mean of ``e`` over (T, C); per-step contributions = mean over C; per-channel
   contributions = mean over T.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from detector.errors import BundleChecksumError, BundleSchemaError

__all__ = [
    "CHECKSUM_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "SCHEMA_VERSION",
    "Manifest",
    "Normalisation",
    "ReferenceErrors",
    "ScoreSpec",
    "ThresholdRecommendation",
    "file_sha256",
    "read_manifest",
    "write_checksums",
]

SCHEMA_VERSION = 1
MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
CHECKSUM_FILE = "bundle.sha256"
_CHECKED_FILES = (MANIFEST_FILE, MODEL_FILE)
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")  # sha256sum's text or binary mode


class Normalisation(BaseModel):
    """Per-channel affine normalisation: ``(x - offset) / scale``."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["minmax", "standard", "none"]
    offset: list[float] = Field(description="One value per channel.")
    scale: list[float] = Field(description="One positive value per channel.")
    centre: bool = Field(
        False,
        description="Subtract each window's own per-channel mean first (offset and scale are "
        "then fitted on centred windows). Scores stop depending on a channel's level, so a "
        "slow level drift cannot push every window over the threshold; a level that stays "
        "shifted for longer than a window is then seen only at its edges.",
    )

    @model_validator(mode="after")
    def _check(self) -> Normalisation:
        if len(self.offset) != len(self.scale):
            raise ValueError("offset and scale must have one value per channel")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale values must be positive")
        return self

    def apply(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Normalise ``x`` of shape (..., T, C)."""
        if self.centre:
            x = x - x.mean(axis=-2, keepdims=True, dtype=np.float32)
        offset = np.asarray(self.offset, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        return ((x - offset) / scale).astype(np.float32, copy=False)


class ScoreSpec(BaseModel):
    """How a reconstruction becomes an anomaly score (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mse", "mae"] = "mse"
    weights: list[list[float]] | None = Field(
        None, description="(T, C) weights, e.g. inverse per-feature variance; None means ones."
    )
    smoothing: int = Field(
        1,
        ge=1,
        description="Odd length of the centred moving average applied to the residual along T "
        "before squaring (edges repeated); 1 = none.",
    )
    members: int = Field(
        1,
        ge=1,
        description="1: the model outputs (B, T, C); M > 1: an ensemble whose output is "
        "(B, M, T, C), member errors averaged.",
    )
    description: str = ""

    @model_validator(mode="after")
    def _check_smoothing(self) -> ScoreSpec:
        if self.smoothing % 2 != 1:
            raise ValueError("smoothing must be an odd number of steps")
        return self


class ReferenceErrors(BaseModel):
    """Scores of held-out normal windows never used to fit the weights."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, description="How many held-out normal windows were scored.")
    how: str = Field(description="Where they came from, e.g. 'out-of-fold, 5 folds'.")
    quantiles: dict[str, float] = Field(
        description="Quantile level (as text, e.g. '0.99') -> score."
    )
    sample: list[float] = Field(description="Up to a few thousand scores, for warm starts.")


class ThresholdRecommendation(BaseModel):
    """The threshold training recommends for ``target_far``."""

    model_config = ConfigDict(extra="forbid")

    value: float
    target_far: float = Field(gt=0, lt=1)
    method: str = Field(description="e.g. 'empirical quantile' or 'GPD tail fit'.")
    n_samples: int
    resolvable: bool = Field(
        True,
        description="False when n_samples * target_far < 5: too few held-out normal windows "
        "to see the target rate; the value is extrapolated from the tail, and the realised "
        "rate in the stream may differ (the adaptive threshold corrects it online).",
    )
    min_resolvable_far: float | None = Field(
        None, description="The smallest rate these samples resolve: 5 / n_samples."
    )


class Manifest(BaseModel):
    """``manifest.json``: everything needed to score with the bundle and to trust it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    model_name: str
    model_version: str
    created_at: datetime
    arch: str = Field(description="e.g. 'vae-conv', 'vae-dense', 'ae-baseline'.")
    window_size: int = Field(ge=1)
    n_channels: int = Field(ge=1)
    channel_names: list[str]
    normalisation: Normalisation
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    reference_errors: ReferenceErrors
    threshold: ThresholdRecommendation
    metrics: dict[str, float] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    training: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _check_shapes(self) -> Manifest:
        if len(self.channel_names) != self.n_channels:
            raise ValueError("channel_names must have n_channels entries")
        if len(self.normalisation.offset) != self.n_channels:
            raise ValueError("normalisation must have one offset and scale per channel")
        w = self.score.weights
        if w is not None and (
            len(w) != self.window_size or any(len(r) != self.n_channels for r in w)
        ):
            raise ValueError("score.weights must have shape (window_size, n_channels)")
        return self

    @property
    def model_id(self) -> str:
        """``name:version@sha[:12]``, the model identity printed in alerts and logs."""
        return f"{self.model_name}:{self.model_version}@{self.model_sha256[:12]}"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(bundle_dir: Path) -> None:
    """Write ``bundle.sha256`` over ``manifest.json`` and ``model.keras`` as they are now.

    Call it after the last write of either file (training's export does).
    """
    lines = [f"{file_sha256(bundle_dir / name)}  {name}\n" for name in _CHECKED_FILES]
    (bundle_dir / CHECKSUM_FILE).write_text("".join(lines), encoding="utf-8")


def _read_checksums(path: Path) -> dict[str, str]:
    """``bundle.sha256`` as file name -> sha256.

    Raises:
        BundleChecksumError: unreadable, malformed, or not covering both checked files.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleChecksumError(f"{path}: unreadable: {exc}") from exc
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.match(line)
        if match is None:
            raise BundleChecksumError(f"{path}: line {number} is not '<sha256>  <file>'")
        name = match.group(2)
        if "/" in name or "\\" in name or name.startswith("."):
            raise BundleChecksumError(f"{path}: line {number} names a file outside the bundle")
        sums[name] = match.group(1)
    missing = [name for name in _CHECKED_FILES if name not in sums]
    if missing:
        raise BundleChecksumError(f"{path}: no checksum for {', '.join(missing)}")
    return sums


def _verify_checksums(bundle_dir: Path, manifest_raw: bytes) -> None:
    """Check the manifest's bytes (as read for parsing) and the other listed files against
    ``bundle.sha256``; warn when a bundle has none (written before it existed).

    Raises:
        BundleChecksumError: a listed file differs or is missing.
    """
    path = bundle_dir / CHECKSUM_FILE
    if not path.is_file():
        import structlog  # only here: the pure core imports this module, not the logging stack

        structlog.get_logger().warning(
            "bundle_manifest_unverified",
            bundle=str(bundle_dir),
            reason=f"no {CHECKSUM_FILE} (a bundle from an older export): model.keras is "
            "checked against the manifest, the manifest itself cannot be",
        )
        return
    for name, expected in _read_checksums(path).items():
        target = bundle_dir / name
        if name == MANIFEST_FILE:
            actual = hashlib.sha256(manifest_raw).hexdigest()
        elif target.is_file():
            actual = file_sha256(target)
        else:
            raise BundleChecksumError(f"{target}: missing, but listed in {CHECKSUM_FILE}")
        if actual != expected:
            raise BundleChecksumError(
                f"{target}: sha256 {actual[:12]}… does not match {CHECKSUM_FILE}'s "
                f"{expected[:12]}…; refusing to load an edited or partial bundle"
            )


def read_manifest(bundle_dir: Path, verify_checksum: bool = True) -> Manifest:
    """Read and check a bundle's manifest.

    Raises:
        BundleSchemaError: no manifest, invalid JSON, or another schema version.
        BundleChecksumError: ``manifest.json`` or ``model.keras`` differs from
            ``bundle.sha256``, or ``model.keras`` is missing or differs from the manifest's
            ``model_sha256``.
    """
    manifest_path = bundle_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleSchemaError(f"{manifest_path}: no manifest; is {bundle_dir} a model bundle?")
    raw = manifest_path.read_bytes()
    if verify_checksum:  # before parsing: an edited manifest is named as such
        _verify_checksums(bundle_dir, raw)
    try:
        version = Manifest.model_validate_json(raw, strict=False).schema_version
    except ValidationError as exc:
        import orjson

        try:
            version = int(orjson.loads(raw).get("schema_version", -1))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise BundleSchemaError(f"{manifest_path}: not a valid manifest: {exc}") from exc
        if version != SCHEMA_VERSION:
            raise BundleSchemaError(
                f"{manifest_path}: schema version {version}, this detector reads {SCHEMA_VERSION}"
            ) from exc
        raise BundleSchemaError(f"{manifest_path}: not a valid manifest: {exc}") from exc
    if version != SCHEMA_VERSION:
        raise BundleSchemaError(
            f"{manifest_path}: schema version {version}, this detector reads {SCHEMA_VERSION}"
        )
    manifest = Manifest.model_validate_json(raw)
    if verify_checksum:
        model_path = bundle_dir / MODEL_FILE
        if not model_path.is_file():
            raise BundleChecksumError(f"{model_path}: missing")
        actual = file_sha256(model_path)
        if actual != manifest.model_sha256:
            raise BundleChecksumError(
                f"{model_path}: sha256 {actual[:12]}… does not match the manifest's "
                f"{manifest.model_sha256[:12]}…; refusing to load a modified or partial bundle"
            )
    return manifest
