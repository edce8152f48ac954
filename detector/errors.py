"""Errors raised by the detector and shared by the other packages.

The tree::

    DetectorError
    ├── ConfigError            settings that cannot work (bad value, missing file)
    ├── BundleError            a model bundle that must not be loaded
    │   ├── BundleChecksumError    model.keras does not match the manifest's sha256
    │   └── BundleSchemaError      manifest missing, unreadable or of another schema version
    ├── DecodeError            one input record that cannot be scored (-> dead-letter topic)
    ├── DataFileError          a data file (CSV, ECG5000 layout, NPZ) that cannot be read
    ├── ThresholdStateError    a threshold snapshot that cannot be restored (threshold_state)
    └── KafkaUnavailableError  the broker could not be reached within the start-up budget

Library errors (confluent_kafka, keras, pydantic) are translated at the edge with
``raise ... from exc`` so that callers handle one family.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BundleChecksumError",
    "BundleError",
    "BundleSchemaError",
    "ConfigError",
    "DataFileError",
    "DecodeError",
    "DetectorError",
    "KafkaUnavailableError",
]


class DetectorError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(DetectorError):
    """A setting has a value that cannot work."""


class BundleError(DetectorError):
    """A model bundle that must not be loaded."""


class BundleChecksumError(BundleError):
    """``model.keras`` does not match the sha256 recorded in the manifest."""


class BundleSchemaError(BundleError):
    """The manifest is missing, unreadable, or written for another schema version."""


class DecodeError(DetectorError):
    """One input record cannot be scored.

    Attributes:
        reason: a short machine-readable reason, used as the dead-letter header
            (``undecodable``, ``bad_shape``, ``non_finite``, ``non_numeric``,
            ``bad_event_time``, ``bad_source_id``, ``unknown_content_type``, ``oversize``,
            ``missing_field``; the core adds ``internal_error`` for an unexpected exception).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DataFileError(DetectorError):
    """A data file (CSV series, ECG5000 layout, NPZ windows) that cannot be read.

    The message names the file and, when the problem is in one place, the line (1-based, of
    a text file) or the window (0-based, of an NPZ file): ``data.csv: line 7: ...``.

    Attributes:
        path: the file.
        line: the 1-based line, or the 0-based window index when ``unit == "window"``; None
            when the problem is not in one place.
        detail: what is wrong, without the location.
        unit: ``"line"`` or ``"window"``.
    """

    def __init__(
        self, path: Path | str, detail: str, line: int | None = None, unit: str = "line"
    ) -> None:
        where = f"{path}" if line is None else f"{path}: {unit} {line}"
        super().__init__(f"{where}: {detail}")
        self.path = Path(path)
        self.line = line
        self.detail = detail
        self.unit = unit


class KafkaUnavailableError(DetectorError):
    """The Kafka cluster could not be reached within the configured time."""
