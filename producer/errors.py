"""Errors the producer raises on purpose.

The tree (under the project's :class:`~detector.errors.DetectorError`)::

    DetectorError
    ├── KafkaUnavailableError      (detector.errors) the broker could not be reached in time
    └── ProducerError              anything the producer CLI reports as ``producer: error: ...``
        ├── ProducerInputError     impossible parameters, unreadable or malformed replay files
        └── DeliveryError          a window was not delivered (a failed delivery report, a
                                   flush that timed out, a record the client refused)

Library errors (confluent_kafka, pydantic, numpy parsing, OSError) are translated at the edge
with ``raise ... from exc``; ``producer.__main__`` prints the message and exits with status 2.
"""

from __future__ import annotations

from detector.errors import DetectorError

__all__ = ["DeliveryError", "ProducerError", "ProducerInputError"]


class ProducerError(DetectorError):
    """Base class of the producer's own errors."""


class ProducerInputError(ProducerError):
    """A parameter that cannot work, or a replay file that cannot be read."""


class DeliveryError(ProducerError):
    """At least one window was not delivered to Kafka."""
