"""The simulator's Python API: seeded streams of labelled windows with known truth.

Windows come in rounds: one window per source, sources in order (``ecg-0``, ``ecg-1``, ...),
so ``seq`` is the round number. Generation is vectorised in chunks of rounds; chunk ``j``
draws from its own generator seeded by ``(seed, j)``, so the stream depends only on the
parameters and the seed, and a shorter stream is a prefix of a longer one.

Examples:
    >>> batch = make_arrays("sensor", 6, seed=0, n_sources=2, window=16, channels=2)
    >>> batch.values.shape, list(batch.source_ids[:3]), batch.seqs.tolist()
    ((6, 16, 2), ['sensor-0', 'sensor-1', 'sensor-0'], [0, 0, 1, 1, 2, 2])
    >>> w = next(make_stream("ecg", 1, seed=0, anomaly_rate=1.0, anomaly_types=["st_elevation"]))
    >>> (w.source_id, w.seq, w.values.shape, w.label, w.anomaly_type, w.regime)
    ('ecg-0', 0, (140, 1), 1, 'st_elevation', 'baseline')
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypedDict, Unpack

import numpy as np

from producer.anomalies import StreamKind, choose_anomalies, validate_anomaly_types
from producer.ecg import ECG_WINDOW, EcgGenerator
from producer.errors import ProducerInputError
from producer.generator import WindowGenerator
from producer.scenarios import DriftScenario
from producer.sensors import SensorGenerator
from producer.windows import NO_ANOMALY, LabeledWindow, WindowBatch, concat_batches

__all__ = [
    "DEFAULT_SENSOR_WINDOW",
    "SimOptions",
    "default_window",
    "make_arrays",
    "make_batches",
    "make_stream",
]

DEFAULT_SENSOR_WINDOW = 64
CHUNK_WINDOWS = 1024


def default_window(kind: StreamKind) -> int:
    """Samples per window when none is given: 140 for ECG, 64 for sensors."""
    return ECG_WINDOW if kind == "ecg" else DEFAULT_SENSOR_WINDOW


def _check(
    kind: StreamKind, n: int | None, seed: int, n_sources: int, window: int, channels: int
) -> None:
    if kind not in ("ecg", "sensor"):
        raise ProducerInputError(f"unknown stream kind {kind!r}; choose ecg or sensor")
    if n is not None and n < 0:
        raise ProducerInputError(f"window count must be >= 0, got {n}")
    if seed < 0:
        raise ProducerInputError(f"seed must be >= 0, got {seed}")
    if n_sources < 1:
        raise ProducerInputError(f"need at least one source, got {n_sources}")
    minimum = 16 if kind == "ecg" else 4
    if window < minimum:
        raise ProducerInputError(f"a {kind} window needs at least {minimum} samples, got {window}")
    if channels < 1:
        raise ProducerInputError(f"need at least one channel, got {channels}")
    if kind == "ecg" and channels != 1:
        raise ProducerInputError("ECG windows have one channel; --channels is for sensors")


class SimOptions(TypedDict, total=False):
    """The keyword options of :func:`make_batches`, :func:`make_stream` and :func:`make_arrays`.

    Every key is optional; :func:`make_batches` documents each one and its default.
    """

    seed: int
    anomaly_rate: float
    anomaly_types: Sequence[str] | None
    drift: DriftScenario | None
    n_sources: int
    window: int | None
    channels: int | None
    source_prefix: str | None
    profile: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """A checked stream request, with every default filled in."""

    kind: StreamKind
    n: int | None
    seed: int
    anomaly_rate: float
    types: tuple[str, ...]
    drift: DriftScenario
    ids: list[str]
    window: int
    channels: int
    profile: int


def _plan(kind: StreamKind, n: int | None, options: SimOptions, caller: str) -> _Plan:
    """Check ``options`` (as the keyword arguments of ``caller``) and fill in the defaults."""
    unknown = options.keys() - SimOptions.__optional_keys__
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {min(unknown)!r}")
    seed = options.get("seed", 0)
    anomaly_rate = options.get("anomaly_rate", 0.0)
    n_sources = options.get("n_sources", 1)
    window = options.get("window")
    channels = options.get("channels")
    profile = options.get("profile", 0)
    win = default_window(kind) if window is None else window
    chans = (1 if kind == "ecg" else 4) if channels is None else channels
    _check(kind, n, seed, n_sources, win, chans)
    if profile < 0:
        raise ProducerInputError(f"profile must be >= 0, got {profile}")
    types = validate_anomaly_types(kind, options.get("anomaly_types"))
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ProducerInputError(f"anomaly rate must be within [0, 1], got {anomaly_rate}")
    prefix = options.get("source_prefix") or kind
    return _Plan(
        kind=kind,
        n=n,
        seed=seed,
        anomaly_rate=anomaly_rate,
        types=types,
        drift=options.get("drift") or DriftScenario(),
        ids=[f"{prefix}-{i}" for i in range(n_sources)],
        window=win,
        channels=chans,
        profile=profile,
    )


def make_batches(
    kind: StreamKind = "ecg", n: int | None = None, **options: Unpack[SimOptions]
) -> Iterator[WindowBatch]:
    """A stream of simulated windows, as batches of consecutive windows.

    Args:
        kind: ``"ecg"`` (one channel, one beat per window) or ``"sensor"``.
        n: total windows, or None for an endless stream.
        **options: the keywords of :class:`SimOptions`, all optional:

            * ``seed``: the stream's seed (>= 0); 0 by default.
            * ``anomaly_rate``: probability that a window gets an injected anomaly; 0.0 by
              default.
            * ``anomaly_types``: types to inject (uniformly); all of ``kind``'s types when None
              (the default).
            * ``drift``: the drift scenario; none when None (the default).
            * ``n_sources``: sources, interleaved round by round; 1 by default.
            * ``window``: samples per window (140 for ECG, 64 for sensors when None).
            * ``channels``: sensor channels (4 when None); must be 1 (or None) for ECG.
            * ``source_prefix``: source ids are ``f"{prefix}-{i}"``; ``kind`` when None.
            * ``profile``: the sensor machine type (channel structure shared by all sources),
              independent of ``seed``: train and stream with the same profile; 0 by default.

    Raises:
        ProducerInputError: an impossible parameter or an unknown anomaly type.
        TypeError: an option that :class:`SimOptions` does not have.
    """
    return _batches(_plan(kind, n, options, "make_batches"))


def _batches(plan: _Plan) -> Iterator[WindowBatch]:
    kind, seed, ids, window, channels = plan.kind, plan.seed, plan.ids, plan.window, plan.channels
    drift = plan.drift
    n_sources = len(ids)
    const_rng = np.random.default_rng([seed, 0])
    gen: WindowGenerator
    if kind == "ecg":
        gen = EcgGenerator(n_sources, window, const_rng)
    else:
        gen = SensorGenerator(n_sources, window, channels, const_rng, plan.profile)
    rounds = max(1, CHUNK_WINDOWS // n_sources)
    remaining = plan.n
    for chunk in itertools.count():
        if remaining is not None and remaining <= 0:
            return
        rng = np.random.default_rng([seed, 1, chunk])
        # Drawn in stream order (round-major), then laid out per source as (S, R).
        flat_types = choose_anomalies(rng, rounds * n_sources, plan.anomaly_rate, plan.types)
        per_source = flat_types.reshape(rounds, n_sources).T
        seq_rows = chunk * rounds + np.arange(rounds, dtype=np.int64)
        seq = np.broadcast_to(seq_rows[None, :], (n_sources, rounds))
        values = gen.generate(rng, per_source, drift.effect(seq))
        values = np.swapaxes(values, 0, 1).reshape(rounds * n_sources, window, channels)
        stream_seq = np.repeat(seq_rows, n_sources)
        batch = WindowBatch(
            source_ids=ids * rounds,
            seqs=stream_seq,
            values=values,
            labels=(flat_types != NO_ANOMALY).astype(np.int8),
            anomaly_types=flat_types.tolist(),
            regimes=drift.regimes(stream_seq),
            channel_names=gen.channel_names,
        )
        if remaining is not None:
            if len(batch) > remaining:
                batch = batch.head(remaining)
            remaining -= len(batch)
        yield batch


def make_stream(
    kind: StreamKind = "ecg", n: int | None = None, **options: Unpack[SimOptions]
) -> Iterator[LabeledWindow]:
    """The same stream as :func:`make_batches`, one :class:`LabeledWindow` at a time."""
    batches = _batches(_plan(kind, n, options, "make_stream"))
    return (w for batch in batches for w in batch)


def make_arrays(
    kind: StreamKind = "ecg", n: int = 1000, **options: Unpack[SimOptions]
) -> WindowBatch:
    """The first ``n`` windows of the stream as one batch (``values`` is (n, T, C))."""
    plan = _plan(kind, n, options, "make_arrays")
    batches = list(_batches(plan))
    if not batches:
        return next(_batches(replace(plan, n=1))).head(0)
    return concat_batches(batches)
