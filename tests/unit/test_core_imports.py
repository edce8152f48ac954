"""The pure core loads no settings machinery, logging stack, Kafka client or TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pydantic_settings", "structlog", "confluent_kafka", "tensorflow", "keras")


@pytest.mark.parametrize("module", ["detector.core", "detector.backtest", "detector.adaptive"])
def test_the_core_imports_nothing_it_should_not(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "", f"{module} loads {done.stdout.strip()}"
