"""The ECG5000-layout reader of :mod:`detector.datafile`: no header, one window (beat) per
row, the samples then the class in the last column (1 = normal). The rules it follows are the
package docstring's ``ecg5000`` section.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector.datafile.rows import RowRange, _numbers, _read_lines, _select, sniff_delimiter
from detector.datafile.windowing import NO_ANOMALY, TimePolicy, WindowSet
from detector.errors import DataFileError

ECG5000_CLASSES = {0: "abnormal", 2: "r_on_t_pvc", 3: "pvc", 4: "sp_eb", 5: "unclassified"}


def _read_ecg5000(
    path: Path,
    rows: RowRange | None,
    delimiter: str | None,
    source: str,
    period_ms: int,
    time_policy: TimePolicy,
) -> WindowSet:
    lines = _read_lines(path)
    numbered = [
        (i, n, t) for i, (n, t) in enumerate((n, t) for n, t in enumerate(lines, 1) if t.strip())
    ]
    chosen = _select(path, numbered, rows, "data")
    sep = delimiter or sniff_delimiter(chosen[0][2])
    decimal_comma = sep == ";"
    split = [[c.strip() for c in text.split(sep)] for _r, _n, text in chosen]
    width = len(split[0])
    if width < 3:
        raise DataFileError(
            path,
            f"{width} columns; an ECG5000-layout row holds samples then a label (at least 3 "
            "columns)",
            chosen[0][1],
        )
    for fields, (_r, n, _t) in zip(split, chosen, strict=True):
        if len(fields) != width:
            raise DataFileError(
                path, f"{len(fields)} columns, expected {width} like the first row", n
            )
    line_of = [n for _r, n, _t in chosen]
    data = np.stack(
        [
            _numbers(path, [f[j] for f in split], line_of, str(j + 1), decimal_comma)
            for j in range(width)
        ],
        axis=1,
    )
    raw = data[:, -1]
    bad = (raw != np.round(raw)) | (raw < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(
            path,
            f"label (last column) {raw[i]:g} is not a class number; in the ECG5000 layout "
            "1 = normal, 0 or another class number = anomalous",
            line_of[i],
        )
    classes = raw.astype(np.int64)
    end_row = np.asarray([r for r, _n, _t in chosen], dtype=np.int64)
    return WindowSet(
        values=data[:, :-1, None].astype(np.float32),
        labels=classes != 1,
        end_row=end_row,
        event_time_ms=end_row * int(period_ms),
        source_ids=(source,) * len(end_row),
        channel_names=("ecg",),
        path=path,
        fmt="ecg5000",
        policy_touched=0,
        anomaly_types=tuple(
            NO_ANOMALY if c == 1 else ECG5000_CLASSES.get(c, f"class_{c}") for c in classes.tolist()
        ),
        synthetic_time=True,
        time_policy=time_policy,
    )
