"""Classifying confluent-kafka's errors, for every module of the detector's Kafka edge.

The error classes themselves live in :mod:`detector.errors`; this module only reads what
librdkafka put in a :class:`~confluent_kafka.KafkaException` and says what kind it is.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

__all__ = ["error_of", "is_fenced"]

_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def error_of(exc: KafkaException) -> KafkaError:
    """The KafkaError inside a KafkaException (librdkafka always puts one there)."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err
    return KafkaError(KafkaError._FAIL, str(err))


def is_fenced(err: KafkaError) -> bool:
    """Whether another producer took this transactional id over: the one fatal error that
    must stop the detector (a new producer would fence the other instance in turn)."""
    return err.code() in _FENCED_CODES or "fenced" in err.str().lower()
