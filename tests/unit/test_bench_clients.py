"""kafka_local.clients, the helpers the bench and the tests share: the parts without a broker."""

from __future__ import annotations

import time

import pytest

from kafka_local.clients import WaitTimeoutError, merge_overrides, unique_name, wait_until


def test_wait_until_returns_once_the_condition_holds() -> None:
    calls = iter([False, False, True])
    wait_until(lambda: next(calls), 5, "the third call", interval_s=0.001)


def test_wait_until_is_bounded_and_names_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match="waiting for the impossible"):
        wait_until(lambda: False, 0.05, "the impossible", interval_s=0.01)
    assert time.monotonic() - started < 2


def test_merge_overrides_merges_groups_one_level_and_replaces_the_rest() -> None:
    base = {"kafka": {"bootstrap_servers": "b:9092"}, "max_batch": 64, "topics": {"a": "x"}}
    merged = merge_overrides(base, {"kafka": {"extra": {"k": "v"}}, "max_batch": 8, "topics": 1})
    assert merged == {
        "kafka": {"bootstrap_servers": "b:9092", "extra": {"k": "v"}},
        "max_batch": 8,
        "topics": 1,
    }
    assert base["kafka"] == {"bootstrap_servers": "b:9092"}  # the base is left alone


def test_unique_names_differ() -> None:
    names = {unique_name("t") for _ in range(100)}
    assert len(names) == 100 and all(n.startswith("t-") for n in names)
