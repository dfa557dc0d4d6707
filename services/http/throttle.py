"""Slowing down, then blocking, a client that keeps failing to authenticate.

Guessing keys is hopeless (256-bit secrets), but a client that sends bad keys
in a loop still costs us work and log lines, and is worth slowing down. The
services ask, per request:

1. `should_block(client)`: seconds to put in `Retry-After` (answer 429 without
   looking at the key), or None;
2. after a failed authentication, `record_failure(client)`, then
   `await asyncio.sleep(delay_for(client))` before answering 401;
3. after a successful one, `record_success(client)`, which forgets the client.

The first `free_failures` failures cost nothing; each one after that doubles
the delay (from `base_delay_seconds`) up to `max_delay_seconds`. Sleeping only
slows a client that waits for its answers, so once `block_after_capped`
failures have been answered at the cap, the client is blocked until
`window_seconds` after its last failure: that is what stops one sending in
parallel, since failures are counted before the sleep.

A client's failures are forgotten `window_seconds` after its last one. IPv6
clients are counted per /64 network, which one host usually holds whole.
Memory is bounded: entries sit in the order of their last failure, expired
ones are dropped from the cold end as failures arrive, and past `max_entries`
the oldest is forgotten. Nothing awaits, so on one event loop each call is atomic.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["FailedAuthThrottle", "client_key"]

_PRUNE = 2  # expired entries dropped per recorded failure


@functools.lru_cache(maxsize=4096)
def _ipv6_key(address: str) -> str:
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


def client_key(address: str) -> str:
    """What failures are counted under: an IPv4 address as is, an IPv6 one as its /64 network."""
    return _ipv6_key(address) if ":" in address else address


class _Failures:
    __slots__ = ("count", "last")

    def __init__(self, last: float) -> None:
        self.count = 0
        self.last = last


class FailedAuthThrottle:
    """Per-client failed-authentication counts, turned into a delay and, past the cap, a block."""

    __slots__ = ("_block_at", "_clock", "_delays", "_entries", "_max_entries", "_window")

    def __init__(
        self,
        *,
        free_failures: int = 5,
        window_seconds: float = 60.0,
        max_delay_seconds: float = 2.0,
        base_delay_seconds: float = 0.25,
        block_after_capped: int | None = 3,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if free_failures < 0:
            raise ValueError("free_failures must be >= 0")
        if not (math.isfinite(window_seconds) and window_seconds > 0):
            raise ValueError("window_seconds must be a positive number")
        if not (math.isfinite(max_delay_seconds) and max_delay_seconds >= 0):
            raise ValueError("max_delay_seconds must be >= 0")
        if not (math.isfinite(base_delay_seconds) and base_delay_seconds > 0):
            raise ValueError("base_delay_seconds must be a positive number")
        if block_after_capped is not None and block_after_capped < 1:
            raise ValueError("block_after_capped must be >= 1 (or None: never block)")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        # _delays[n] is the delay after n failures, for n up to the first one at the cap.
        delays = [0.0] * (free_failures + 1)
        step = base_delay_seconds
        while True:
            delays.append(min(step, max_delay_seconds))
            if step >= max_delay_seconds:
                break
            step *= 2
        self._delays = tuple(delays)
        capped_at = len(delays) - 1  # the first failure answered at the cap
        self._block_at = None if block_after_capped is None else capped_at + block_after_capped - 1
        self._window = float(window_seconds)
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def record_failure(self, client: str) -> None:
        key = client_key(client)
        now = self._clock()
        entries = self._entries
        entry = entries.get(key)
        if entry is None or now - entry.last >= self._window:
            entry = entries[key] = _Failures(now)
            entries.move_to_end(key)
            self._prune(now)
        else:
            entries.move_to_end(key)
        entry.count += 1
        entry.last = now

    def record_success(self, client: str) -> None:
        if self._entries:
            self._entries.pop(client_key(client), None)

    def delay_for(self, client: str) -> float:
        """Seconds to wait before answering this client's latest failure (0.0 for the free ones)."""
        found = self._live(client)
        if found is None:
            return 0.0
        delays = self._delays
        return delays[min(found[0].count, len(delays) - 1)]

    def should_block(self, client: str) -> float | None:
        """None, or the seconds until a blocked client may try again (for `Retry-After`)."""
        if self._block_at is None:
            return None
        found = self._live(client)
        if found is None or found[0].count < self._block_at:
            return None
        entry, now = found
        return entry.last + self._window - now

    def _live(self, client: str) -> tuple[_Failures, float] | None:
        """The client's unexpired entry and the time now; an expired one is dropped."""
        entries = self._entries
        if not entries:  # the hot path: nobody is failing
            return None
        key = client_key(client)
        entry = entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now - entry.last >= self._window:
            del entries[key]
            return None
        return entry, now

    def _prune(self, now: float) -> None:
        entries = self._entries
        for _ in range(_PRUNE):
            oldest = next(iter(entries.values()))
            if now - oldest.last < self._window:
                break
            entries.popitem(last=False)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
