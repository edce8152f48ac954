"""bench.peers: the peer detectors of the quality report, on small synthetic windows.

Normal windows are aligned two-channel sine beats with amplitude jitter and noise; anomalies
add a burst over a few consecutive time steps. Each peer must rank the bursts above fresh
normal windows and keep its realised false-alarm rate on those fresh normal windows within a
loose band of the target. The peers that train a model are marked slow and skipped when their
library is not installed (the ``[eval]`` extra).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench import peers

REPO = Path(__file__).resolve().parents[2]
T, C = 32, 2
TARGET_FAR = 0.05
ALL_PEERS = ("tutorial_ae", "pyod_vae", "pyod_ae", "river_hst")
LIBRARIES = {
    "tutorial_ae": ("tensorflow",),
    "pyod_vae": ("pyod", "torch"),
    "pyod_ae": ("pyod", "torch"),
    "river_hst": ("river",),
}


def _normal(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, T)
    phase = np.array([0.0, np.pi / 3])
    amplitude = 1.0 + 0.05 * rng.standard_normal((n, 1, 1))
    jitter = 0.05 * rng.standard_normal((n, 1, 1))
    beats = amplitude * np.sin(t[None, :, None] + phase[None, None, :] + jitter)
    return np.asarray(beats + 0.05 * rng.standard_normal((n, T, C)))


def _with_burst(rng: np.random.Generator, windows: np.ndarray) -> np.ndarray:
    out = windows.copy()
    for window in out:
        start = int(rng.integers(0, T - 8))
        window[start : start + 8, :] += 1.5 * rng.choice([-1.0, 1.0])
    return out


@dataclass(frozen=True)
class Synthetic:
    train_normal: np.ndarray
    test: np.ndarray
    anomalous: np.ndarray


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    rng = np.random.default_rng(7)
    train = _normal(rng, 500)
    fresh = _normal(rng, 400)
    bursts = _with_burst(rng, _normal(rng, 40))
    test = np.concatenate([fresh, bursts])
    anomalous = np.concatenate([np.zeros(len(fresh), bool), np.ones(len(bursts), bool)])
    order = rng.permutation(len(test))  # anomalies scattered through the stream
    return Synthetic(train, test[order], anomalous[order])


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


# --- no library needed --------------------------------------------------------------------


def test_every_peer_is_either_available_or_explained() -> None:
    assert set(peers.PEERS) | set(peers.PEER_UNAVAILABLE) == set(ALL_PEERS)
    assert not set(peers.PEERS) & set(peers.PEER_UNAVAILABLE)
    assert all(reason for reason in peers.PEER_UNAVAILABLE.values())
    assert set(peers.PEER_DESCRIPTIONS) == set(ALL_PEERS)


def test_imports_without_the_eval_extra() -> None:
    """With the peer libraries hidden, the module imports and explains every missing peer."""
    code = """
import importlib.abc, sys
HIDDEN = {"tensorflow", "keras", "pyod", "torch", "tqdm", "river"}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Hide())
from bench import peers
assert peers.PEERS == (), peers.PEERS
assert "torch" in peers.PEER_UNAVAILABLE["pyod_vae"], peers.PEER_UNAVAILABLE
assert "river" in peers.PEER_UNAVAILABLE["river_hst"]
try:
    peers.run_peer("river_hst", [[[0.0]]] * 4, [[[0.0]]], 0.05)
except RuntimeError as err:
    assert "unavailable" in str(err)
else:
    raise AssertionError("ran an unavailable peer")
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_calibration_split_is_the_last_fraction_in_time_order() -> None:
    windows = np.arange(10, dtype=float).reshape(10, 1, 1)
    fit, calib = peers.split_calibration(windows, 0.2)
    assert fit[:, 0, 0].tolist() == list(range(8))
    assert calib[:, 0, 0].tolist() == [8.0, 9.0]
    fit2d, calib2d = peers.split_calibration(np.zeros((5, 4)), 0.2)  # (N, T): one channel
    assert fit2d.shape == (4, 4, 1) and calib2d.shape == (1, 4, 1)


def test_a_result_built_by_hand_gets_its_static_flags() -> None:
    result = peers.PeerResult("x", np.array([0.1, 0.9]), 0.5, np.array([False, True]), 1.0, 0.1)
    assert result.static_flags is not None
    assert result.static_flags.tolist() == [False, True]


def test_threshold_is_the_upper_quantile_of_the_held_out_scores() -> None:
    scores = np.arange(101, dtype=float)
    assert peers.calibrate_threshold(scores, 0.05) == pytest.approx(95.0)
    assert peers.calibrate_threshold(scores, 0.01) == pytest.approx(99.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: peers.split_calibration(np.zeros((2, 4, 1)), 0.2), "cannot be split"),
        (lambda: peers.split_calibration(np.zeros((10, 4, 1)), 1.0), "calib_fraction"),
        (lambda: peers.split_calibration(np.zeros(10), 0.2), r"\(N, T, C\)"),
        (lambda: peers.split_calibration(np.full((10, 4, 1), np.nan), 0.2), "NaN"),
        (lambda: peers.calibrate_threshold([], 0.05), "non-empty"),
        (
            lambda: peers.run_peer("iforest", np.zeros((10, 4, 1)), np.zeros((2, 4, 1)), 0.05),
            "unknown",
        ),
    ],
)
def test_bad_input_is_refused_with_the_reason(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


# --- the peers themselves -----------------------------------------------------------------


def _require(name: str) -> None:
    for module in LIBRARIES[name]:
        pytest.importorskip(module, reason=f"{name} needs {module} (pip install -e '.[eval]')")
    if name not in peers.PEERS:
        pytest.skip(f"{name}: {peers.PEER_UNAVAILABLE[name]}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_PEERS)
def test_peer_ranks_bursts_above_normal_and_keeps_its_false_alarm_rate(
    name: str, synthetic: Synthetic
) -> None:
    _require(name)
    result = peers.run_peer(name, synthetic.train_normal, synthetic.test, TARGET_FAR, seed=0)

    n = len(synthetic.test)
    assert result.name == name
    assert result.scores.shape == (n,) and np.all(np.isfinite(result.scores))
    assert result.flags.shape == (n,) and result.flags.dtype == bool
    assert result.static_flags is not None
    np.testing.assert_array_equal(result.static_flags, result.scores > result.threshold)
    if name != "river_hst":
        np.testing.assert_array_equal(result.flags, result.static_flags)
    assert result.calib_windows == 100 and result.target_far == TARGET_FAR
    assert result.fit_seconds > 0 and result.score_seconds > 0

    normal = ~synthetic.anomalous
    assert _auroc(synthetic.anomalous, result.scores) > 0.8
    realised = float(result.static_flags[normal].mean())
    assert realised <= 4 * TARGET_FAR, f"{name}: realised FAR {realised:.3f}"
    assert result.static_flags[synthetic.anomalous].mean() > 0.5  # bursts are obvious here
    if name == "river_hst":  # its own online decisions keep a comparable promise
        assert float(result.flags[normal].mean()) <= 4 * TARGET_FAR


@pytest.mark.slow
def test_river_hst_is_reproducible_and_its_online_flags_are_its_own(synthetic: Synthetic) -> None:
    _require("river_hst")
    first = peers.run_peer("river_hst", synthetic.train_normal, synthetic.test, TARGET_FAR)
    again = peers.run_peer("river_hst", synthetic.train_normal, synthetic.test, TARGET_FAR)
    np.testing.assert_array_equal(first.scores, again.scores)
    np.testing.assert_array_equal(first.flags, again.flags)
    # The test windows never move the static threshold: it depends on the training windows only.
    shorter = peers.run_peer("river_hst", synthetic.train_normal, synthetic.test[:50], TARGET_FAR)
    assert shorter.threshold == first.threshold
    np.testing.assert_array_equal(shorter.scores, first.scores[:50])
