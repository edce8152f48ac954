"""Helpers shared by the readers of :mod:`detector.datafile`: row ranges (``"A:B"``), the
delimiter sniff, reading a file's lines, selecting the data rows in a range, and columns of
finite numbers with errors naming the line. The file-format contract is the package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.errors import DataFileError

RowRange = tuple[int | None, int | None]
_Rows = list[tuple[int, int, str]]  # (data row, 1-based line, text) of the selected rows


def sniff_delimiter(line: str) -> str:
    """``,``, ``;`` or a tab: whichever ``line`` holds most of (a tie is ``,``)."""
    counts = {sep: line.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=lambda sep: counts[sep])  # max keeps the first of equals


def parse_row_range(text: str) -> RowRange:
    """Parse ``"A:B"`` (0-based data rows, B excluded; ``"400:"``, ``":1000"``) as a range.

    Raises:
        ValueError: not of that form, negative, or B <= A.
    """
    start, sep, stop = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError
        a = int(start) if start.strip() else None
        b = int(stop) if stop.strip() else None
    except ValueError:
        raise ValueError(
            f"rows {text!r}: expected A:B (0-based data rows, B excluded, either side "
            "optional), e.g. 400: or 0:1000"
        ) from None
    return _check_range((a, b), text)


def _check_range(rows: RowRange, shown: object) -> RowRange:
    a, b = rows
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise ValueError(f"rows {shown}: row numbers are >= 0")
    if a is not None and b is not None and b <= a:
        raise ValueError(f"rows {shown}: the end ({b}) must be after the start ({a})")
    return rows


def _read_lines(path: Path) -> list[str]:
    if path.is_dir():
        raise DataFileError(path, "is a directory, not a data file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataFileError(path, "the file is empty")
    return lines


def _select(path: Path, numbered: _Rows, rows: RowRange | None, what: str) -> _Rows:
    """The data rows inside ``rows`` (an error when none is)."""
    if not numbered:
        raise DataFileError(path, f"no {what} rows")
    if rows is None:
        return numbered
    try:
        a, b = _check_range(rows, f"{rows[0]}:{rows[1]}")
    except ValueError as exc:
        raise DataFileError(path, str(exc)) from None
    chosen = numbered[a or 0 : b]
    if not chosen:
        raise DataFileError(
            path,
            f"rows {'' if a is None else a}:{'' if b is None else b} select no row; the file "
            f"has {len(numbered)} {what} rows (0 to {len(numbered) - 1})",
        )
    return chosen


def _numbers(
    path: Path,
    cells: Sequence[str],
    lines: Sequence[int],
    column: str,
    decimal_comma: bool,
) -> npt.NDArray[np.float64]:
    """One column of finite numbers; an error names the first bad cell's line."""
    texts = [c.replace(",", ".") for c in cells] if decimal_comma else list(cells)
    try:
        values = np.asarray(texts, dtype=np.float64)
    except ValueError:
        for text, line in zip(texts, lines, strict=True):
            try:
                float(text)
            except ValueError:
                what = "an empty cell (a missing value)" if not text else repr(text)
                raise DataFileError(
                    path, f"column {column}: {what} is not a number", line
                ) from None
        raise  # pragma: no cover - numpy and float() disagree
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(path, f"column {column}: {texts[i]!r} is not finite", lines[i])
    return values


def _is_number(text: str, decimal_comma: bool) -> bool:
    try:
        float(text.replace(",", ".") if decimal_comma else text)
    except ValueError:
        return False
    return True
