"""The detector's admin client: waiting for the broker, topic metadata, creating topics.

The client is created on first use (no network in ``__init__``); an option librdkafka
rejects is a :class:`~detector.errors.ConfigError` then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from detector.errors import KafkaUnavailableError
from detector.kafka.config import new_client
from detector.kafka.errors import error_of
from detector.log import LIBRDKAFKA_LOG
from detector.settings import DetectorSettings

__all__ = ["STATE_SEGMENT_BYTES", "TopicAdmin"]

log = structlog.get_logger()

STATE_SEGMENT_BYTES = 16 << 20  # the state topic's segments (see TopicAdmin.ensure_topics)


class TopicAdmin:
    """Cluster and topic questions for one detector instance.

    Args:
        settings: the detector's settings (client options, topics).
        create_client: ``create_client(AdminClient, conf)`` makes the client
            (:func:`detector.kafka.config.new_client`; unit tests pass fakes).
    """

    def __init__(
        self, settings: DetectorSettings, create_client: Callable[..., Any] = new_client
    ) -> None:
        self._settings = settings
        self._create_client = create_client
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """The admin client, created on first use."""
        if self._admin is None:
            conf = {**self._settings.kafka.client_config(), "logger": LIBRDKAFKA_LOG}
            self._admin = self._create_client(AdminClient, conf)
        return self._admin

    def wait_for_broker(self, timeout_s: float) -> None:
        """Block until the cluster answers, or raise :class:`KafkaUnavailableError`."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                meta = self.admin.list_topics(timeout=min(2.0, timeout_s))
                if meta.brokers:
                    return
            except KafkaException as exc:
                last = exc
            time.sleep(0.2)
        raise KafkaUnavailableError(
            f"no Kafka broker answered at {self._settings.kafka.bootstrap_servers} within "
            f"{timeout_s:g} s" + (f": {last}" if last else "")
        )

    def partitions_of(self, topic: str) -> int:
        """Partition count of ``topic`` (0 if it does not exist)."""
        # Full metadata: asking for one missing topic by name can auto-create it.
        meta = self.admin.list_topics(timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return len(meta.partitions)

    def wait_for_partitions(
        self, topic: str, timeout_s: float, stop: threading.Event, what: str = "topic"
    ) -> int:
        """``topic``'s partition count, asked until the broker's metadata shows its partitions.

        A topic created a moment ago (:meth:`ensure_topics`) can be missing from the metadata
        for a while on a busy broker. The state topic's count taken as 0 sent the state of
        every input partition to state partition 0 for a whole run, while the next run wrote
        input partition 1's to state partition 1: a source's latest state then lay in two
        partitions, and which one a restore (reading them interleaved) took last was chance.

        Args:
            what: how the error names the topic (``"state topic"``).

        Raises:
            KafkaUnavailableError: no partitions within ``timeout_s`` (or a stop came first).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                n = self.partitions_of(topic)
                error = "it is not in the broker's metadata"
            except KafkaException as exc:
                n, error = 0, f"cannot read its metadata: {error_of(exc)}"
            if n > 0:
                return n
            if time.monotonic() >= deadline or stop.wait(0.2):
                raise KafkaUnavailableError(
                    f"the {what} {topic} has no partitions within {timeout_s:g} s: {error}"
                )

    def ensure_topics(self, timeout_s: float = 30.0) -> None:
        """Create the detector's topics if missing (setting ``topics.create_missing``)."""
        t = self._settings.topics
        topics = self.admin.list_topics(timeout=10).topics
        existing = set(topics)
        rf = t.replication_factor
        windows_meta = topics.get(t.windows)
        windows_parts = len(windows_meta.partitions) if windows_meta else t.partitions
        wanted = {
            t.windows: NewTopic(t.windows, num_partitions=t.partitions, replication_factor=rf),
            t.alerts: NewTopic(t.alerts, num_partitions=t.partitions, replication_factor=rf),
            t.events: NewTopic(t.events, num_partitions=1, replication_factor=rf),
            t.dead_letters: NewTopic(
                t.dead_letters, num_partitions=t.partitions, replication_factor=rf
            ),
            t.state: NewTopic(
                t.state,
                num_partitions=windows_parts,
                replication_factor=rf,
                # Every batch writes the state of each source it touched: segments of
                # 16 MiB (not 1 GiB) let compaction keep what a restore reads small.
                config={
                    "cleanup.policy": "compact",
                    "min.compaction.lag.ms": "60000",
                    "segment.bytes": str(STATE_SEGMENT_BYTES),
                },
            ),
        }
        missing = [topic for name, topic in wanted.items() if name not in existing]
        if not missing:
            return
        for name, future in self.admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                log.info("topic_created", topic=name)
            except KafkaException as exc:
                if error_of(exc).code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaUnavailableError(f"could not create topic {name}: {exc}") from exc

    def close(self) -> None:
        """Drop the client (an admin client has nothing to flush or leave)."""
        self._admin = None
