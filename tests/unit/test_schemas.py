"""The published JSON Schemas in schemas/ match the message models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from detector.alerts import Alert
from detector.events import Event
from detector.messages import Window

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("window", Window.model_json_schema()),
        ("alert", Alert.model_json_schema()),
        ("event", TypeAdapter(Event).json_schema()),
    ],
)
def test_published_schema_is_current(name: str, schema: dict[str, object]) -> None:
    published = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    assert published == schema, (
        f"schemas/{name}.schema.json is stale: regenerate with "
        f"`detector schema {name} > schemas/{name}.schema.json`"
    )
