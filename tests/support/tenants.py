"""Two tenants on the real services, keys of every role, and the evidence that a refused request wrote nothing.

`seed_tenants` defines a flag and gives org A and org B overrides at every
level (so a refused clear would have something to clear); `Evidence` reads,
as the Postgres superuser and straight from Redis, everything a request could
have changed: the event store (which is the outbox), the key table, and the
cached documents; `settle` waits until the relay and the projector have
nothing left to do, so that what Redis holds no longer moves by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings

REASON = "access-control test"
_sources = itertools.count(1)


def fresh_source() -> str:
    """A loopback address no request has come from yet (Linux routes all of 127/8 to lo).

    The failed-auth throttle counts per client address; sending each bad key from
    its own address keeps a suite that sends hundreds of them from blocking 127.0.0.1.
    """
    n = next(_sources)
    return f"127.{100 + n // 62500 % 100}.{n // 250 % 250}.{n % 250 + 1}"


def from_address(address: str, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=15, **options)


@dataclass
class Tenants:
    """Org A (whose keys we hold), org B (someone else), org C (exists nowhere), and the data they have."""

    a: str
    b: str
    c: str
    flag: str  # defined, with an override at every level in A and in B
    spare: str  # defined, no overrides: allowed clears set then clear here
    user: str
    events: dict[str, list[str]] = field(default_factory=dict)  # org -> ids of its events

    @classmethod
    def new(cls) -> Tenants:
        run = uuid.uuid4().hex[:8]
        return cls(
            a=f"ta-{run}", b=f"tb-{run}", c=f"tc-{run}", flag=f"acl.{run}.flag", spare=f"acl.{run}.spare",
            user="user-1",
        )

    def override_paths(self, org: str, flag: str | None = None) -> list[str]:
        flag = flag or self.flag
        return [
            f"/v1/orgs/{org}/flags/{flag}",
            f"/v1/orgs/{org}/platforms/meta/flags/{flag}",
            f"/v1/orgs/{org}/users/{self.user}/flags/{flag}",
        ]


async def expect(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()  # type: ignore[no-any-return]


async def seed_tenants(http: httpx.AsyncClient, command_url: str, tenants: Tenants) -> None:
    """As the admin whose headers `http` sends: the two flags, a system default, and A's and B's overrides."""
    for flag in (tenants.flag, tenants.spare):
        await expect(await http.post(f"{command_url}/v1/flags", json={"key": flag, "group": "acl", "reason": REASON}),
                     201)
    await expect(await http.put(f"{command_url}/v1/flags/{tenants.flag}/system",
                                json={"enabled": False, "reason": REASON}), 201)
    for org in (tenants.a, tenants.b):
        for path in tenants.override_paths(org):
            body = {"enabled": True, "rollout_percentage": 50, "reason": f"seed {org}"}
            answer = await expect(await http.put(command_url + path, json=body), 201)
            tenants.events.setdefault(org, []).extend(e["event_id"] for e in answer["events"])


async def create_key(
    http: httpx.AsyncClient, command_url: str, role: str, org: str | None, **extra: Any
) -> dict[str, Any]:
    body = {"name": f"{role} of {org or 'all orgs'}", "role": role, "org_id": org, "reason": REASON, **extra}
    return await expect(await http.post(f"{command_url}/v1/keys", json=body), 201)


def database_url(settings: Settings) -> str:
    """The superuser URL pointed at the settings' own database."""
    return urlunsplit(urlsplit(settings.pg_admin_url)._replace(path=f"/{settings.pg_database}"))


@dataclass(frozen=True)
class Snapshot:
    events: int
    last_sequence: int
    keys: tuple[tuple[Any, ...], ...]
    cached: dict[str, bytes]


class Evidence:
    """What a refused request must leave exactly as it found it."""

    def __init__(self, settings: Settings, conn: asyncpg.Connection, redis: Redis) -> None:
        self.settings = settings
        self.conn = conn
        self.redis = redis
        self.keys = CacheKeys(settings.redis_prefix)

    @classmethod
    async def open(cls, settings: Settings) -> Evidence:
        conn = await asyncpg.connect(database_url(settings))
        return cls(settings, conn, Redis.from_url(settings.redis_url))

    async def close(self) -> None:
        await self.conn.close()
        await self.redis.aclose()

    async def snapshot(self) -> Snapshot:
        events, last = await self.conn.fetchrow("SELECT count(*), coalesce(max(sequence), 0) FROM event_store")
        keys = await self.conn.fetch(
            "SELECT key_id, role, org_id, expires_at, revoked_at FROM api_keys ORDER BY key_id"
        )
        cached: dict[str, bytes] = {}
        async for name in self.redis.scan_iter(match=f"{self.settings.redis_prefix}:*", count=1000):
            value = await self.redis.get(name)
            if value is not None and not value.startswith(b"lease:"):  # a fill in progress is not state
                cached[name.decode()] = value
        return Snapshot(events, last, tuple(tuple(r) for r in keys), cached)

    async def settle(self, timeout: float = 20.0) -> None:
        """Until every event is published and consumed by the projector, and its invalidations are done."""
        deadline = time.monotonic() + timeout
        query = """
            SELECT (SELECT count(*) FROM event_store),
                   (SELECT count(*) FROM event_store WHERE published_at IS NULL),
                   (SELECT coalesce(sum(next_offset), 0) FROM projector_offsets
                     WHERE topic = $1 AND consumer_group = $2)
        """
        while time.monotonic() < deadline:
            events, unpublished, consumed = await self.conn.fetchrow(
                query, self.settings.topic, self.settings.projector_group
            )
            if unpublished == 0 and consumed == events:
                await asyncio.sleep(0.15)  # the projector invalidates Redis just after it commits
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"relay/projector not idle after {timeout} s")
