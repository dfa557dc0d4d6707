"""The projector's poll: an empty fetch is followed by the next one at once, not by a sleep.

FastStream's own batch poll slept 200 ms after every empty fetch, so a change arriving
after a quiet spell waited for the sleep (207 ms p50 with changes a second apart).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.projector import app
from tests.support.records import Rec


class Consumer:
    """getmany answers from a script: (seconds to wait, what to return)."""

    def __init__(self, script: list[tuple[float, dict[Any, list[Rec]]]]) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Rec]]:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        wait, result = self.script.pop(0)
        await real_sleep(wait)
        return result


real_sleep = asyncio.sleep


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """What `poll` itself sleeps (the fake consumer's waits use the real sleep)."""
    seen: list[float] = []

    async def spy(seconds: float, *args: Any) -> Any:
        seen.append(seconds)
        return await real_sleep(seconds, *args)

    monkeypatch.setattr(app.asyncio, "sleep", spy)
    return seen


def rec(partition: int, offset: int) -> Rec:
    return Rec("flags", partition, offset, b"k", b"{}", ())


async def test_records_of_every_partition_come_back_as_one_batch(sleeps: list[float]) -> None:
    a, b, c = rec(0, 1), rec(0, 2), rec(1, 7)
    consumer = Consumer([(0, {"p0": [a, b], "p1": [c]})])
    assert await app.poll(consumer) == (a, b, c)  # type: ignore[arg-type]
    assert consumer.calls == [{"timeout_ms": app.POLL_MS, "max_records": app.MAX_RECORDS}]
    assert sleeps == []


async def test_a_poll_that_waited_and_found_nothing_returns_without_sleeping(sleeps: list[float]) -> None:
    consumer = Consumer([(app.EMPTY_AT_ONCE * 2, {}), (0, {"p0": [rec(0, 1)]})])
    assert await app.poll(consumer) == ()  # type: ignore[arg-type]
    assert sleeps == []  # the next poll starts at once: a record arriving now is not held back
    assert len(await app.poll(consumer)) == 1  # type: ignore[arg-type]
    assert sleeps == []


async def test_a_poll_empty_at_once_pauses_so_the_loop_cannot_spin(sleeps: list[float]) -> None:
    consumer = Consumer([(0, {})])
    assert await app.poll(consumer) == ()  # type: ignore[arg-type]
    assert sleeps == [app.EMPTY_AT_ONCE]
