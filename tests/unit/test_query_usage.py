"""Evaluation counts: the in-memory counter, the counting evaluator, the flusher and the read answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from flagcore import Evaluation, Reason
from services.query.contexts import Context
from services.query.errors import UnknownFlag
from services.query.usage import (
    RETENTION_MINUTES,
    CountingEvaluator,
    UsageCounter,
    flush_forever,
    series,
    window,
)

T = 1_764_410_400.0  # 2025-11-29T10:00:00Z, a minute boundary
MINUTE = int(T) // 60


class Clock:
    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Catalogue:
    """An evaluator of two flags; any other is unknown."""

    flags = ("a.one", "b.two")

    async def evaluate(
        self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> Evaluation:
        if flag_key not in self.flags:
            raise UnknownFlag(flag_key)
        return Evaluation(flag_key, True, Reason.STATIC)

    async def evaluate_all(
        self, org_id: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> list[Evaluation]:
        return [Evaluation(k, False, Reason.DEFAULT) for k in self.flags]


class Store:
    """A fake `UsageStore` that sums what it is given, and can be down."""

    def __init__(self) -> None:
        self.totals: dict[tuple[int, str, str], int] = {}
        self.flushes = 0
        self.down = False

    async def add(self, counts: Mapping[tuple[int, str, str], int]) -> None:
        if self.down:
            raise ConnectionError("store down")
        self.flushes += 1
        for key, n in counts.items():
            self.totals[key] = self.totals.get(key, 0) + n

    async def read(self, org_id: str | None, minutes: Sequence[int]) -> dict[int, dict[str, int]]:
        raise NotImplementedError


def test_counts_are_per_minute_org_and_flag() -> None:
    clock = Clock()
    counter = UsageCounter(clock)
    counter.count("acme", "a.one")
    counter.count("acme", "a.one")
    counter.count("globex", "a.one")
    clock.now += 59.9
    counter.count_all("acme", ["a.one", "b.two"])
    clock.now += 0.1  # the next minute
    counter.count("acme", "a.one")
    assert counter.drain() == {
        (MINUTE, "acme", "a.one"): 3,
        (MINUTE, "globex", "a.one"): 1,
        (MINUTE, "acme", "b.two"): 1,
        (MINUTE + 1, "acme", "a.one"): 1,
    }
    assert counter.drain() == {}


async def test_the_counting_evaluator_counts_answered_evaluations_only() -> None:
    counter = UsageCounter(Clock())
    evaluator = CountingEvaluator(Catalogue(), counter)
    assert (await evaluator.evaluate("acme", "a.one", platform=None, user_id="u1")).value is True
    with pytest.raises(UnknownFlag):
        await evaluator.evaluate("acme", "nope", platform=None, user_id=None)
    assert len(await evaluator.evaluate_all("acme", platform="meta", user_id=None)) == 2
    assert counter.drain() == {(MINUTE, "acme", "a.one"): 2, (MINUTE, "acme", "b.two"): 1}


async def test_the_flusher_delivers_at_most_once_per_period_and_keeps_counts_while_the_store_is_down() -> None:
    counter = UsageCounter(Clock())
    store = Store()
    task = asyncio.create_task(flush_forever(counter, store, every=0.05, failures=(ConnectionError,)))
    try:
        for _ in range(100):
            counter.count("acme", "a.one")
        await asyncio.sleep(0.12)
        assert store.totals == {(MINUTE, "acme", "a.one"): 100}
        assert store.flushes == 1  # one flush carried all hundred; idle periods send nothing
        store.down = True
        counter.count("acme", "a.one")
        await asyncio.sleep(0.12)
        assert len(counter) == 1  # not lost: put back for the next try
        store.down = False
        await asyncio.sleep(0.1)
        assert store.totals == {(MINUTE, "acme", "a.one"): 101}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_counts_put_back_after_a_failed_flush_skip_minutes_the_store_no_longer_keeps() -> None:
    clock = Clock()
    counter = UsageCounter(clock)
    old, recent = (MINUTE - RETENTION_MINUTES, "acme", "a.one"), (MINUTE - 5, "acme", "a.one")
    counter.restore({old: 4, recent: 2})
    assert counter.drain() == {recent: 2}


def test_the_answer_lists_each_flag_per_minute_most_evaluated_first() -> None:
    minutes = window(T + 30, 3)
    assert minutes == [MINUTE - 2, MINUTE - 1, MINUTE]
    answer = series("acme", minutes, {MINUTE - 2: {"a.one": 1, "b.two": 5}, MINUTE: {"a.one": 2}})
    assert answer == {
        "org_id": "acme",
        "minutes": [datetime(2025, 11, 29, 9, 58, tzinfo=UTC), datetime(2025, 11, 29, 9, 59, tzinfo=UTC),
                    datetime(2025, 11, 29, 10, 0, tzinfo=UTC)],
        "flags": [
            {"flag_key": "b.two", "total": 5, "counts": [5, 0, 0]},
            {"flag_key": "a.one", "total": 3, "counts": [1, 0, 2]},
        ],
    }
