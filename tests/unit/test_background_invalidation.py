"""Cache invalidation off the batch's path: queued at once, merged, retried until Redis takes it, purged at start."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.projector.cache_targets import CATALOG, CacheTarget
from services.projector.invalidation import BackgroundInvalidator

ORG_A, ORG_B = CacheTarget("org", "a"), CacheTarget("org", "b")


class Redis:
    """Stands in for `RedisInvalidator`: answers False while down, as it does."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[list[CacheTarget]] = []
        self.purges = 0

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        if not self.up:
            return False
        self.sent.append(list(targets))
        return True

    async def purge(self) -> int:
        if not self.up:
            raise ConnectionError("redis down")
        self.purges += 1
        return 3


def made(redis: Redis, **options: int) -> tuple[BackgroundInvalidator, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    return BackgroundInvalidator(redis, redis.purge, sleep=sleep, **options), slept


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_first_thing_sent_is_a_purge_since_a_predecessor_may_have_died_with_invalidations_queued() -> None:
    redis = Redis()
    pump, _ = made(redis)
    assert await pump.invalidate([ORG_A])  # before the purge began: the purge covers it
    await pump.drain()
    assert redis.purges == 1 and redis.sent == []
    assert pump.pending == 0


async def test_queueing_never_waits_for_redis_and_what_is_queued_meanwhile_is_sent_once_merged() -> None:
    redis = Redis()
    pump, _ = made(redis)
    await pump.drain()
    redis.up = False
    task = asyncio.create_task(pump.run())
    for targets in ([ORG_A], [ORG_A, CATALOG], [ORG_B]):
        assert await pump.invalidate(targets)  # returns at once although Redis is down
    await settle()
    assert redis.sent == [] and pump.pending == 3 and pump.failures >= 1
    redis.up = True
    await pump.invalidate([])  # wakes the sender (a later batch would)
    await settle()
    task.cancel()
    assert redis.sent[-1] == sorted([ORG_A, CATALOG, ORG_B]) and pump.pending == 0


async def test_retries_back_off_and_are_capped() -> None:
    redis = Redis()
    pump, slept = made(redis)
    redis.up = False
    task = asyncio.create_task(pump.run())
    await settle()
    task.cancel()
    assert slept[:4] == [0.2, 0.4, 0.8, 1.0] and max(slept) <= 1.0
    assert redis.purges == 0 and pump.pending == 1  # the purge is still due


async def test_too_much_queued_becomes_one_purge() -> None:
    redis = Redis()
    pump, _ = made(redis, max_pending=2)
    await pump.drain()
    redis.up = False
    await pump.invalidate([ORG_A, ORG_B, CATALOG])
    assert pump.pending == 1  # one purge instead of three documents
    redis.up = True
    await pump.drain()
    assert redis.purges == 2 and redis.sent == []


@pytest.mark.parametrize("fails", ["invalidate", "purge"])
async def test_drain_gives_up_after_one_failed_attempt(fails: str) -> None:
    redis = Redis()
    pump, _ = made(redis)
    if fails == "invalidate":
        await pump.drain()
    await pump.invalidate([ORG_A])
    redis.up = False
    await asyncio.wait_for(pump.drain(), 1)  # returns: shutdown is never held up
    assert pump.pending == 1


async def test_a_failing_redis_is_reported_once_then_periodically_and_its_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = Redis()
    now = [0.0]
    pump = BackgroundInvalidator(redis, redis.purge, sleep=lambda s: asyncio.sleep(0), clock=lambda: now[0])
    redis.up = False
    task = asyncio.create_task(pump.run())
    await settle()
    now[0] = 31.0
    await settle()
    redis.up = True
    await pump.invalidate([])
    await settle()
    task.cancel()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len([m for m in said if "not taking" in m]) == 2, said
    assert len([m for m in said if "again" in m]) == 1, said
