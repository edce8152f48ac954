"""Kept for ``tests/integration/detector_harness.py`` until it imports ``kafka_local.clients``.

The helpers for tests against a real broker live once, in :mod:`kafka_local.clients`,
which the benchmarks use too; tests import them from there.
"""

from __future__ import annotations

from kafka_local.clients import consume_records, unique_name, wait_until

__all__ = ["consume_records", "unique_name", "wait_until"]
