"""Writing a model bundle (see :mod:`detector.bundle` for the layout and the contract).

A bundle is assembled in a staging folder beside ``--out`` and moved into place only when
complete (model, manifest, report, plots), so a detector never sees half a bundle, and a
failed run leaves the previous bundle untouched. ``--out`` may be a new path, an empty
folder or an existing bundle; anything else is refused rather than overwritten.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

import orjson

from detector.bundle import (
    CHECKSUM_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    file_sha256,
    write_checksums,
)
from detector.errors import ConfigError

__all__ = [
    "BUNDLE_ENTRIES",
    "REPORT_FILE",
    "check_out_dir",
    "library_versions",
    "publish",
    "save_model",
    "staging_dir",
    "write_json",
    "write_manifest",
]

REPORT_FILE = "report.json"
PLOTS_DIR = "plots"
BUNDLE_ENTRIES = {MODEL_FILE, MANIFEST_FILE, CHECKSUM_FILE, REPORT_FILE, PLOTS_DIR}


def check_out_dir(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder or a bundle.

    Raises:
        ConfigError: ``out`` is a file, or a folder holding something else.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    extra = {p.name for p in out.iterdir()} - BUNDLE_ENTRIES
    if extra:
        shown = ", ".join(sorted(extra)[:3])
        raise ConfigError(
            f"--out {out}: exists and holds more than a model bundle ({shown}); "
            "choose an empty or new folder"
        )


def staging_dir(out: Path) -> Path:
    """A fresh, empty staging folder next to ``out``.

    Raises:
        ConfigError: the folder cannot be created (permissions, read-only file system).
    """
    stage = out.parent / f".{out.name}.staging-{os.getpid()}"
    try:
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there: {exc.strerror or exc}") from exc
    return stage


def save_model(model: Any, stage: Path) -> str:
    """Save the Keras scorer as ``model.keras``; return its sha256."""
    path = stage / MODEL_FILE
    model.save(path)
    return file_sha256(path)


def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented JSON (numpy scalars and arrays allowed)."""
    path.write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    )


def write_manifest(stage: Path, manifest: Manifest) -> None:
    """Write ``manifest.json``, and ``bundle.sha256`` over it and ``model.keras``."""
    (stage / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    write_checksums(stage)


def publish(stage: Path, out: Path) -> None:
    """Move the finished staging folder to ``out``, replacing a previous bundle there."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    stage.rename(out)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the bundle."""
    import keras
    import numpy
    import sklearn
    import tensorflow

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "scikit-learn": sklearn.__version__,
    }
