"""One reader for every data file: CSV series, the ECG5000 layout, NPZ windows; and windowing.

Producer replay, training and the backtest read files through this module only, so the same
file trains, replays and backtests to the same windows under one set of rules. Pure: numpy
and the standard library (no pandas, no clock, no environment).

Formats (``fmt="auto"``: ``npz`` by suffix; else ``ecg5000`` when the first non-blank line is
all numbers; else ``csv``):

``csv``: a timestamped multichannel series with a header row, cut into windows of ``window``
rows every ``stride`` rows (default: ``window``, non-overlapping).

* Delimiter: ``,``, ``;`` or a tab, whichever the header line holds most of (a tie is ``,``).
  With ``;``, decimal commas (``21,5``) are read as decimal points. Fields may be quoted.
* Time column: ``time_column``; else the first column named ``timestamp``, ``time``,
  ``datetime``, ``date``, ``ts`` or ``epoch`` (any case); else the first column if its first
  value is a date rather than a number; else none (synthetic times, below). Times are ISO
  8601 (a time without a zone is UTC) or numbers of epoch time whose unit follows the
  largest magnitude in the column: below 1e11 seconds, below 1e14 milliseconds, below 1e17
  microseconds, else nanoseconds. So a column of row numbers (0, 1, 2, ...) is read as
  seconds. Every time is rounded to the millisecond.
* Label column: ``label_column``; else the first of ``label``, ``is_anomaly``, ``anomaly``
  present (any case). **1 = anomalous, 0 = normal.** Also normal: an empty cell, ``normal``,
  ``false``, ``no``, ``none``, ``ok``; also anomalous: any other number, ``true``, ``yes``;
  any other text is anomalous and names the anomaly type (``valve_stuck``).
* Label-like columns (``label``, ``is_anomaly``, ``anomaly``, ``changepoint``, any case) are
  never channels unless ``columns`` names them.
* Source column (optional, ``source_column``): several sources interleaved in one file;
  windows are cut within each source, and times must increase within each source. Without it
  every row belongs to ``default_source`` (default: the file name without its suffix).
* Channels: ``columns`` in that order; else every other column whose first non-empty value
  (in the selected rows) is a number. Text columns, and columns empty in every selected row,
  are skipped (``skipped_columns``).
* A missing (empty), non-numeric, NaN or infinite channel value is a :class:`DataFileError`
  naming the file and the line.
* Times that repeat or go back (within a source) follow ``time_policy``:

  - ``"clamp"`` (default): the row is kept and its time becomes the previous row's time
    + 1 ms, so event times increase strictly and every row is windowed;
  - ``"drop"``: the row is dropped (windows then span the gap);
  - ``"error"``: refused with a :class:`DataFileError` naming the line and the flag
    (``--time-policy``) that changes the policy.

  ``policy_touched`` counts the rows the policy moved or dropped (for a warning line).

``ecg5000``: the TensorFlow tutorial's layout: no header, one window (beat) per row, the
samples then the label in the last column. **In this layout 1 = normal**; 0 (the tutorial's
file) or any other class number (the original 5-class file: 2 R-on-T PVC, 3 PVC, 4 SP/EB,
5 unclassified) is anomalous, and names the anomaly type.

``npz``: windows already cut, as ``numpy.savez`` writes them (producer.filesink's layout):
``windows`` (N, T, C) or (N, T) (alias ``x``), optional ``labels`` (N,) 1 = anomalous
(alias ``y``), ``channel_names`` (C,), ``anomaly_types`` (N,), ``source_ids`` (N,),
``event_time_ms`` (N,).

Rows: ``rows=(a, b)`` keeps the data rows ``a <= i < b`` (0-based, either end optional). A data
row is a non-blank line after the header (csv), a non-blank line (ecg5000) or an entry (npz);
blank lines are skipped and not counted. Only the selected rows are checked, and ``end_row``
stays the row's index in the whole file.

Synthetic times: without a time column (ecg5000, npz without ``event_time_ms``, a csv without
one), data row ``i`` is at ``i * period_ms`` ms after the Unix epoch (``period_ms`` = 1000 by
default), so ``event_time_ms == end_row * period_ms``.

Modules: :mod:`~detector.datafile.windowing` (the types, the constants and
:func:`cut_windows`), :mod:`~detector.datafile.rows` (row ranges and line reading shared by
the readers), :mod:`~detector.datafile.csv_series` (:func:`read_series`),
:mod:`~detector.datafile.ecg5000`, :mod:`~detector.datafile.npz`, and
:mod:`~detector.datafile.formats` (:func:`detect_format`, :func:`read_windows`). This
package re-exports their public names.

Examples:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pump.csv"
    >>> _ = path.write_text("time;a;b;label\\n0;1;2;0\\n1;3;4;1\\n1;5;6;0\\n3;7;8;0\\n")
    >>> ws = read_windows(path, window=2)
    >>> ws.values.shape, ws.labels.tolist(), ws.end_row.tolist(), ws.policy_touched
    ((2, 2, 2), [True, False], [1, 3], 1)
    >>> ws.event_time_ms.tolist()  # row 2 repeated row 1's time: clamped to 1001 ms
    [1000, 3000]
"""

from __future__ import annotations

from detector.datafile.csv_series import LABEL_LIKE_COLUMNS, read_series
from detector.datafile.ecg5000 import ECG5000_CLASSES
from detector.datafile.formats import detect_format, read_windows
from detector.datafile.rows import parse_row_range, sniff_delimiter
from detector.datafile.windowing import (
    DEFAULT_PERIOD_MS,
    FILE_FORMATS,
    NO_ANOMALY,
    TIME_COLUMNS,
    TIME_POLICIES,
    FileFormat,
    Series,
    TimePolicy,
    WindowSet,
    cut_windows,
)
from detector.errors import DataFileError

__all__ = [
    "DEFAULT_PERIOD_MS",
    "ECG5000_CLASSES",
    "FILE_FORMATS",
    "LABEL_LIKE_COLUMNS",
    "NO_ANOMALY",
    "TIME_COLUMNS",
    "TIME_POLICIES",
    "DataFileError",
    "FileFormat",
    "Series",
    "TimePolicy",
    "WindowSet",
    "cut_windows",
    "detect_format",
    "parse_row_range",
    "read_series",
    "read_windows",
    "sniff_delimiter",
]
