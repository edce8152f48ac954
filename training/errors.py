"""Errors raised by the training package, under the project's one base (:mod:`detector.errors`).

The tree (the part of it that training adds)::

    DetectorError
    ├── ConfigError            (detector.errors) settings or flags that cannot work
    └── TrainingError          training could not produce a bundle
        ├── DataError              an input file that cannot be used (names the file and row)
        └── DownloadError          a download that failed or whose sha256 does not match

The CLI prints any :class:`~detector.errors.DetectorError` as one line and exits non-zero,
without a traceback.
"""

from __future__ import annotations

from pathlib import Path

from detector.errors import DetectorError

__all__ = ["DataError", "DownloadError", "TrainingError"]


class TrainingError(DetectorError):
    """Training could not produce a bundle."""


class DataError(TrainingError):
    """An input file that cannot be used for training or evaluation.

    Attributes:
        path: the file.
        row: the 1-based line of a CSV file, or the 0-based window index of an NPZ file
            (``unit="window"``), at fault; None when the problem is not in one row.
        detail: what is wrong, without the location.
    """

    def __init__(self, path: Path | str, detail: str, row: int | None = None, unit: str = "line"):
        where = f"{path}" if row is None else f"{path}: {unit} {row}"
        super().__init__(f"{where}: {detail}")
        self.path = Path(path)
        self.row = row
        self.detail = detail


class DownloadError(TrainingError):
    """A download failed, or the file it fetched has the wrong sha256."""
