"""The detector's Kafka edge: :class:`~detector.kafka.io.KafkaIO` composes the roles.

Modules: :mod:`~detector.kafka.io` (the edge the service drives, and its protocols),
:mod:`~detector.kafka.consumer` (subscription, rebalance, micro-batches, offsets),
:mod:`~detector.kafka.publisher` (the transactional producer), :mod:`~detector.kafka.admin`
(broker and topics), :mod:`~detector.kafka.state` (reading the state topic to its end),
:mod:`~detector.kafka.errors` (classifying librdkafka's errors) and
:mod:`~detector.kafka.config` (client settings shared by every CLI).
"""
