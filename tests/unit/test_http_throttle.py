"""FailedAuthThrottle: free failures, doubling delays to a cap, the block, the window, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.http import FailedAuthThrottle, client_key


class Clock:
    def __init__(self, now: float = 5000.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def throttle(**kwargs: object) -> tuple[FailedAuthThrottle, Clock]:
    clock = Clock()
    return FailedAuthThrottle(clock=clock, **kwargs), clock  # type: ignore[arg-type]


def fail(t: FailedAuthThrottle, client: str = "10.0.0.1") -> float:
    """What a service does on a bad key: record, then ask for the delay."""
    t.record_failure(client)
    return t.delay_for(client)


def test_the_default_delays_double_from_the_sixth_failure_to_the_cap() -> None:
    t, _ = throttle()
    assert [fail(t) for _ in range(12)] == [0, 0, 0, 0, 0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("options", "delays"),
    [
        ({"free_failures": 0, "base_delay_seconds": 1.0, "max_delay_seconds": 3.0}, [1.0, 2.0, 3.0, 3.0]),
        ({"free_failures": 2, "base_delay_seconds": 0.1, "max_delay_seconds": 0.4}, [0, 0, 0.1, 0.2, 0.4, 0.4]),
        ({"free_failures": 1, "base_delay_seconds": 5.0, "max_delay_seconds": 2.0}, [0, 2.0, 2.0]),
        ({"free_failures": 1, "max_delay_seconds": 0.0}, [0, 0, 0, 0]),
    ],
)
def test_delays_follow_the_options(options: dict[str, float], delays: list[float]) -> None:
    t, _ = throttle(block_after_capped=None, **options)
    assert [fail(t) for _ in delays] == pytest.approx(delays)


def test_nobody_is_delayed_or_blocked_before_failing() -> None:
    t, clock = throttle()
    assert t.delay_for("10.0.0.1") == 0.0
    assert t.should_block("10.0.0.1") is None
    assert clock.reads == 0  # the hot path reads no clock while nobody fails


def test_a_client_is_blocked_after_three_failures_at_the_cap() -> None:
    t, clock = throttle()
    for _ in range(10):  # 5 free, 0.25, 0.5, 1, 2, 2
        fail(t)
        assert t.should_block("10.0.0.1") is None
    fail(t)  # the third answered at the cap
    clock.advance(15)
    assert t.should_block("10.0.0.1") == pytest.approx(45.0)
    assert t.should_block("10.0.0.2") is None


def test_a_block_ends_a_window_after_the_last_failure_and_all_is_forgotten() -> None:
    t, clock = throttle(window_seconds=60)
    for _ in range(11):
        fail(t)
    clock.advance(59.9)
    assert t.should_block("10.0.0.1") == pytest.approx(0.1)
    clock.advance(0.1)
    assert t.should_block("10.0.0.1") is None
    assert t.delay_for("10.0.0.1") == 0.0
    assert fail(t) == 0.0


def test_failures_spaced_within_the_window_keep_counting() -> None:
    t, clock = throttle(window_seconds=60)
    delays = []
    for _ in range(7):
        delays.append(fail(t))
        clock.advance(50)
    assert delays == [0, 0, 0, 0, 0, 0.25, 0.5]


def test_failures_are_forgotten_a_window_after_the_last_one() -> None:
    t, clock = throttle(window_seconds=60)
    for _ in range(7):
        fail(t)
    assert t.delay_for("10.0.0.1") == 0.5
    clock.advance(60)
    assert t.delay_for("10.0.0.1") == 0.0
    assert len(t) == 0


def test_a_success_forgets_the_failures() -> None:
    t, _ = throttle()
    for _ in range(8):
        fail(t)
    t.record_success("10.0.0.1")
    assert t.delay_for("10.0.0.1") == 0.0
    assert fail(t) == 0.0
    t.record_success("10.0.0.9")  # never failed: nothing to do
    assert len(t) == 1


def test_clients_are_counted_apart() -> None:
    t, _ = throttle(free_failures=1)
    fail(t, "10.0.0.1")
    fail(t, "10.0.0.1")
    assert t.delay_for("10.0.0.1") == 0.25
    assert t.delay_for("10.0.0.2") == 0.0
    assert fail(t, "10.0.0.2") == 0.0


def test_blocking_can_be_turned_off() -> None:
    t, _ = throttle(block_after_capped=None)
    for _ in range(100):
        assert fail(t) <= 2.0
    assert t.should_block("10.0.0.1") is None


def test_block_after_capped_counts_failures_answered_at_the_cap() -> None:
    t, _ = throttle(free_failures=0, base_delay_seconds=1.0, max_delay_seconds=1.0, block_after_capped=1)
    assert fail(t) == 1.0
    assert t.should_block("10.0.0.1") is not None


# --- memory ----------------------------------------------------------------------------------


def test_memory_is_bounded() -> None:
    t, clock = throttle(max_entries=50)
    for i in range(5000):
        fail(t, f"10.1.{i // 256}.{i % 256}")
        clock.advance(0.001)
    assert len(t) == 50
    assert t.delay_for("10.1.19.135") == 0.0  # the last one recorded is kept; the oldest went
    assert t.delay_for("10.1.0.0") == 0.0


def test_the_most_recent_failures_are_kept_when_full() -> None:
    t, clock = throttle(max_entries=2, free_failures=0)
    fail(t, "a")
    clock.advance(1)
    fail(t, "b")
    clock.advance(1)
    fail(t, "a")  # a is now the most recent
    fail(t, "c")
    assert len(t) == 2
    assert t.delay_for("a") > 0
    assert t.delay_for("c") > 0
    assert t.delay_for("b") == 0.0


def test_expired_entries_are_dropped_as_failures_arrive() -> None:
    t, clock = throttle(window_seconds=10)
    for i in range(40):
        fail(t, f"10.0.0.{i}")
    clock.advance(10)
    for i in range(20):
        fail(t, f"10.9.0.{i}")
    assert len(t) == 20


# --- client keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
        ("not:an:address", "not:an:address"),
    ],
)
def test_client_keys(address: str, key: str) -> None:
    assert client_key(address) == key


def test_one_ipv6_network_is_one_client() -> None:
    t, _ = throttle(free_failures=2)
    fail(t, "2001:db8::1")
    fail(t, "2001:db8::2")
    assert fail(t, "2001:db8::3") == 0.25
    assert t.delay_for("2001:db8:0:1::1") == 0.0
    t.record_success("2001:db8::ffff")
    assert t.delay_for("2001:db8::1") == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"free_failures": -1}, "free_failures"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"window_seconds": float("inf")}, "window_seconds"),
        ({"max_delay_seconds": -1}, "max_delay_seconds"),
        ({"base_delay_seconds": 0}, "base_delay_seconds"),
        ({"block_after_capped": 0}, "block_after_capped"),
        ({"max_entries": 0}, "max_entries"),
    ],
)
def test_nonsense_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FailedAuthThrottle(**options)  # type: ignore[arg-type]


# --- laws ----------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.floats(min_value=0, max_value=30), st.booleans()), max_size=100))
def test_delays_stay_within_bounds_and_a_block_never_outlasts_the_window(steps: list[tuple[float, bool]]) -> None:
    clock = Clock(0.0)
    t = FailedAuthThrottle(clock=clock)
    for dt, succeeded in steps:
        clock.advance(dt)
        blocked = t.should_block("c")
        if blocked is not None:
            assert 0 < blocked <= 60.0
            continue
        if succeeded:
            t.record_success("c")
            assert t.delay_for("c") == 0.0
        else:
            t.record_failure("c")
            assert 0.0 <= t.delay_for("c") <= 2.0
