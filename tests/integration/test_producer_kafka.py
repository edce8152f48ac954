"""The producer on a real broker: exact counts, keys, headers, encodings, and its real rate."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from detector.messages import (
    CONTENT_TYPE_F32,
    CONTENT_TYPE_JSON,
    H_ANOMALY_TYPE,
    H_CONTENT_TYPE,
    H_LABEL,
    H_REGIME,
    decode_window,
)
from producer.__main__ import main
from producer.simulate import make_arrays
from tests.kafka_helpers import consume_records

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_n_windows_make_exactly_n_records_with_keys_headers_and_encoding(
    kafka_bootstrap: str, new_topic: Callable[..., str], encoding: str
) -> None:
    topic = new_topic(partitions=3)
    n = 600
    argv = [
        "simulate",
        "--kind",
        "ecg",
        "--sources",
        "4",
        "--count",
        str(n),
        "--rate",
        "0",
        "--anomaly-rate",
        "0.1",
        "--seed",
        "5",
        "--encoding",
        encoding,
        "--topic",
        topic,
        "--bootstrap-servers",
        kafka_bootstrap,
        "--quiet",
    ]
    assert main(argv) == 0
    records = consume_records(kafka_bootstrap, topic, n, timeout_s=60)
    assert len(records) == n
    # Nothing more arrives: exactly N.
    assert len(consume_records(kafka_bootstrap, topic, n, timeout_s=10)) == n
    expected = make_arrays("ecg", n, seed=5, anomaly_rate=0.1, n_sources=4)
    want_type = CONTENT_TYPE_JSON if encoding == "json" else CONTENT_TYPE_F32
    by_key_seq = {}
    for m in records:
        h = dict(m.headers() or [])
        assert h[H_CONTENT_TYPE].decode() == want_type
        w = decode_window(m.key(), m.value(), m.headers())
        assert w.source_id == (m.key() or b"").decode()
        by_key_seq[(w.source_id, w.seq)] = (w, h)
    assert Counter(k for k, _s in by_key_seq) == {f"ecg-{i}": n // 4 for i in range(4)}
    for i, src in enumerate(expected.source_ids):
        w, h = by_key_seq[(src, int(expected.seqs[i]))]
        np.testing.assert_allclose(w.values, expected.values[i], rtol=1e-6, atol=1e-6)
        assert h[H_LABEL] == str(int(expected.labels[i])).encode()
        assert h[H_ANOMALY_TYPE].decode() == expected.anomaly_types[i]
        assert h[H_REGIME].decode() == expected.regimes[i]


def test_rate_over_five_seconds_is_near_the_target(
    kafka_bootstrap: str, new_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic()
    target = 400.0
    started = time.monotonic()
    argv = [
        "simulate",
        "--kind",
        "sensor",
        "--sources",
        "3",
        "--rate",
        str(target),
        "--duration",
        "5",
        "--topic",
        topic,
        "--bootstrap-servers",
        kafka_bootstrap,
        "--encoding",
        "binary",
        "--quiet",
    ]
    assert main(argv) == 0
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    sent = int(err.split("sent ")[1].split(" windows")[0])
    achieved = sent / 5.0
    print(f"producer rate over 5 s: {achieved:.0f} windows/s (target {target:g})")
    assert 0.85 * target <= achieved <= 1.05 * target
    assert elapsed < 15
    assert len(consume_records(kafka_bootstrap, topic, sent, timeout_s=30)) == sent
