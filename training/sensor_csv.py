"""Generic timestamped multichannel CSV: parsing and validation (windows are cut in data.py).

The layout::

    timestamp,temp,pressure,vibration,label
    2024-05-01T00:00:00Z,21.3,1.01,0.002,0
    2024-05-01T00:00:01Z,21.4,1.02,0.003,0

* A header row names the columns. The separator is ``,`` or ``;`` (whichever the header
  uses more); with ``;``, decimal commas (``21,3``) are accepted.
* The timestamp column is the one named ``timestamp``, ``time`` or ``datetime`` (any case),
  else the first column. Timestamps are ISO 8601 or numbers (e.g. epoch seconds) and must
  increase strictly from row to row.
* The label column (optional) is ``--label-column NAME``, else a column named ``label`` if
  there is one: **1 = anomalous, 0 = normal** (``true``/``false`` accepted).
* Every other column is a numeric channel; NaN, inf and empty cells are errors.

Rows are reported by their 1-based line number in the file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.errors import DataError

__all__ = ["parse_float_row", "read_lines", "read_sensor_csv"]

TIMESTAMP_NAMES = ("timestamp", "time", "datetime")
TRUE_WORDS = {"1", "1.0", "true", "yes"}
FALSE_WORDS = {"0", "0.0", "false", "no"}


def read_lines(path: Path) -> list[str]:
    """The file's lines without line endings (read whole: the file is closed on return).

    Raises:
        DataError: the file cannot be read or is not UTF-8 text.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def parse_float_row(
    path: Path, lineno: int, fields: list[str], names: list[str]
) -> npt.NDArray[np.float64]:
    """Parse one row of numbers; any non-number, NaN or inf is a :class:`DataError`."""
    try:
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        for name, text in zip(names, fields, strict=True):
            try:
                float(text)
            except ValueError:
                shown = text.strip() or "an empty cell"
                raise DataError(path, f"{name}: {shown!r} is not a number", lineno) from None
        raise  # pragma: no cover - numpy and float() disagree
    if not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(path, f"{names[i]}: {fields[i].strip()!r} is not finite", lineno)
    return values


def _timestamp(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def read_sensor_csv(
    path: Path, window: int, label_column: str | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None, list[str]]:
    """Read a sensor CSV.

    Args:
        path: the file.
        window: the window length (only to fail early on a series shorter than one window).
        label_column: name of the label column; default ``label`` if present.

    Returns:
        ``(values (rows, C), labels (rows,) True = anomalous or None, channel names)``.

    Raises:
        DataError: malformed file, naming the line.
    """
    lines = enumerate(read_lines(path), start=1)
    header_line, header = next(((n, s) for n, s in lines if s.strip()), (0, ""))
    if not header:
        raise DataError(path, "the file is empty")
    sep = ";" if header.count(";") > header.count(",") else ","
    names = [h.strip().strip('"').strip() for h in header.split(sep)]
    if len(names) < 2:
        raise DataError(
            path, "the header names fewer than 2 columns (timestamp + channels)", header_line
        )
    if any(not n for n in names):
        raise DataError(path, "the header has an empty column name", header_line)
    if len(set(names)) != len(names):
        raise DataError(path, "the header repeats a column name", header_line)
    try:
        float(names[0])
    except ValueError:
        pass
    else:
        raise DataError(
            path, "the first line is numbers; a csv series needs a header row", header_line
        )
    lower = [n.lower() for n in names]
    ts_col = next((lower.index(t) for t in TIMESTAMP_NAMES if t in lower), 0)
    if label_column is not None and label_column not in names:
        raise DataError(
            path, f"no label column {label_column!r} (columns: {', '.join(names)})", header_line
        )
    label_col = (
        names.index(label_column)
        if label_column
        else (lower.index("label") if "label" in lower else None)
    )
    channels = [i for i in range(len(names)) if i not in (ts_col, label_col)]
    if not channels:
        raise DataError(path, "no numeric channel columns besides timestamp and label")
    channel_names = [names[i] for i in channels]
    values: list[npt.NDArray[np.float64]] = []
    labels: list[bool] = []
    last_ts: float | None = None
    for lineno, line in lines:
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != len(names):
            raise DataError(path, f"{len(fields)} columns, the header has {len(names)}", lineno)
        if sep == ";":
            fields = [f.replace(",", ".") for f in fields]
        ts = _timestamp(fields[ts_col])
        if ts is None:
            raise DataError(
                path,
                f"{names[ts_col]}: {fields[ts_col].strip()!r} is not an ISO 8601 time or a number",
                lineno,
            )
        if last_ts is not None and ts <= last_ts:
            raise DataError(path, f"{names[ts_col]} does not increase", lineno)
        last_ts = ts
        values.append(parse_float_row(path, lineno, [fields[i] for i in channels], channel_names))
        if label_col is not None:
            word = fields[label_col].strip().lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                raise DataError(
                    path,
                    f"{names[label_col]}: {fields[label_col].strip()!r}; labels are 1 "
                    "(anomalous) or 0 (normal)",
                    lineno,
                )
            labels.append(word in TRUE_WORDS)
    if not values:
        raise DataError(path, "no data rows after the header")
    if len(values) < window:
        raise DataError(
            path, f"the series has {len(values)} rows, shorter than one window of {window}"
        )
    label_arr = np.asarray(labels, dtype=bool) if label_col is not None else None
    return np.stack(values), label_arr, channel_names
