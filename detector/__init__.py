"""Streaming anomaly detector: scores Kafka windows with a VAE and publishes alerts."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
