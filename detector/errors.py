"""Errors raised by the detector and shared by the other packages.

The tree (every error the project raises on purpose; ``producer`` and ``training`` add their
own branches in ``producer/errors.py`` and ``training/errors.py``)::

    DetectorError
    ├── ConfigError            settings that cannot work (bad value, missing file)
    ├── BundleError            a model bundle that must not be loaded
    │   ├── BundleChecksumError    model.keras does not match the manifest's sha256
    │   └── BundleSchemaError      manifest missing, unreadable or of another schema version
    ├── DecodeError            one input record that cannot be scored (-> dead-letter topic)
    ├── DataFileError          a data file (CSV, ECG5000 layout, NPZ) that cannot be read
    ├── ThresholdStateError    a threshold snapshot that cannot be restored
    ├── KafkaUnavailableError  the broker could not be reached within the start-up budget
    ├── PublishError           a batch's transaction failed (``retriable`` says if a retry may work)
    ├── AlertmanagerError      a post to Alertmanager did not go through
    │   ├── AlertmanagerUnavailableError   none answered; a later attempt may succeed
    │   └── AlertmanagerRejectedError      400/422: it refuses these alerts as they are
    ├── ProducerError          (producer) ── ProducerInputError, DeliveryError
    └── TrainingError          (training) ── DataError, DownloadError

Library errors (confluent_kafka, keras, pydantic) are translated at the edge with
``raise ... from exc`` so that callers handle one family. Two kinds of ``ValueError`` remain,
as Python has them: a caller breaking a function's documented contract (an empty sample, a
level outside [0, 1], a batch of the wrong shape), which is a bug and not an input problem;
and pydantic validators, whose ``ValueError`` pydantic wraps into a ``ValidationError`` that
the CLIs turn into one line (``config_errors.describe_settings_error``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AlertmanagerError",
    "AlertmanagerRejectedError",
    "AlertmanagerUnavailableError",
    "BundleChecksumError",
    "BundleError",
    "BundleSchemaError",
    "ConfigError",
    "DataFileError",
    "DecodeError",
    "DetectorError",
    "KafkaUnavailableError",
    "PublishError",
    "ThresholdStateError",
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


class ThresholdStateError(DetectorError):
    """A threshold snapshot that cannot be restored (corrupt, another version or model)."""


class PublishError(DetectorError):
    """A batch could not be published; ``retriable`` says whether a retry may succeed."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class AlertmanagerError(DetectorError):
    """A post to Alertmanager did not go through."""


class AlertmanagerUnavailableError(AlertmanagerError):
    """No Alertmanager took the alerts, and a later attempt may succeed."""


class AlertmanagerRejectedError(AlertmanagerError):
    """Alertmanager answered 400 or 422: it refuses these alerts as they are."""
