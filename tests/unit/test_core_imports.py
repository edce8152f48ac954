"""The pure core loads only numpy, pydantic and orjson beside the standard library: no
settings machinery, logging stack, Kafka client or TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pydantic_settings", "structlog", "confluent_kafka", "tensorflow", "keras")
# The core's own dependencies, and pydantic's (its validators and type helpers).
ALLOWED = {
    "detector", "numpy", "orjson", "pydantic", "pydantic_core", "annotated_types",
    "typing_extensions", "typing_inspection",
}  # fmt: skip
# The core: messages, decisions, lifecycle, thresholds, drift, alerts, events, the bundle
# contract, and the backtest that drives it over a file.
CORE = [
    "detector.core", "detector.messages", "detector.lifecycle", "detector.threshold.bank",
    "detector.threshold.adaptive", "detector.threshold.drift", "detector.alerts", "detector.events",
    "detector.bundle", "detector.scores", "detector.backtest",
]  # fmt: skip

_LIST = """
import sys, {module}
loaded = {{m.split(".")[0] for m in sys.modules}}
print(",".join(sorted(m for m in loaded if m not in sys.stdlib_module_names)))
"""


def _third_party(module: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LIST.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # Interpreter and packaging internals (editable-install finders, Cython runtimes).
    return {
        m
        for m in done.stdout.strip().split(",")
        if m and not m.startswith("_") and m != "cython_runtime"
    }


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_only_numpy_pydantic_orjson(module: str) -> None:
    loaded = _third_party(module)
    assert not loaded & set(HEAVY), f"{module} loads {sorted(loaded & set(HEAVY))}"
    assert loaded <= ALLOWED, f"{module} loads {sorted(loaded - ALLOWED)}"


def test_the_service_does_load_them() -> None:
    """The check can fail: the service's module loads the Kafka client and structlog."""
    loaded = _third_party("detector.service")
    assert {"confluent_kafka", "structlog"} <= loaded
