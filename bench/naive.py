"""The naive baseline, written the way the seed tutorials write a Kafka + Keras detector.

One ``poll()`` per message, ``json.loads``, ``model.predict`` on a batch of one, a threshold
test, an alert produced when above it. Offsets are auto-committed (the tutorials' default).
It is what the detector's micro-batching and compiled scoring are measured against.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from pydantic import Field

from bench.broker import BenchError
from bench.results import Figures

__all__ = ["NaiveRun", "naive_baseline"]

WARMUP_MESSAGES = 3
_MODELS: dict[Path, Any] = {}


class NaiveRun(Figures):
    """Figures of the naive baseline (``runs_windows_per_s``: each repetition's rate)."""

    windows: int
    seconds: float
    windows_per_s: float | None
    ms_per_window: float | None
    alerts: int
    how: str
    runs_windows_per_s: list[float] = Field(default_factory=list)


def _load(path: Path) -> Any:
    """``keras.models.load_model`` once per run (loading is not what is measured)."""
    if path not in _MODELS:
        import keras

        _MODELS[path] = keras.models.load_model(path)
    return _MODELS[path]


def naive_baseline(
    bootstrap: str,
    topic: str,
    alerts_topic: str,
    group: str,
    bundle: Path,
    manifest: Any,
    count: int,
    timeout_s: float,
) -> NaiveRun:
    """Handle ``count`` JSON windows one at a time; windows per second.

    The first :data:`WARMUP_MESSAGES` messages (Keras builds its predict function on the
    first call) are not timed.

    Raises:
        BenchError: fewer than ``count`` messages were handled within ``timeout_s``.
    """
    model = _load(bundle / "model.keras")
    offset = np.asarray(manifest.normalisation.offset, dtype=np.float32)
    scale = np.asarray(manifest.normalisation.scale, dtype=np.float32)
    shape = (1, manifest.window_size, manifest.n_channels)
    threshold = float(manifest.threshold.value)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([topic])
    handled = alerts = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while handled < count + WARMUP_MESSAGES:
            if time.monotonic() > deadline:
                raise BenchError(f"naive baseline handled {handled} messages in {timeout_s:.0f} s")
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            data = json.loads(msg.value() or b"{}")
            x = (np.array(data["values"], dtype=np.float32).reshape(shape) - offset) / scale
            reconstruction = model.predict(x, verbose=0)
            loss = float(np.mean(np.square(reconstruction - x)))
            if loss > threshold:
                alert = {"source_id": data["source_id"], "seq": data["seq"], "loss": loss}
                producer.produce(alerts_topic, json.dumps(alert).encode())
                alerts += 1
            producer.poll(0)
            handled += 1
            if handled == WARMUP_MESSAGES:
                started = time.perf_counter()
        assert started is not None
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
        producer.flush(10)
    return NaiveRun(
        windows=count,
        seconds=seconds,
        windows_per_s=count / seconds,
        ms_per_window=seconds / count * 1000,
        alerts=alerts,
        how="poll() one message, json.loads, keras Model.predict on a batch of 1, "
        "produce an alert above the bundle threshold; auto-commit",
    )
