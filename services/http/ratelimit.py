"""A token bucket per key (API key, client address): pure, O(1), bounded in memory.

Each key may spend `burst` requests at once and then `rate_per_second` on
average. Buckets are refilled lazily when touched, so an idle key costs
nothing but its entry, and entries are kept in least-recently-used order:
an entry whose bucket has refilled completely is the same as no entry, so
such entries are dropped from the cold end as new keys arrive, and when
`max_entries` is reached anyway the least recently used key is forgotten
(it starts again with a full bucket: the bound on memory wins over exactness
for a flood of distinct keys).

No locks: `try_acquire` never awaits, so on one event loop it is atomic.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["TokenBucketLimiter"]

# Refills are float sums; without a little slack, 10 refills of 0.1 can fall just short of a token.
_EPSILON = 1e-9
# Idle entries dropped per new key: more than one, so the table shrinks after a burst of keys.
_PRUNE = 2


class TokenBucketLimiter:
    """`try_acquire(key)`: 0.0 when the request may go, else the seconds until a token is there."""

    __slots__ = ("_buckets", "_burst", "_clock", "_full_after", "_max_entries", "_rate")

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        if not (math.isfinite(rate_per_second) and rate_per_second > 0):
            raise ValueError(f"rate_per_second must be a positive number, not {rate_per_second!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
        self._rate = float(rate_per_second)
        self._burst = float(burst)
        self._clock = clock
        self._max_entries = max_entries
        self._full_after = burst / self._rate  # seconds for an empty bucket to fill
        # key -> [tokens, time of the last refill]; a list, so a hit allocates nothing.
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def try_acquire(self, key: Hashable) -> float:
        """Take a token for `key` if there is one (0.0), else take nothing and say how long to wait."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            self._admit(key, now)
            return 0.0
        buckets.move_to_end(key)
        tokens, last = bucket
        if now > last:
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            bucket[1] = now
        if tokens >= 1.0 - _EPSILON:
            bucket[0] = max(tokens - 1.0, 0.0)
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._rate

    def _admit(self, key: Hashable, now: float) -> None:
        buckets = self._buckets
        for _ in range(_PRUNE):
            if not buckets:
                break
            oldest = next(iter(buckets.values()))
            if now - oldest[1] < self._full_after:
                break
            buckets.popitem(last=False)
        if len(buckets) >= self._max_entries:
            buckets.popitem(last=False)
        buckets[key] = [self._burst - 1.0, now]
