"""Two cache levels in front of Postgres: an in-process dict, then Redis (shared by replicas).

`DocumentCache.get(key, load, compile)` answers from the in-process dict, else
from the shared cache, else from `load()` (Postgres), filling upward. It is
written against the `SharedCache` port; the Redis adapter lives in
`services.query.adapters`.

Staleness rules:
- The in-process level is used only while the invalidation subscription is
  connected (`online`); each (re)connection clears it, since messages may have
  been missed. Entries also expire after `ttl`, like the Redis ones.
- A fill that an invalidation overtakes is not kept (generation check), so a
  slow Postgres read cannot re-cache a value the projector just replaced.
- The shared level is filled under a lease taken when the miss is seen: the
  projector's DEL removes the lease, and the fill is a compare-and-set on it, so
  a value read before a change is never written to Redis after that change's DEL.

`generation` counts every change to what the in-process level holds (an
invalidation, a clear, a document stored): an answer computed from documents
read at one generation is still right while the generation is the same
(`services.query.answers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class CacheError(Exception):
    """The shared cache failed; callers fall back to the source."""


class SharedCache(Protocol):
    async def get_or_lease(self, key: str) -> tuple[bytes | None, str | None]:
        """(value, None) on a hit; (None, lease) when this caller may fill; (None, None) when another is."""
        ...

    async def fill(self, key: str, lease: str, value: bytes, ttl: int) -> bool:
        """Store `value` only if `lease` still holds the key."""
        ...


class DocumentCache:
    def __init__(
        self,
        shared: SharedCache | None,
        *,
        ttl: int,
        local: bool = True,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._ttl = ttl
        self._local_enabled = local
        self._max = max_entries
        self._clock = clock
        self._local: dict[str, tuple[float, Any]] = {}
        self._inflight: dict[str, tuple[asyncio.Future[Any], int]] = {}
        self._epoch = 0
        self._floor = 0
        self._invalidated: dict[str, int] = {}
        self.generation = 0
        self.online = False  # set by the invalidation listener
        self.stats = {"local": 0, "shared": 0, "source": 0}

    @property
    def ttl(self) -> int:
        """Seconds a document is kept: the bound on anything derived from one, even with no invalidation."""
        return self._ttl

    def __len__(self) -> int:
        return len(self._local)

    def peek(self, key: str) -> Any | None:
        """The in-process copy `get` would answer with right now, or None (then `get` goes further)."""
        if not self.online:
            return None
        entry = self._local.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        self.stats["local"] += 1
        return entry[1]

    async def get(self, key: str, load: Callable[[], Awaitable[bytes]], compile: Callable[[bytes], T]) -> T:
        if self.online:
            entry = self._local.get(key)
            if entry is not None and entry[0] > self._clock():
                self.stats["local"] += 1
                return entry[1]  # type: ignore[no-any-return]
        flight = self._inflight.get(key)
        if flight is not None and self._fresh(key, flight[1]):
            # Join a fill of the same document that no invalidation has overtaken.
            return await asyncio.shield(flight[0])  # type: ignore[no-any-return]
        generation = self._epoch
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = (future, generation)
        try:
            value = await self._fill(key, generation, load, compile)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # waiters re-raise it; nobody else needs to see it
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if self._inflight.get(key, (None,))[0] is future:
                del self._inflight[key]

    async def _fill(
        self, key: str, generation: int, load: Callable[[], Awaitable[bytes]], compile: Callable[[bytes], T]
    ) -> T:
        shared = self._shared if self.online else None
        raw: bytes | None = None
        lease: str | None = None
        if shared is not None:
            try:
                raw, lease = await shared.get_or_lease(key)
            except CacheError as exc:
                log.debug("shared cache read failed for %s: %s", key, exc)
                shared = None
        value: T | None = None
        if raw is not None:
            try:
                value = compile(raw)
                self.stats["shared"] += 1
            except Exception:
                log.warning("unreadable cached document %s; reading the source", key)
        if value is None:
            raw = await load()
            value = compile(raw)
            self.stats["source"] += 1
            if shared is not None and lease is not None:
                try:
                    await shared.fill(key, lease, raw, self._ttl)
                except CacheError as exc:
                    log.debug("shared cache fill failed for %s: %s", key, exc)
        if self._local_enabled and self.online and self._fresh(key, generation):
            if len(self._local) >= self._max:
                self._local.pop(next(iter(self._local)))
            self._local[key] = (self._clock() + self._ttl, value)
            self.generation += 1
        return value

    def _fresh(self, key: str, generation: int) -> bool:
        """No invalidation of `key` (and no clear) since a fill that started at `generation`."""
        return generation >= self._floor and self._invalidated.get(key, 0) <= generation

    def invalidate(self, key: str) -> None:
        self.generation += 1
        self._epoch += 1
        self._invalidated[key] = self._epoch
        self._local.pop(key, None)
        if len(self._invalidated) > self._max:
            self.clear()

    def clear(self) -> None:
        self.generation += 1
        self._epoch += 1
        self._floor = self._epoch
        self._local.clear()
        self._invalidated.clear()
