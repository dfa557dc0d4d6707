"""Evaluation counts per (org, flag) per minute: counted in memory on the hot path, flushed off it.

Counting is a dict increment in the worker that answered (no I/O, no lock: one event
loop per worker). `flush_forever` hands the counts to a `UsageStore` at most once a
second; each worker adds its own counts, so the store's totals are the sum over workers
and replicas. Counts that could not be flushed (the store is down) are kept and retried,
minutes older than the store keeps them excepted. `CountingEvaluator` is how every
evaluation route counts (native and OFREP, on the fast path and on the app): it wraps
the use cases they all call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from flagcore import Evaluation
from services.query.contexts import Context
from services.query.ofrep import Evaluator

__all__ = [
    "MAX_MINUTES",
    "RETENTION_MINUTES",
    "CountingEvaluator",
    "Counts",
    "UsageCounter",
    "UsageStore",
    "flush_forever",
    "series",
    "window",
]

log = logging.getLogger(__name__)

RETENTION_MINUTES = 24 * 60 + 5  # how long a store keeps a minute: the longest window read, and a little more
MAX_MINUTES = 24 * 60  # the longest window the read routes accept
Counts = dict[tuple[int, str, str], int]  # (minute since the epoch, org, flag) → evaluations


class UsageStore(Protocol):
    """Where the counts of every worker add up."""

    async def add(self, counts: Mapping[tuple[int, str, str], int]) -> None: ...

    async def read(self, org_id: str | None, minutes: Sequence[int]) -> dict[int, dict[str, int]]:
        """Per minute, per flag: one org's evaluations, or every org's (`org_id` None)."""
        ...


class UsageCounter:
    """This worker's evaluations not yet flushed."""

    __slots__ = ("_clock", "_counts")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counts = {}

    def count(self, org_id: str, flag_key: str) -> None:
        key = (int(self._clock()) // 60, org_id, flag_key)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def count_all(self, org_id: str, flag_keys: Sequence[str]) -> None:
        minute = int(self._clock()) // 60
        counts = self._counts
        for flag_key in flag_keys:
            key = (minute, org_id, flag_key)
            counts[key] = counts.get(key, 0) + 1

    def drain(self) -> Counts:
        """The counts so far, leaving none."""
        counts, self._counts = self._counts, {}
        return counts

    def restore(self, counts: Counts) -> None:
        """Put back counts a flush could not deliver, but those the store would already have dropped."""
        oldest = int(self._clock()) // 60 - RETENTION_MINUTES
        for key, n in counts.items():
            if key[0] > oldest:
                self._counts[key] = self._counts.get(key, 0) + n

    def __len__(self) -> int:
        return len(self._counts)


class CountingEvaluator:
    """The evaluation use cases, counting each flag evaluated once it is answered."""

    __slots__ = ("_counter", "_inner")

    def __init__(self, inner: Evaluator, counter: UsageCounter) -> None:
        self._inner = inner
        self._counter = counter

    async def evaluate(
        self, org_id: str, flag_key: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> Evaluation:
        result = await self._inner.evaluate(org_id, flag_key, platform=platform, user_id=user_id, context=context)
        self._counter.count(org_id, flag_key)
        return result

    async def evaluate_all(
        self, org_id: str, *, platform: str | None, user_id: str | None, context: Context = None
    ) -> list[Evaluation]:
        results = await self._inner.evaluate_all(org_id, platform=platform, user_id=user_id, context=context)
        self._counter.count_all(org_id, [e.flag_key for e in results])
        return results


async def flush_forever(
    counter: UsageCounter, store: UsageStore, *, every: float = 1.0, failures: tuple[type[BaseException], ...]
) -> None:
    """Every `every` seconds, flush what was counted; `failures` are the store's errors (kept, retried)."""
    down = False
    while True:
        await asyncio.sleep(every)
        counts = counter.drain()
        if not counts:
            continue
        try:
            await store.add(counts)
        except failures as exc:
            counter.restore(counts)
            if not down:
                log.warning("evaluation counts not flushed, kept for the next try: %r", exc)
            down = True
            continue
        down = False


def window(now: float, minutes: int) -> list[int]:
    """The last `minutes` minutes (the current one included), oldest first."""
    current = int(now) // 60
    return list(range(current - minutes + 1, current + 1))


def series(org_id: str | None, minutes: Sequence[int], buckets: Mapping[int, Mapping[str, int]]) -> dict[str, Any]:
    """The read routes' answer: the minutes, and per flag (most evaluated first) its count in each."""
    flags: dict[str, list[int]] = {}
    for i, minute in enumerate(minutes):
        for flag_key, n in buckets.get(minute, {}).items():
            flags.setdefault(flag_key, [0] * len(minutes))[i] += n
    ranked = sorted(flags.items(), key=lambda item: (-sum(item[1]), item[0]))
    return {
        "org_id": org_id,
        "minutes": [datetime.fromtimestamp(m * 60, UTC) for m in minutes],
        "flags": [{"flag_key": key, "total": sum(counts), "counts": counts} for key, counts in ranked],
    }
