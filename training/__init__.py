"""Offline training: data loading, a VAE and the tutorial's AE baseline, calibration, bundles.

``python -m training fit --data ecg5000.csv --out models/ecg`` trains on normal windows,
calibrates the threshold for a target false-alarm rate on out-of-fold scores, evaluates the
model and the baseline side by side, and writes a bundle that :mod:`detector.model` loads.

Modules: :mod:`~training.data` (files read by :mod:`detector.datafile`, and the split),
:mod:`~training.normalise`, :mod:`~training.models`, :mod:`~training.train` (fitting and
cross-fitting), :mod:`~training.calibrate`, :mod:`~training.evaluate`, :mod:`~training.plots`,
:mod:`~training.report`, :mod:`~training.export`, :mod:`~training.fit` (the pipeline),
:mod:`~training.download`, :mod:`~training.settings`. Importing the package imports no
TensorFlow.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
