"""The NPZ reader of :mod:`detector.datafile`: windows already cut, as ``numpy.savez`` writes
them (producer.filesink's layout). The arrays it reads and checks are the package docstring's
``npz`` section.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.datafile.rows import RowRange, _select
from detector.datafile.windowing import NO_ANOMALY, TimePolicy, WindowSet
from detector.errors import DataFileError


def _npz_strings(arrays: dict[str, npt.NDArray[np.generic]], key: str, n: int) -> list[str] | None:
    if key not in arrays:
        return None
    raw = np.asarray(arrays[key])
    return [str(x) for x in raw.tolist()] if raw.shape == (n,) else None


def _read_npz(
    path: Path,
    rows: RowRange | None,
    source: str,
    period_ms: int,
    time_policy: TimePolicy,
) -> WindowSet:
    if path.is_dir():
        raise DataFileError(path, "is a directory, not a data file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(path, f"not a readable .npz file of plain arrays: {exc}") from exc
    key = "windows" if "windows" in arrays else "x" if "x" in arrays else None
    if key is None:
        raise DataFileError(
            path, f"no 'windows' array (found: {', '.join(sorted(arrays)) or 'none'})"
        )
    windows = arrays[key]
    if windows.ndim == 2:
        windows = windows[:, :, None]
    if windows.ndim != 3 or min(windows.shape) < 1:
        raise DataFileError(
            path, f"'{key}' has shape {windows.shape}; expected (N, T, C) or (N, T)"
        )
    if windows.dtype != np.bool_ and (
        not np.issubdtype(windows.dtype, np.number)
        or np.issubdtype(windows.dtype, np.complexfloating)
    ):
        raise DataFileError(path, f"'{key}' has dtype {windows.dtype}; expected real numbers")
    n = len(windows)
    picked = _select(path, [(i, i, "") for i in range(n)], rows, "window")
    index = np.asarray([i for i, _n, _t in picked], dtype=np.int64)
    windows = windows[index]
    finite = np.isfinite(windows).all(axis=(1, 2))
    if not finite.all():
        i = int(index[int(np.argmax(~finite))])
        raise DataFileError(path, f"'{key}' holds NaN or inf", i, unit="window")
    labels: npt.NDArray[np.bool_] | None = None
    lkey = "labels" if "labels" in arrays else "y" if "y" in arrays else None
    if lkey is not None:
        raw = np.asarray(arrays[lkey])
        if raw.shape != (n,):
            raise DataFileError(path, f"'{lkey}' has shape {raw.shape}; expected ({n},)")
        if not np.issubdtype(raw.dtype, np.number) and raw.dtype != np.bool_:
            raise DataFileError(path, f"'{lkey}' has dtype {raw.dtype}; expected 0/1 integers")
        raw = raw[index]
        bad = (raw != 0) & (raw != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFileError(
                path,
                f"label {raw[i].item()!r}; labels are 1 (anomalous) or 0 (normal)",
                int(index[i]),
                unit="window",
            )
        labels = raw.astype(bool)
    channels = windows.shape[2]
    names = tuple(f"ch{i}" for i in range(channels))
    if "channel_names" in arrays:
        names = tuple(str(x) for x in np.asarray(arrays["channel_names"]).reshape(-1).tolist())
        if len(names) != channels:
            raise DataFileError(path, f"{len(names)} channel_names for {channels} channels")
    types: tuple[str, ...] | None = None
    if labels is not None:
        given = _npz_strings(arrays, "anomaly_types", n)
        types = (
            tuple(given[i] for i in index.tolist())
            if given is not None
            else tuple("labeled" if a else NO_ANOMALY for a in labels.tolist())
        )
    sources = _npz_strings(arrays, "source_ids", n)
    times = np.asarray(arrays.get("event_time_ms", np.empty(0)))
    has_times = times.shape == (n,) and np.issubdtype(times.dtype, np.integer)
    return WindowSet(
        values=windows.astype(np.float32),
        labels=labels,
        end_row=index,
        event_time_ms=times[index].astype(np.int64) if has_times else index * int(period_ms),
        source_ids=(
            tuple(sources[i] for i in index.tolist()) if sources else (source,) * len(index)
        ),
        channel_names=names,
        path=path,
        fmt="npz",
        policy_touched=0,
        anomaly_types=types,
        synthetic_time=not has_times,
        time_policy=time_policy,
    )
