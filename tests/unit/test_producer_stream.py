"""Rate control and the send loop, with a fake clock and a list standing in for Kafka."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from producer.errors import DeliveryError, ProducerInputError
from producer.pacing import Pacer
from producer.simulate import make_batches
from producer.stream import stream_to_kafka
from producer.windows import LabeledWindow, WindowBatch


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ListSink:
    """Records what the loop sends; waiting in ``poll`` moves the fake clock."""

    topic = "windows"

    def __init__(self, clock: FakeClock, send_cost_s: float = 0.0) -> None:
        self.clock = clock
        self.send_cost_s = send_cost_s
        self.sent: list[tuple[float, LabeledWindow, int]] = []
        self.delivered = 0
        self.flushed = False
        self.before_send: list[Callable[[int], None]] = []  # called with the count so far
        self.after_send: list[Callable[[int], None]] = []

    def send_window(self, w: LabeledWindow, event_time_ms: int) -> None:
        for hook in self.before_send:
            hook(len(self.sent))
        self.sent.append((self.clock.now, w, event_time_ms))
        self.delivered += 1
        self.clock.now += self.send_cost_s
        for hook in self.after_send:
            hook(len(self.sent))

    def poll(self, timeout_s: float = 0.0) -> None:
        self.clock.now += timeout_s

    def flush(self, timeout_s: float = 60.0) -> None:
        self.flushed = True


def _stream(n: int | None = None) -> list[WindowBatch]:
    return list(make_batches("sensor", n if n is not None else 3000, seed=0, window=8, channels=2))


def test_steady_pacer_spaces_windows_evenly() -> None:
    p = Pacer(200.0)
    assert [p.due(i) for i in (0, 1, 200, 1000)] == [0.0, 0.005, 1.0, 5.0]
    assert Pacer(0).due(10**6) == 0.0


def test_bursty_pacer_keeps_the_average_rate_but_varies_it() -> None:
    p = Pacer(100.0, bursty=True)
    due = np.array([p.due(i) for i in range(1000)])
    assert np.all(np.diff(due) > 0)
    assert p.due(1000) == pytest.approx(10.0)  # 1000 windows at 100/s on average
    gaps = np.diff(due)
    assert gaps.max() / gaps.min() == pytest.approx(9.0, rel=0.01)  # 1.8x vs 0.2x
    assert int((due % 1.0 < 0.5).sum()) == 900, "90 % of each second's windows in its first half"


def test_windows_leave_on_schedule_and_the_rate_is_exact() -> None:
    clock = FakeClock()
    sink = ListSink(clock)
    report = stream_to_kafka(_stream(), sink, Pacer(100.0), count=50, clock=clock, quiet=True)
    times = np.array([t for t, _w, _e in sink.sent])
    np.testing.assert_allclose(times, np.arange(50) / 100.0, atol=1e-9)
    assert report.sent == 50 and report.delivered == 50 and sink.flushed
    assert report.seconds == pytest.approx(0.5) and report.rate == pytest.approx(100.0)
    assert not report.interrupted


def test_a_duration_limit_sends_rate_times_duration_windows() -> None:
    clock = FakeClock()
    sink = ListSink(clock)
    report = stream_to_kafka(
        _stream(), sink, Pacer(120.0, bursty=True), duration_s=2.0, clock=clock
    )
    assert report.sent == 240
    assert report.seconds == pytest.approx(2.0)
    first_half = sum(1 for t, _w, _e in sink.sent if t % 1.0 < 0.5)
    assert first_half == 2 * 108, "bursty: 90 % in the first half of each second"


def test_as_fast_as_possible_stops_at_the_duration() -> None:
    clock = FakeClock()
    sink = ListSink(clock, send_cost_s=0.001)
    report = stream_to_kafka(_stream(), sink, Pacer(0.0), duration_s=1.0, clock=clock)
    assert report.sent == pytest.approx(1000, abs=1)
    assert report.target_rate == 0.0


def test_a_slow_sink_shows_in_the_reported_rate() -> None:
    clock = FakeClock()
    sink = ListSink(clock, send_cost_s=0.02)  # can do 50/s, asked for 100/s
    report = stream_to_kafka(_stream(), sink, Pacer(100.0), duration_s=2.0, clock=clock)
    assert report.rate == pytest.approx(50.0, rel=0.05)


def test_a_stop_request_ends_the_run_and_still_flushes() -> None:
    clock = FakeClock()
    sink = ListSink(clock)
    stop = threading.Event()
    sink.after_send.append(lambda n: stop.set() if n == 30 else None)
    report = stream_to_kafka(_stream(), sink, Pacer(1000.0), stop=stop, clock=clock)
    assert report.interrupted and report.sent == 30 and sink.flushed


def test_keyboard_interrupt_is_a_clean_stop() -> None:
    clock = FakeClock()
    sink = ListSink(clock)

    def interrupt(n: int) -> None:
        if n == 10:
            raise KeyboardInterrupt

    sink.before_send.append(interrupt)
    report = stream_to_kafka(_stream(), sink, Pacer(0.0), clock=clock)
    assert report.interrupted and report.sent == 10 and sink.flushed


def test_a_failed_delivery_is_raised_not_swallowed() -> None:
    clock = FakeClock()
    sink = ListSink(clock)

    def fail(n: int) -> None:
        if n == 5:
            raise DeliveryError("1 of 5 windows were not delivered")

    sink.after_send.append(fail)
    with pytest.raises(DeliveryError, match="not delivered"):
        stream_to_kafka(_stream(), sink, Pacer(0.0), count=100, clock=clock)


def test_the_end_of_a_finite_stream_ends_the_run_after_its_last_slot() -> None:
    clock = FakeClock()
    sink = ListSink(clock)
    report = stream_to_kafka(_stream(7), sink, Pacer(10.0), count=100, clock=clock)
    assert report.sent == 7 and report.seconds == pytest.approx(0.7)


def test_event_times_come_from_the_file_when_asked() -> None:
    batch = _stream(4)[0]
    times = np.array([10, 20, 30, 40], dtype=np.int64)
    timed = WindowBatch(
        batch.source_ids, batch.seqs, batch.values, batch.labels, batch.anomaly_types,
        batch.regimes, batch.channel_names, times,
    )  # fmt: skip
    clock = FakeClock()
    sink = ListSink(clock)
    stream_to_kafka([timed], sink, Pacer(0.0), clock=clock, event_time="file")
    assert [e for _t, _w, e in sink.sent] == [10, 20, 30, 40]
    with pytest.raises(ProducerInputError, match="needs a file with timestamps"):
        stream_to_kafka([batch], ListSink(clock), Pacer(0.0), clock=clock, event_time="file")
