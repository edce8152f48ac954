"""The detector's counters are exported at 0 for every known label value from the start.

A counter series that appears only at its first increment hides that increment from
Prometheus' rate() and increase() (there is no earlier sample): a single burst of dead letters
would never fire DetectorDeadLettersRising (ops/prometheus/rules.yml), nor show on the
dashboard. Seen on a real run by ops/render_dashboard.py.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from prometheus_client import generate_latest

from detector.alerts import AlertState
from detector.events import Event
from detector.metrics import DEAD_LETTER_REASONS, DetectorMetrics

DETECTOR = Path(__file__).resolve().parents[2] / "detector"


def test_counters_are_exported_at_zero_before_their_first_increment() -> None:
    body = generate_latest(DetectorMetrics().registry).decode()
    for reason in DEAD_LETTER_REASONS:
        assert f'detector_dead_letters_total{{reason="{reason}"}} 0.0' in body
    for state in AlertState:
        assert f'detector_alerts_total{{state="{state.value}"}} 0.0' in body
    for outcome in ("scored", "dead_letter"):
        assert f'detector_windows_total{{outcome="{outcome}"}} 0.0' in body
    event_types = [
        typing.get_args(cls.model_fields["type"].annotation)[0]
        for cls in typing.get_args(typing.get_args(Event)[0])
    ]
    assert len(event_types) == 4
    for kind in event_types:
        assert f'detector_events_total{{type="{kind}"}} 0.0' in body


def test_every_dead_letter_reason_in_the_code_is_declared() -> None:
    raised: set[str] = set()
    for path in DETECTOR.glob("*.py"):
        text = path.read_text()
        raised |= set(re.findall(r'DecodeError\(\s*"([a-z_]+)"', text))
        raised |= set(re.findall(r'DeadLetter\(\s*[\w\[\]]+,\s*"([a-z_]+)"', text))
    # the patterns still find the reasons raised, and those the core adds
    assert {"undecodable", "bad_shape", "non_finite", "internal_error"} <= raised
    assert raised <= set(DEAD_LETTER_REASONS)
