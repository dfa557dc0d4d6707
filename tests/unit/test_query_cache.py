"""The cache levels, with fakes of the shared-cache port and the document source."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson
import pytest

from services.infra.cache_keys import CacheKeys
from services.query.adapters import EVERY_DOCUMENT, InvalidationListener, invalidated_key
from services.query.cache import CacheError, DocumentCache


class FakeShared:
    """Redis semantics the cache relies on: values with a TTL, leases, compare-and-set fills."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ttl: dict[str, int] = {}
        self.down = False

    async def get_or_lease(self, key: str) -> tuple[bytes | None, str | None]:
        self._check()
        found = self.data.get(key)
        if found is not None:
            return (None, None) if found.startswith(b"lease:") else (found, None)
        lease = f"lease:{uuid.uuid4().hex}"
        self.data[key] = lease.encode()
        return None, lease

    async def fill(self, key: str, lease: str, value: bytes, ttl: int) -> bool:
        self._check()
        if self.data.get(key) != lease.encode():
            return False
        self.data[key] = value
        self.ttl[key] = ttl
        return True

    def delete(self, key: str) -> None:  # what the projector does after a commit
        self.data.pop(key, None)

    def _check(self) -> None:
        if self.down:
            raise CacheError("connection refused")


class Source:
    """Counts loads; `gate` makes a load wait, to interleave it with invalidations."""

    def __init__(self) -> None:
        self.version = 1
        self.loads = 0
        self.gate: asyncio.Event | None = None

    async def load(self) -> bytes:
        self.loads += 1
        seen = self.version
        if self.gate is not None:
            await self.gate.wait()
        return orjson.dumps({"v": seen})


def value(raw: bytes) -> int:
    return int(orjson.loads(raw)["v"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(shared: FakeShared | None = None, *, online: bool = True, **kw: object) -> DocumentCache:
    c = DocumentCache(shared if shared is not None else FakeShared(), ttl=60, **kw)  # type: ignore[arg-type]
    c.online = online
    return c


async def get(c: DocumentCache, source: Source, key: str = "k") -> int:
    return await c.get(key, source.load, value)


async def test_a_miss_fills_both_levels_and_the_next_read_is_local() -> None:
    shared, source = FakeShared(), Source()
    c = cache(shared)
    assert await get(c, source) == 1
    assert shared.data["k"] == b'{"v":1}' and shared.ttl["k"] == 60
    source.version = 2  # the source changed, but nobody said so: the cached value stands
    assert await get(c, source) == 1
    assert source.loads == 1 and c.stats == {"local": 1, "shared": 0, "source": 1}


async def test_another_replica_reads_the_shared_level() -> None:
    shared, source = FakeShared(), Source()
    await get(cache(shared), source)
    replica = cache(shared)
    assert await get(replica, source) == 1
    assert source.loads == 1 and replica.stats["shared"] == 1


async def test_an_empty_document_is_cached_like_any_other() -> None:
    c, loads = cache(), 0

    async def nobody() -> bytes:
        nonlocal loads
        loads += 1
        return b'{"user":[]}'

    for _ in range(3):
        assert await c.get("user-doc", nobody, orjson.loads) == {"user": []}
    assert loads == 1


async def test_an_invalidation_drops_the_local_copy() -> None:
    shared, source = FakeShared(), Source()
    c = cache(shared)
    await get(c, source)
    source.version = 2
    shared.delete("k")
    c.invalidate("k")
    assert await get(c, source) == 2


async def test_offline_means_no_local_and_no_shared_level() -> None:
    shared, source = FakeShared(), Source()
    c = cache(shared, online=False)
    for _ in range(3):
        await get(c, source)
    assert source.loads == 3 and shared.data == {} and len(c) == 0


async def test_shared_cache_errors_fall_back_to_the_source() -> None:
    shared, source = FakeShared(), Source()
    shared.down = True
    c = cache(shared)
    assert await get(c, source) == 1
    assert await get(c, source) == 1  # the local level still works while subscribed
    assert source.loads == 1


async def test_without_caching_every_read_goes_to_the_source() -> None:
    source = Source()
    c = DocumentCache(None, ttl=60, local=False)
    c.online = True
    for _ in range(3):
        await get(c, source)
    assert source.loads == 3


async def test_local_entries_expire_after_the_ttl() -> None:
    clock, source = Clock(), Source()
    c = cache(clock=clock)
    await get(c, source)
    clock.now += 61
    source.version = 2
    assert await get(c, source) == 1  # from the shared level, which has its own TTL in Redis
    assert c.stats["shared"] == 1


async def test_a_fill_overtaken_by_an_invalidation_is_not_kept() -> None:
    shared, source = FakeShared(), Source()
    c = cache(shared)
    source.gate = asyncio.Event()
    slow = asyncio.create_task(get(c, source))  # reads version 1 ...
    await asyncio.sleep(0)
    source.version = 2  # ... the projector commits version 2, DELs and publishes
    shared.delete("k")
    c.invalidate("k")
    source.gate.set()
    assert await slow == 1  # that caller asked before the change; it may see the old value
    assert "k" not in shared.data  # the lease was deleted, so the stale fill was refused
    source.gate = None
    assert await get(c, source) == 2  # ... and nothing stale was kept locally either
    assert source.loads == 2


async def test_concurrent_misses_load_once_unless_an_invalidation_came_between() -> None:
    source = Source()
    c = cache()
    source.gate = asyncio.Event()
    first = [asyncio.create_task(get(c, source)) for _ in range(5)]
    await asyncio.sleep(0)
    assert source.loads == 1
    c.invalidate("k")
    source.version = 2
    later = asyncio.create_task(get(c, source))  # asked after the change: must not join the old fill
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*first) == [1] * 5
    assert await later == 2
    assert source.loads == 2


async def test_a_replica_that_sees_a_lease_reads_the_source_without_filling() -> None:
    shared, source = FakeShared(), Source()
    lease_holder = cache(shared)
    source.gate = asyncio.Event()
    holding = asyncio.create_task(get(lease_holder, source))
    await asyncio.sleep(0)
    other_source = Source()
    assert await get(cache(shared), other_source) == 1
    assert shared.data["k"].startswith(b"lease:")
    source.gate.set()
    await holding
    assert shared.data["k"] == b'{"v":1}'


async def test_clearing_on_reconnect_discards_fills_started_before() -> None:
    source = Source()
    c = cache()
    source.gate = asyncio.Event()
    before = asyncio.create_task(get(c, source))
    await asyncio.sleep(0)
    c.clear()
    source.gate.set()
    await before
    assert len(c) == 0


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    c = cache()
    gate = asyncio.Event()

    async def failing() -> bytes:
        await gate.wait()
        raise RuntimeError("postgres down")

    tasks = [asyncio.create_task(c.get("k", failing, value)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(c) == 0


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b'{"scope":"catalog"}', lambda k: k.catalog),
        (b'{"scope":"org","org_id":"o1"}', lambda k: k.org("o1")),
        (b'{"scope":"user","org_id":"o1","user_id":"u:1"}', lambda k: k.user("o1", "u:1")),
        (b'{"scope":"user","org_id":"o1"}', lambda k: None),
        (b'{"scope":"all"}', lambda k: EVERY_DOCUMENT),  # the projector purged the cache
        (b"garbage", lambda k: None),
    ],
)
def test_invalidation_messages_name_the_projector_s_keys(
    message: bytes, expected: Callable[[CacheKeys], str | None]
) -> None:
    keys = CacheKeys("p")
    assert invalidated_key(keys, message) == expected(keys)


def test_the_listener_turns_the_local_level_on_only_once_subscribed_and_clears_it() -> None:
    keys = CacheKeys("p")
    c = DocumentCache(None, ttl=60)
    listener = InvalidationListener(None, keys, c)  # type: ignore[arg-type]  # only its message handling is used
    c._local["p:v1:catalog"] = (float("inf"), "stale")
    listener._on({"type": "subscribe", "data": 1})
    assert c.online and len(c) == 0  # whatever was cached before may have missed messages
    c._local[keys.org("o1")] = (float("inf"), "doc")
    c._local[keys.org("o2")] = (float("inf"), "doc")
    listener._on({"type": "message", "data": b'{"scope":"org","org_id":"o1"}'})
    assert set(c._local) == {keys.org("o2")}
    listener._on({"type": "message", "data": b"not json"})
    assert len(c) == 0 and listener.messages == 2


def test_a_purge_message_clears_the_local_level() -> None:
    keys = CacheKeys("p")
    c = DocumentCache(None, ttl=60)
    listener = InvalidationListener(None, keys, c)  # type: ignore[arg-type]  # only its message handling is used
    listener._on({"type": "subscribe", "data": 1})
    c._local[keys.org("o1")] = (float("inf"), "doc")
    c._local[keys.catalog] = (float("inf"), "doc")
    listener._on({"type": "message", "data": b'{"scope":"all"}'})
    assert len(c) == 0 and c.online


def test_the_listener_also_tells_the_change_streams_every_message_and_each_resubscription() -> None:
    told: list[bytes | None] = []
    listener = InvalidationListener(None, CacheKeys("p"), DocumentCache(None, ttl=60), also=told.append)  # type: ignore[arg-type]
    listener._on({"type": "subscribe", "data": 1})
    listener._on({"type": "message", "data": b'{"scope":"org","org_id":"o1"}'})
    listener._on({"type": "message", "data": b"not json"})
    assert told == [None, b'{"scope":"org","org_id":"o1"}', b"not json"]
