"""TokenBucketLimiter: bursts, refill, waits, bounded memory, and the laws of a token bucket."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.http import TokenBucketLimiter


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(rate: float = 2.0, burst: int = 3, **kwargs: object) -> tuple[TokenBucketLimiter, Clock]:
    clock = Clock()
    return TokenBucketLimiter(rate, burst, clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_a_burst_is_allowed_then_the_wait_is_exact() -> None:
    bucket, _ = limiter(rate=2.0, burst=3)
    assert [bucket.try_acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire("k") == pytest.approx(0.5)


def test_the_wait_shrinks_as_tokens_refill() -> None:
    bucket, clock = limiter(rate=2.0, burst=1)
    assert bucket.try_acquire("k") == 0.0
    clock.advance(0.2)
    assert bucket.try_acquire("k") == pytest.approx(0.3)
    clock.advance(0.3)
    assert bucket.try_acquire("k") == 0.0
    assert bucket.try_acquire("k") == pytest.approx(0.5)


def test_a_refused_request_takes_no_token() -> None:
    bucket, clock = limiter(rate=1.0, burst=1)
    bucket.try_acquire("k")
    for _ in range(50):
        assert bucket.try_acquire("k") > 0
    clock.advance(1.0)
    assert bucket.try_acquire("k") == 0.0


def test_refill_stops_at_the_burst() -> None:
    bucket, clock = limiter(rate=10.0, burst=2)
    bucket.try_acquire("k")
    clock.advance(3600)
    assert [bucket.try_acquire("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert bucket.try_acquire("k") > 0


def test_keys_are_independent() -> None:
    bucket, _ = limiter(rate=1.0, burst=1)
    assert bucket.try_acquire("a") == 0.0
    assert bucket.try_acquire("a") > 0
    assert bucket.try_acquire("b") == 0.0
    assert bucket.try_acquire(("org", "acme")) == 0.0


def test_float_refills_add_up_to_a_token() -> None:
    bucket, clock = limiter(rate=10.0, burst=1)
    bucket.try_acquire("k")
    for _ in range(9):  # each refused try banks its 0.1 of a token as a float
        clock.advance(0.01)
        assert bucket.try_acquire("k") > 0
    clock.advance(0.01)
    assert bucket.try_acquire("k") == 0.0


def test_a_clock_going_back_grants_nothing_and_does_not_break() -> None:
    bucket, clock = limiter(rate=1.0, burst=1)
    bucket.try_acquire("k")
    clock.advance(-50)
    assert bucket.try_acquire("k") == pytest.approx(1.0)
    clock.advance(51)
    assert bucket.try_acquire("k") == 0.0


def test_memory_is_bounded_and_the_least_recently_used_key_goes() -> None:
    bucket, _ = limiter(rate=1.0, burst=1, max_entries=3)
    for key in "abc":
        bucket.try_acquire(key)
    bucket.try_acquire("a")  # a is now the most recent; b the least
    bucket.try_acquire("d")
    assert len(bucket) == 3
    assert bucket.try_acquire("a") > 0  # still remembered: its bucket is empty
    assert bucket.try_acquire("c") > 0
    assert bucket.try_acquire("b") == 0.0  # forgotten: a fresh bucket


def test_a_flood_of_keys_never_exceeds_the_bound() -> None:
    bucket, clock = limiter(rate=1.0, burst=5, max_entries=100)
    for i in range(10_000):
        bucket.try_acquire(f"client-{i}")
        clock.advance(0.0001)
    assert len(bucket) == 100


def test_idle_buckets_are_dropped_as_new_keys_arrive() -> None:
    bucket, clock = limiter(rate=1.0, burst=2)
    for i in range(50):
        bucket.try_acquire(i)
    clock.advance(2.0)  # every bucket has refilled: the same as no entry
    for i in range(50, 75):
        bucket.try_acquire(i)
    assert len(bucket) == 25


def test_recent_buckets_are_not_dropped_below_the_bound() -> None:
    bucket, clock = limiter(rate=1.0, burst=2)
    for i in range(50):
        bucket.try_acquire(i)
    clock.advance(1.0)  # not yet full
    bucket.try_acquire("new")
    assert len(bucket) == 51


@pytest.mark.parametrize(
    ("rate", "burst", "max_entries", "message"),
    [
        (0.0, 1, 10, "rate_per_second"),
        (-1.0, 1, 10, "rate_per_second"),
        (math.inf, 1, 10, "rate_per_second"),
        (math.nan, 1, 10, "rate_per_second"),
        (1.0, 0, 10, "burst"),
        (1.0, 1, 0, "max_entries"),
    ],
)
def test_nonsense_settings_are_refused(rate: float, burst: int, max_entries: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucketLimiter(rate, burst, max_entries=max_entries)


def test_the_default_clock_is_monotonic() -> None:
    bucket = TokenBucketLimiter(1000.0, 1)
    assert bucket.try_acquire("k") == 0.0
    assert 0 < bucket.try_acquire("k") <= 0.001


# --- the laws ------------------------------------------------------------------------------

steps = st.lists(st.tuples(st.floats(min_value=0, max_value=3, allow_nan=False), st.sampled_from("abc")), max_size=200)


@given(
    rate=st.floats(min_value=0.1, max_value=100),
    burst=st.integers(min_value=1, max_value=20),
    steps=steps,
)
def test_grants_never_exceed_burst_plus_refill(rate: float, burst: int, steps: list[tuple[float, str]]) -> None:
    clock = Clock(0.0)
    bucket = TokenBucketLimiter(rate, burst, clock=clock)
    granted = {"a": 0, "b": 0, "c": 0}
    for dt, key in steps:
        clock.advance(dt)
        if bucket.try_acquire(key) == 0.0:
            granted[key] += 1
    for count in granted.values():
        assert count <= burst + rate * clock.now + 1e-6


@given(
    rate=st.floats(min_value=0.1, max_value=100),
    burst=st.integers(min_value=1, max_value=20),
    steps=steps,
)
def test_waiting_the_answer_out_always_succeeds(rate: float, burst: int, steps: list[tuple[float, str]]) -> None:
    clock = Clock(0.0)
    bucket = TokenBucketLimiter(rate, burst, clock=clock)
    for dt, key in steps:
        clock.advance(dt)
        wait = bucket.try_acquire(key)
        assert 0.0 <= wait <= 1.0 / rate + 1e-9
        if wait:
            clock.advance(wait)
            assert bucket.try_acquire(key) == 0.0
