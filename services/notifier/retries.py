"""When to try a delivery again: exponential backoff with full jitter, up to a stated number of attempts. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["RetryPolicy", "Verdict", "verdict"]


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the destination may answer later: time-outs, refused connections, 408, 429, 5xx
    GIVE_UP = "give_up"  # asking again will not help: other 4xx, a refused address


RETRIED_STATUSES = frozenset({408, 425, 429})


def verdict(status: int | None, *, refused: bool = False) -> Verdict:
    """What an attempt's answer means: `status` None is no answer at all (network error, time-out)."""
    if refused:
        return Verdict.GIVE_UP
    if status is None or status >= 500 or status in RETRIED_STATUSES:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    return Verdict.GIVE_UP


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` in all (the first included); before attempt n+1, a pause drawn uniformly from
    [0, min(cap, base * 2**(n-1))] (AWS's "full jitter": destinations that failed together do not
    come back together)."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0:
            raise ValueError("attempts must be at least 1, base and cap not negative")

    def ceiling(self, failures: int) -> float:
        """The longest pause after `failures` failed attempts."""
        return min(self.cap, self.base * 2 ** (failures - 1))

    def pause(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0, self.ceiling(failures))

    def more_after(self, failures: int) -> bool:
        return failures < self.attempts
