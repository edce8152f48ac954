"""Peer detectors for the quality report, run the same way on the same split as the product.

Every peer is fitted on the same normal training windows and scores the same test windows, and
every threshold is calibrated the same causal way: the ``1 - target_far`` quantile of the peer's
scores on held-out normal *training* windows (the last ``calib_fraction`` of ``train_normal``,
never fitted on, never the test set). The report can then compare realised false-alarm rates.

Peers (:data:`PEERS` lists those whose library is installed; :data:`PEER_UNAVAILABLE` says why
the others are missing):

``tutorial_ae``
    The TensorFlow autoencoder tutorial's dense AE: Dense 32-16-8 relu encoder, 16-32-D sigmoid
    decoder, MAE loss, adam, 20 epochs, batch 512, shuffled. Inputs are the flattened windows
    (T*C), min-max scaled per channel with the minimum and maximum of the fit windows (for one
    channel this is the tutorial's global min/max; it does not scale on the test set, nor on
    abnormal rows as the tutorial does). Score: mean absolute reconstruction error per window.
``pyod_vae``, ``pyod_ae``
    PyOD's ``VAE`` and ``AutoEncoder`` on the flattened raw windows with PyOD's own
    standardisation (``preprocessing=True``), its default architectures, and only the training
    length set for this data size (:data:`PYOD_EPOCHS`, :data:`PYOD_BATCH_SIZE`), a fixed seed
    and no progress output. Score: PyOD's ``decision_function`` (reconstruction distance). PyOD's
    VAE samples its latent code when scoring too, so its scores are random: the torch seed is
    reset before each scoring call to make them reproducible.

    PyOD's deep models run on PyTorch. PyPI has no CPU-only PyTorch for Linux x86_64: ``torch``
    from PyPI brings its CUDA libraries (measured here for torch 2.15: 2.8 GB of wheels, 5.3 GB
    installed, about 75 s to download and install). That is heavy but finite, so the ``[eval]``
    extra installs it; without torch these two peers are listed in :data:`PEER_UNAVAILABLE`
    and nothing stands in for them silently.
``river_hst``
    River's ``HalfSpaceTrees`` inside ``QuantileFilter(q=1 - target_far,
    protect_anomaly_detector=True)``. Features: the flattened window, min-max scaled as for
    ``tutorial_ae`` and clipped to [0, 1] (HalfSpaceTrees assumes features in [0, 1]). It learns
    the fit windows in order (warm-up), then goes over the test stream in order, prequentially:
    each window is scored and classified first, then learnt (the filter does not let the trees
    learn windows it flags). ``flags`` are its own online decisions; ``static_flags`` compare the
    same scores with the threshold calibrated like the other peers' (on the held-out windows,
    scored by the warmed model, which never learns them).

Timing: ``fit_seconds`` covers scaling, training and scoring the calibration windows;
``score_seconds`` covers scoring the test windows (for ``river_hst``, the whole online pass,
learning included). Peer libraries are imported lazily: this module imports with numpy only.
Seeding: ``tutorial_ae`` (``keras.utils.set_random_seed``) and the PyOD peers (PyOD's own
seeding) reset the process-wide Python, NumPy and TensorFlow/PyTorch seeds to ``seed``.

``python -m bench.peers [ECG5000_CSV] [--target-far F]`` runs every available peer on ECG5000
with the TensorFlow tutorial's split and prints one line per peer.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "PEERS",
    "PEER_DESCRIPTIONS",
    "PEER_UNAVAILABLE",
    "PYOD_BATCH_SIZE",
    "PYOD_EPOCHS",
    "PeerResult",
    "calibrate_threshold",
    "run_peer",
    "split_calibration",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Training length of the PyOD deep peers: a few epochs, enough for their loss to level off on
#: a few thousand windows, cheap on two CPU cores.
PYOD_EPOCHS = 10
PYOD_BATCH_SIZE = 64

#: The tutorial's settings, kept as the tutorial has them.
TUTORIAL_EPOCHS = 20
TUTORIAL_BATCH_SIZE = 512

PEER_DESCRIPTIONS: dict[str, str] = {
    "tutorial_ae": "TensorFlow tutorial dense AE (32-16-8, MAE, 20 epochs)",
    "pyod_vae": f"PyOD VAE (defaults, {PYOD_EPOCHS} epochs)",
    "pyod_ae": f"PyOD AutoEncoder (defaults, {PYOD_EPOCHS} epochs)",
    "river_hst": "River HalfSpaceTrees + QuantileFilter (online)",
}

# The modules each peer needs, in the order they are checked (pyod's deep models import tqdm
# without declaring it).
_REQUIRES: dict[str, tuple[str, ...]] = {
    "tutorial_ae": ("tensorflow",),
    "pyod_vae": ("pyod", "torch", "tqdm"),
    "pyod_ae": ("pyod", "torch", "tqdm"),
    "river_hst": ("river",),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _availability() -> tuple[tuple[str, ...], dict[str, str]]:
    available: list[str] = []
    missing: dict[str, str] = {}
    for name, modules in _REQUIRES.items():
        absent = [m for m in modules if not _installed(m)]
        if absent:
            missing[name] = f"not installed: {', '.join(absent)} (pip install -e '.[eval]')" + (
                "; PyOD's VAE and AutoEncoder run on PyTorch" if "torch" in absent else ""
            )
        else:
            available.append(name)
    return tuple(available), missing


PEERS: tuple[str, ...]
PEER_UNAVAILABLE: dict[str, str]
PEERS, PEER_UNAVAILABLE = _availability()


@dataclass(frozen=True, eq=False)
class PeerResult:
    """One peer's run: per-test-window scores and flags, its threshold and its cost."""

    name: str
    scores: FloatArray  # (N_test,) higher = more anomalous
    threshold: float  # calibrated on held-out normal training windows at target_far
    flags: BoolArray  # (N_test,) scores > threshold; river_hst: its online QuantileFilter flags
    fit_seconds: float
    score_seconds: float
    #: scores > threshold for every peer (equal to ``flags`` except for river_hst); filled in
    #: from the scores and the threshold when not given, so it is never None once built.
    static_flags: BoolArray | None = None
    #: held-out normal training windows the threshold was calibrated on. A target below about
    #: 1 / calib_windows is a rate these windows cannot resolve.
    calib_windows: int = 0
    target_far: float = float("nan")

    def __post_init__(self) -> None:
        if self.static_flags is None:
            object.__setattr__(self, "static_flags", np.asarray(self.scores) > self.threshold)


def split_calibration(
    train_normal: npt.ArrayLike, calib_fraction: float = 0.2
) -> tuple[FloatArray, FloatArray]:
    """``(fit, calib)``: the last ``calib_fraction`` of the windows (time order) are held out."""
    windows = _as_windows(train_normal, "train_normal")
    if not 0.0 < calib_fraction < 1.0:
        raise ValueError(f"calib_fraction must be in (0, 1), got {calib_fraction}")
    n_calib = round(len(windows) * calib_fraction)
    n_fit = len(windows) - n_calib
    if n_calib < 1 or n_fit < 2:
        raise ValueError(
            f"{len(windows)} normal training windows cannot be split at calib_fraction="
            f"{calib_fraction}: need at least 2 to fit and 1 to calibrate"
        )
    return windows[:n_fit], windows[n_fit:]


def calibrate_threshold(calib_scores: npt.ArrayLike, target_far: float) -> float:
    """The ``1 - target_far`` quantile (linear interpolation) of held-out normal scores."""
    scores = np.asarray(calib_scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError("calibration needs a non-empty 1-D array of scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError("calibration scores must be finite")
    return float(np.quantile(scores, 1.0 - target_far))


def run_peer(
    name: str,
    train_normal: npt.ArrayLike,
    test: npt.ArrayLike,
    target_far: float,
    seed: int = 0,
    calib_fraction: float = 0.2,
) -> PeerResult:
    """Fit peer ``name`` on the normal training windows and score the test windows.

    ``train_normal``: (N, T, C) raw windows, normal only, in time order (a 2-D (N, T) array is
    taken as one channel); its last ``calib_fraction`` is held out to calibrate the threshold
    at ``target_far`` and never fitted on. ``test``: (M, T, C) raw windows in stream order.
    """
    if name not in _REQUIRES:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(_REQUIRES)}")
    if name not in PEERS:
        raise RuntimeError(f"peer {name!r} is unavailable: {PEER_UNAVAILABLE[name]}")
    if not 0.0 < target_far < 1.0:
        raise ValueError(f"target_far must be in (0, 1), got {target_far}")
    fit, calib = split_calibration(train_normal, calib_fraction)
    windows = _as_windows(test, "test")
    if windows.shape[1:] != fit.shape[1:]:
        raise ValueError(f"test windows are {windows.shape[1:]}, training windows {fit.shape[1:]}")
    runner = _RUNNERS[name]
    return runner(name, fit, calib, windows, target_far, seed)


# --- shared helpers -----------------------------------------------------------------------


def _as_windows(data: npt.ArrayLike, what: str) -> FloatArray:
    windows = np.asarray(data, dtype=np.float64)
    if windows.ndim == 2:
        windows = windows[:, :, np.newaxis]
    if windows.ndim != 3 or windows.shape[1] < 1 or windows.shape[2] < 1:
        raise ValueError(f"{what} must be (N, T, C) windows, got shape {windows.shape}")
    if len(windows) == 0:
        raise ValueError(f"{what} has no windows")
    if not np.all(np.isfinite(windows)):
        raise ValueError(f"{what} has NaN or infinite values")
    return windows


def _flatten(windows: FloatArray) -> FloatArray:
    return windows.reshape(len(windows), -1)


class _ChannelMinMax:
    """Min-max scaling per channel, fitted on the fit windows (all their time steps)."""

    def __init__(self, fit: FloatArray) -> None:
        self.low = fit.min(axis=(0, 1))
        span = fit.max(axis=(0, 1)) - self.low
        self.span = np.where(span > 0.0, span, 1.0)

    def flat(self, windows: FloatArray) -> FloatArray:
        return _flatten((windows - self.low) / self.span)


def _readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.setflags(write=False)
    return array


def _result(
    name: str,
    scores: FloatArray,
    threshold: float,
    fit_seconds: float,
    score_seconds: float,
    calib_windows: int,
    target_far: float,
    online_flags: BoolArray | None = None,
) -> PeerResult:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    static = scores > threshold
    flags = static if online_flags is None else np.asarray(online_flags, dtype=bool)
    return PeerResult(
        name=name,
        scores=_readonly(scores),
        threshold=threshold,
        flags=_readonly(flags),
        fit_seconds=fit_seconds,
        score_seconds=score_seconds,
        static_flags=_readonly(static.copy()) if online_flags is not None else flags,
        calib_windows=calib_windows,
        target_far=target_far,
    )


# --- tutorial_ae --------------------------------------------------------------------------


def _run_tutorial_ae(
    name: str, fit: FloatArray, calib: FloatArray, test: FloatArray, target_far: float, seed: int
) -> PeerResult:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    started = time.perf_counter()
    scaler = _ChannelMinMax(fit)
    x_fit = scaler.flat(fit).astype(np.float32)
    keras.utils.set_random_seed(seed)
    width = x_fit.shape[1]
    model = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(width, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="mae")
    model.fit(
        x_fit,
        x_fit,
        epochs=TUTORIAL_EPOCHS,
        batch_size=TUTORIAL_BATCH_SIZE,
        shuffle=True,
        verbose=0,
    )

    def score(windows: FloatArray) -> FloatArray:
        # Direct calls in batches: model.predict would trace a new function for every model.
        x = scaler.flat(windows).astype(np.float32)
        errors: list[FloatArray] = []
        for i in range(0, len(x), 4096):
            batch = x[i : i + 4096]
            recon = np.asarray(model(batch, training=False), dtype=np.float64)
            errors.append(np.mean(np.abs(recon - batch), axis=1))
        return np.concatenate(errors)

    threshold = calibrate_threshold(score(calib), target_far)
    fitted = time.perf_counter()
    scores = score(test)
    done = time.perf_counter()
    return _result(name, scores, threshold, fitted - started, done - fitted, len(calib), target_far)


# --- pyod_vae / pyod_ae -------------------------------------------------------------------


def _hide_triton() -> None:
    """Keep torch from importing triton, which would abort the process if TensorFlow is loaded.

    PyPI's torch is a CUDA build: its optimizer step imports triton (a GPU kernel compiler,
    useless without a GPU), and triton's bundled LLVM registers command-line options that
    TensorFlow's XLA LLVM already registered: "LLVM ERROR: inconsistency in registered
    CommandLine options" kills the process (torch 2.15, triton 3.9, TensorFlow 2.21). With
    ``sys.modules["triton"] = None`` torch finds no triton and carries on, as on a CPU build.
    A process that imported triton itself is left as it is.
    """
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]


@contextmanager
def _quiet_torch() -> Iterator[None]:
    """Silence torch's "CUDA initialization" warning (no GPU here; the peers run on the CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="CUDA initialization", category=UserWarning)
        yield


def _run_pyod(
    name: str, fit: FloatArray, calib: FloatArray, test: FloatArray, target_far: float, seed: int
) -> PeerResult:
    _hide_triton()
    import torch

    # pyod ships no type information: its classes are Any here.
    module, cls = {
        "pyod_vae": ("pyod.models.vae", "VAE"),
        "pyod_ae": ("pyod.models.auto_encoder", "AutoEncoder"),
    }[name]
    detector_class: Any = getattr(importlib.import_module(module), cls)

    started = time.perf_counter()
    detector = detector_class(
        epoch_num=PYOD_EPOCHS,
        batch_size=PYOD_BATCH_SIZE,
        random_state=seed,
        verbose=0,
        device="cpu",
    )
    with _quiet_torch():
        detector.fit(_flatten(fit))

    def score(windows: FloatArray) -> FloatArray:
        torch.manual_seed(seed)  # the VAE samples its latent code when scoring
        with _quiet_torch():
            return np.asarray(detector.decision_function(_flatten(windows)), dtype=np.float64)

    threshold = calibrate_threshold(score(calib), target_far)
    fitted = time.perf_counter()
    scores = score(test)
    done = time.perf_counter()
    return _result(name, scores, threshold, fitted - started, done - fitted, len(calib), target_far)


# --- river_hst ----------------------------------------------------------------------------


def _run_river_hst(
    name: str, fit: FloatArray, calib: FloatArray, test: FloatArray, target_far: float, seed: int
) -> PeerResult:
    anomaly: Any = importlib.import_module("river.anomaly")  # untyped: Any

    started = time.perf_counter()
    scaler = _ChannelMinMax(fit)

    def features(windows: FloatArray) -> list[dict[int, float]]:
        rows = np.clip(scaler.flat(windows), 0.0, 1.0)
        return [dict(enumerate(row)) for row in rows.tolist()]

    # HalfSpaceTrees scores against the mass profile of its previous window of window_size
    # items: the warm-up must fill at least one window, so the window shrinks on short fits.
    window_size = max(1, min(250, len(fit) // 2))
    model = anomaly.QuantileFilter(
        anomaly.HalfSpaceTrees(seed=seed, window_size=window_size),
        q=1.0 - target_far,
        protect_anomaly_detector=True,
    )
    for x in features(fit):
        model.learn_one(x)
    calib_scores = [model.score_one(x) for x in features(calib)]
    threshold = calibrate_threshold(calib_scores, target_far)
    fitted = time.perf_counter()

    scores = np.empty(len(test), dtype=np.float64)
    online = np.empty(len(test), dtype=bool)
    for i, x in enumerate(features(test)):
        scores[i] = model.score_one(x)
        online[i] = bool(model.classify(scores[i]))
        model.learn_one(x)
    done = time.perf_counter()
    return _result(
        name,
        scores,
        threshold,
        fitted - started,
        done - fitted,
        len(calib),
        target_far,
        online_flags=online,
    )


_Runner = Callable[[str, FloatArray, FloatArray, FloatArray, float, int], PeerResult]
_RUNNERS: dict[str, _Runner] = {
    "tutorial_ae": _run_tutorial_ae,
    "pyod_vae": _run_pyod,
    "pyod_ae": _run_pyod,
    "river_hst": _run_river_hst,
}


# --- python -m bench.peers: every peer on ECG5000 ----------------------------------------


def _auroc(labels: BoolArray, scores: FloatArray) -> float:
    """Mann-Whitney AUROC (ties count half); ``labels`` True = anomalous."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="Run every available peer on ECG5000 (the TensorFlow tutorial's split).",
    )
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "ecg5000" / "ecg5000.csv"
    parser.add_argument(
        "csv", nargs="?", type=Path, default=Path(os.environ.get("ECG5000_PATH", default))
    )
    parser.add_argument("--target-far", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peers", default=",".join(PEERS))
    args = parser.parse_args(argv)
    from sklearn.model_selection import train_test_split

    data = np.loadtxt(args.csv, delimiter=",", dtype=np.float64)
    train, test = train_test_split(data, test_size=0.2, random_state=21)
    train_normal = train[train[:, -1] == 1, :-1]
    abnormal = test[:, -1] == 0
    print(
        f"ECG5000 {args.csv}: {len(train_normal)} normal training rows "
        f"(last 20% held out to calibrate), {len(test)} test rows ({int(abnormal.sum())} "
        f"abnormal), target_far={args.target_far}"
    )
    for name in PEER_UNAVAILABLE:
        print(f"{name:12s} unavailable: {PEER_UNAVAILABLE[name]}")
    for name in filter(None, args.peers.split(",")):
        result = run_peer(name, train_normal, test[:, :-1], args.target_far, seed=args.seed)
        static = result.static_flags if result.static_flags is not None else result.flags
        line = (
            f"{name:12s} AUROC {_auroc(abnormal, result.scores):.3f}  "
            f"FAR {static[~abnormal].mean():.4f}  recall {static[abnormal].mean():.3f}  "
            f"fit {result.fit_seconds:.1f}s  score {result.score_seconds:.2f}s"
        )
        if result.flags is not result.static_flags:
            line += (
                f"  | online flags: FAR {result.flags[~abnormal].mean():.4f}  "
                f"recall {result.flags[abnormal].mean():.3f}"
            )
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
