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

import numpy as np

from producer.anomalies import StreamKind, choose_anomalies, validate_anomaly_types
from producer.drift import DriftScenario
from producer.ecg import ECG_WINDOW, EcgGenerator
from producer.errors import ProducerInputError
from producer.sensors import SensorGenerator
from producer.windows import NO_ANOMALY, LabeledWindow, WindowBatch, concat_batches

__all__ = ["DEFAULT_SENSOR_WINDOW", "default_window", "make_arrays", "make_batches", "make_stream"]

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


def make_batches(
    kind: StreamKind = "ecg",
    n: int | None = None,
    *,
    seed: int = 0,
    anomaly_rate: float = 0.0,
    anomaly_types: Sequence[str] | None = None,
    drift: DriftScenario | None = None,
    n_sources: int = 1,
    window: int | None = None,
    channels: int | None = None,
    source_prefix: str | None = None,
    profile: int = 0,
) -> Iterator[WindowBatch]:
    """A stream of simulated windows, as batches of consecutive windows.

    Args:
        kind: ``"ecg"`` (one channel, one beat per window) or ``"sensor"``.
        n: total windows, or None for an endless stream.
        seed: the stream's seed (>= 0).
        anomaly_rate: probability that a window gets an injected anomaly.
        anomaly_types: types to inject (uniformly); all of ``kind``'s types when None.
        drift: the drift scenario; none when None.
        n_sources: sources, interleaved round by round.
        window: samples per window (140 for ECG, 64 for sensors when None).
        channels: sensor channels (4 when None); must be 1 (or None) for ECG.
        source_prefix: source ids are ``f"{prefix}-{i}"``; ``kind`` when None.
        profile: the sensor machine type (channel structure shared by all sources),
            independent of ``seed``: train and stream with the same profile.

    Raises:
        ProducerInputError: an impossible parameter or an unknown anomaly type.
    """
    win = default_window(kind) if window is None else window
    chans = (1 if kind == "ecg" else 4) if channels is None else channels
    _check(kind, n, seed, n_sources, win, chans)
    if profile < 0:
        raise ProducerInputError(f"profile must be >= 0, got {profile}")
    types = validate_anomaly_types(kind, anomaly_types)
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ProducerInputError(f"anomaly rate must be within [0, 1], got {anomaly_rate}")
    scenario = drift or DriftScenario()
    prefix = source_prefix or kind
    ids = [f"{prefix}-{i}" for i in range(n_sources)]
    return _batches(kind, n, seed, anomaly_rate, types, scenario, ids, win, chans, profile)


def _batches(
    kind: StreamKind,
    n: int | None,
    seed: int,
    anomaly_rate: float,
    types: tuple[str, ...],
    drift: DriftScenario,
    ids: list[str],
    window: int,
    channels: int,
    profile: int,
) -> Iterator[WindowBatch]:
    n_sources = len(ids)
    const_rng = np.random.default_rng([seed, 0])
    gen: EcgGenerator | SensorGenerator
    if kind == "ecg":
        gen = EcgGenerator(n_sources, window, const_rng)
    else:
        gen = SensorGenerator(n_sources, window, channels, const_rng, profile)
    rounds = max(1, CHUNK_WINDOWS // n_sources)
    remaining = n
    for chunk in itertools.count():
        if remaining is not None and remaining <= 0:
            return
        rng = np.random.default_rng([seed, 1, chunk])
        # Drawn in stream order (round-major), then laid out per source as (S, R).
        flat_types = choose_anomalies(rng, rounds * n_sources, anomaly_rate, types)
        per_source = flat_types.reshape(rounds, n_sources).T
        seq_rows = chunk * rounds + np.arange(rounds, dtype=np.int64)
        seq = np.broadcast_to(seq_rows[None, :], (n_sources, rounds))
        effect = drift.effect(seq)
        values = gen.generate(rng, per_source, effect.amplitude, effect.baseline, effect.noise)
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
    kind: StreamKind = "ecg",
    n: int | None = None,
    *,
    seed: int = 0,
    anomaly_rate: float = 0.0,
    anomaly_types: Sequence[str] | None = None,
    drift: DriftScenario | None = None,
    n_sources: int = 1,
    window: int | None = None,
    channels: int | None = None,
    source_prefix: str | None = None,
    profile: int = 0,
) -> Iterator[LabeledWindow]:
    """The same stream as :func:`make_batches`, one :class:`LabeledWindow` at a time."""
    batches = make_batches(
        kind,
        n,
        seed=seed,
        anomaly_rate=anomaly_rate,
        anomaly_types=anomaly_types,
        drift=drift,
        n_sources=n_sources,
        window=window,
        channels=channels,
        source_prefix=source_prefix,
        profile=profile,
    )
    return (w for batch in batches for w in batch)


def make_arrays(
    kind: StreamKind = "ecg",
    n: int = 1000,
    *,
    seed: int = 0,
    anomaly_rate: float = 0.0,
    anomaly_types: Sequence[str] | None = None,
    drift: DriftScenario | None = None,
    n_sources: int = 1,
    window: int | None = None,
    channels: int | None = None,
    source_prefix: str | None = None,
    profile: int = 0,
) -> WindowBatch:
    """The first ``n`` windows of the stream as one batch (``values`` is (n, T, C))."""
    batches = list(
        make_batches(
            kind,
            n,
            seed=seed,
            anomaly_rate=anomaly_rate,
            anomaly_types=anomaly_types,
            drift=drift,
            n_sources=n_sources,
            window=window,
            channels=channels,
            source_prefix=source_prefix,
            profile=profile,
        )
    )
    if not batches:
        probe = make_batches(
            kind, 1, seed=seed, n_sources=n_sources, window=window, channels=channels
        )
        return next(probe).head(0)
    return concat_batches(batches)
