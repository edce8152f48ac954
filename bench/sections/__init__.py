"""The benchmark sections, one module each (see :mod:`bench.section` and :mod:`bench.registry`)."""

from __future__ import annotations

__all__: list[str] = []
