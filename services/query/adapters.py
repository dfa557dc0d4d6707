"""The query service's adapters: Postgres documents (under RLS), the Redis cache and its invalidations."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.infra.cache_keys import CacheKeys
from services.infra.pg_errors import UNREACHABLE
from services.infra.postgres import tenant_transaction
from services.query.cache import CacheError, DocumentCache
from services.query.documents import catalog_document, dumps, org_document, user_document
from services.query.errors import Unavailable

log = logging.getLogger(__name__)

FLAGS_SQL = (
    "SELECT flag_key, kind, description, owner, grp, archived, version, event_id, actor, reason, updated_at, "
    "killed, variants::text, expires_at, value_type, variant_values::text, default_variant, off_variant FROM flags"
)
SYSTEM_SQL = (
    "SELECT flag_key, enabled, rollout_percentage, stream, version, event_id, actor, reason, updated_at, "
    "schedule::text, variant, split::text FROM system_defaults"
)
_RULES_COLUMNS = "stream, flag_key, rules::text, version, event_id, actor, reason, updated_at"
SYSTEM_RULES_SQL = f"SELECT {_RULES_COLUMNS} FROM targeting_rules WHERE org_id IS NULL"
ORG_RULES_SQL = f"SELECT {_RULES_COLUMNS} FROM targeting_rules WHERE org_id = $1"
_OVERRIDE_COLUMNS = (
    "level, platform, flag_key, enabled, rollout_percentage, stream, version, event_id, actor, reason, updated_at, "
    "schedule::text, variant, split::text"
)
# Every override of the org with pending steps (user level included), for the schedule listing.
SCHEDULED_SQL = (
    "SELECT level, platform, user_id, flag_key, schedule::text FROM overrides "
    "WHERE org_id = $1 AND schedule IS NOT NULL ORDER BY flag_key, level, platform, user_id"
)
ORG_SQL = f"SELECT {_OVERRIDE_COLUMNS} FROM overrides WHERE org_id = $1 AND level IN ('org', 'platform')"
USER_SQL = (
    f"SELECT {_OVERRIDE_COLUMNS} FROM overrides WHERE org_id = $1 AND level = 'user' AND platform = '' AND user_id = $2"
)


# An org's position in the log, for its change stream (services.query.changes_stream): the projected events it
# can see, its own and the system's. Two counts over `flag_history_org (org_id, sequence)`; the RLS scope of the
# transaction (this org) applies as well.
POSITION_SQL = (
    "SELECT (SELECT count(*) FROM flag_history WHERE org_id = $1) "
    "+ (SELECT count(*) FROM flag_history WHERE org_id IS NULL)"
)

OVERRIDE_COUNTS_SQL = "SELECT flag_key, orgs, overrides FROM flag_override_counts WHERE overrides > 0 ORDER BY flag_key"


# Postgres out of reach (services.infra.pg_errors, as every service defines it), and also any error the server
# answers a read with: the reads take nothing from the caller that could be to blame, so it is a 503 too.
DRIVER_ERRORS = (*UNREACHABLE, asyncpg.PostgresError)


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """The one translation of asyncpg's failures into the query service's own: `Unavailable("postgres")`."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise Unavailable("postgres", str(exc) or type(exc).__name__) from exc


class PostgresDocuments:
    """Builds documents from the read models; every read in a transaction scoped to its tenant."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def catalog(self) -> bytes:
        async with self._read(None) as conn:
            flags = await conn.fetch(FLAGS_SQL)
            system = await conn.fetch(SYSTEM_SQL)
            rules = await conn.fetch(SYSTEM_RULES_SQL)
        return dumps(catalog_document(flags, system, rules))

    async def org(self, org_id: str) -> bytes:
        async with self._read(org_id) as conn:
            rows = await conn.fetch(ORG_SQL, org_id)
            rules = await conn.fetch(ORG_RULES_SQL, org_id)
        return dumps(org_document(org_id, rows, rules))

    async def user(self, org_id: str, user_id: str) -> bytes:
        async with self._read(org_id) as conn:
            rows = await conn.fetch(USER_SQL, org_id, user_id)
        return dumps(user_document(org_id, user_id, rows))

    async def scheduled(self, org_id: str) -> list[dict[str, Any]]:
        """The org's overrides that have a schedule: `level, platform, user_id, flag_key, schedule` (JSON list)."""
        async with self._read(org_id) as conn:
            rows = await conn.fetch(SCHEDULED_SQL, org_id)
        return [{**dict(r), "schedule": orjson.loads(r["schedule"])} for r in rows]

    async def override_counts(self) -> list[dict[str, Any]]:
        """Per flag, how many orgs override it and with how many overrides: the projector's system table."""
        async with self._read(None) as conn:
            rows = await conn.fetch(OVERRIDE_COUNTS_SQL)
        return [dict(r) for r in rows]

    @asynccontextmanager
    async def _read(self, org_id: str | None) -> AsyncIterator[asyncpg.Connection]:
        async with translated(), tenant_transaction(self._pool, org_id) as conn:
            yield conn

    async def ping(self) -> bool:
        try:
            await self._pool.fetchval("SELECT 1", timeout=2)
        except DRIVER_ERRORS:
            return False
        return True


class PostgresPositions:
    """`changes_stream.Positions` over the read models: how many projected events an org can see."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def position(self, org_id: str) -> int:
        async with translated(), tenant_transaction(self._pool, org_id) as conn:
            count = await conn.fetchval(POSITION_SQL, org_id)
        return int(count or 0)


# --- Redis ---------------------------------------------------------------------------------------

GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value then return value end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
FILL_UNDER_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""
LEASE_PREFIX = b"lease:"
LEASE_MS = 5000


class RedisDocuments:
    """The shared cache level: JSON documents with a TTL, filled under a lease."""

    def __init__(self, redis: Redis) -> None:
        self._get_or_lease = redis.register_script(GET_OR_LEASE)
        self._fill = redis.register_script(FILL_UNDER_LEASE)

    async def get_or_lease(self, key: str) -> tuple[bytes | None, str | None]:
        lease = f"lease:{uuid.uuid4().hex}"
        try:
            found = await self._get_or_lease(keys=[key], args=[lease, LEASE_MS])
        except (RedisError, OSError) as exc:
            raise CacheError(str(exc)) from exc
        if isinstance(found, bytes):
            return (None, None) if found.startswith(LEASE_PREFIX) else (found, None)
        return (None, lease) if found == 1 else (None, None)

    async def fill(self, key: str, lease: str, value: bytes, ttl: int) -> bool:
        try:
            return bool(await self._fill(keys=[key], args=[lease, value, ttl]))
        except (RedisError, OSError) as exc:
            raise CacheError(str(exc)) from exc


EVERY_DOCUMENT = "*"  # what a purge message names


def invalidated_key(keys: CacheKeys, message: bytes) -> str | None:
    """The document an invalidation message names, `EVERY_DOCUMENT` for a purge (None: unreadable)."""
    try:
        body = orjson.loads(message)
        scope = body["scope"]
        if scope == "all":
            return EVERY_DOCUMENT
        if scope == "catalog":
            return keys.catalog
        if scope == "org":
            return keys.org(body["org_id"])
        if scope == "user":
            return keys.user(body["org_id"], body["user_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return None


class InvalidationListener:
    """Keeps `cache.online` true only while subscribed, and drops documents as messages arrive."""

    # A Redis that stops answering (hung, SIGSTOP, a dead link) without closing the connection is
    # noticed within SILENCE_LIMIT: the in-process level goes off and reads bypass Redis until it answers.
    PING_EVERY = 1.0
    SILENCE_LIMIT = 3.0

    def __init__(
        self,
        redis: Redis,
        keys: CacheKeys,
        cache: DocumentCache,
        *,
        retry_delay: float = 1.0,
        also: Callable[[bytes | None], None] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._cache = cache
        self._retry_delay = retry_delay
        self._also = also  # told every message too (None: subscribed again), e.g. the OFREP change streams
        self.messages = 0

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._cache.online:
                    log.warning("invalidation subscription lost (in-process cache off): %r", exc)
                else:
                    log.debug("invalidation subscription unavailable: %r", exc)
            self._cache.online = False
            await asyncio.sleep(self._retry_delay)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._keys.invalidation_channel)
            heard = pinged = time.monotonic()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is not None:
                    heard = now
                    self._on(message)
                if now - pinged > self.PING_EVERY:
                    await pubsub.ping()
                    pinged = now
                if now - heard > self.SILENCE_LIMIT:
                    raise TimeoutError("no answer to pings on the invalidation subscription")
        finally:
            self._cache.online = False
            await pubsub.aclose()

    def _on(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            # (Re)subscribed: anything published while away is unknown, so start empty.
            self._cache.clear()
            self._cache.online = True
            log.info("invalidation subscription connected; in-process cache on")
            if self._also is not None:
                self._also(None)
        elif kind == "message":
            self.messages += 1
            key = invalidated_key(self._keys, message["data"])
            if key is None:
                log.warning("unreadable invalidation message %r; clearing the in-process cache", message["data"])
                self._cache.clear()
            elif key == EVERY_DOCUMENT:
                log.info("the projector purged the cache; in-process cache cleared")
                self._cache.clear()
            else:
                self._cache.invalidate(key)
            if self._also is not None:
                self._also(message["data"])
