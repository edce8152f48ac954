"""Simulator and replayer: streams of labelled windows with known truth, to Kafka or a file.

The pure API (no Kafka): :func:`producer.simulate.make_stream`, ``make_batches``,
``make_arrays``, drift scenarios in :mod:`producer.scenarios`, replay of files (read by
:mod:`detector.datafile`, the reader training shares) in :mod:`producer.replay`. Kafka lives
in :mod:`producer.kafka_io` (``WindowProducer``).
"""

from __future__ import annotations

from producer.errors import DeliveryError, ProducerError, ProducerInputError
from producer.scenarios import DriftScenario
from producer.simulate import make_arrays, make_batches, make_stream
from producer.windows import LabeledWindow, WindowBatch

__all__ = [
    "DeliveryError",
    "DriftScenario",
    "LabeledWindow",
    "ProducerError",
    "ProducerInputError",
    "WindowBatch",
    "make_arrays",
    "make_batches",
    "make_stream",
]
