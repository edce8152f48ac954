"""No module in ``detector/`` runs past ~400 lines without its docstring saying why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import detector

LIMIT = 420  # "~400"
ROOT = Path(detector.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))


def test_the_walk_finds_the_package() -> None:
    assert len(MODULES) > 20 and ROOT / "core.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_long_module_says_why_in_its_docstring(path: Path) -> None:
    text = path.read_text()
    lines = text.count("\n")
    if lines <= LIMIT:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "Why one module" in doc, (
        f"{path.name} has {lines} lines: split it by role, or say in its docstring "
        "'Why one module of ~N lines: ...'"
    )
