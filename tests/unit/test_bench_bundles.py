"""bench.bundles: the training cache is keyed by everything that changes a bundle."""

from __future__ import annotations

from pathlib import Path

from bench.bundles import cache_key


def test_cache_key_changes_with_arguments_and_file_contents(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("1,2,3\n")
    key = cache_key(["fit", "n=100"], [data])
    assert key == cache_key(["fit", "n=100"], [data])
    assert key != cache_key(["fit", "n=200"], [data])
    data.write_text("1,2,4\n")
    assert key != cache_key(["fit", "n=100"], [data])
    assert cache_key(["a"], [tmp_path / "missing"]) != cache_key(["a"], [])
