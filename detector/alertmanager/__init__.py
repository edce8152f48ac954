"""``detector alerts --to-alertmanager``: alert episodes from Kafka into Alertmanager.

Modules: :mod:`~detector.alertmanager.mapping` (an episode as an Alertmanager alert, and the
settings of that mapping), :mod:`~detector.alertmanager.client` (the v2 API),
:mod:`~detector.alertmanager.bridge` (the consume-post-commit loop),
:mod:`~detector.alertmanager.metrics` (the bridge's own metrics) and
:mod:`~detector.alertmanager.cli` (its command-line options).
"""
