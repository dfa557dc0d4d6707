"""Wiring: the only module that names the query service's concrete adapters (asyncpg pool, Redis).

Nothing connects at import time: the lifespan opens the pool, Redis, the
invalidation listener and the usage flusher, connects the app's `Wiring`, and
closes them all on shutdown. Postgres being down does not stop the start (the
routes answer 503 and `/readyz` reports it until it is back); Redis is only a
cache: the documents are read from Postgres while it is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.auth.authenticator import Authenticator
from services.auth.http import AuthGate, gate_of, use_gate
from services.auth.postgres import PostgresKeyLookup
from services.http.throttle import FailedAuthThrottle
from services.infra.cache_keys import CacheKeys
from services.infra.postgres import create_pool
from services.infra.settings import Role, Settings
from services.observability.logs import configure_logging
from services.observability.tally import flush_every
from services.query.adapters import (
    DRIVER_ERRORS,
    InvalidationListener,
    PostgresDocuments,
    PostgresPositions,
    RedisDocuments,
)
from services.query.api import create_app
from services.query.cache import DocumentCache
from services.query.changes_stream import ChangeHub, StreamSettings
from services.query.dependencies import wiring_of
from services.query.metrics import FLUSH_SECONDS
from services.query.ofrep_code_defaults import defer_to_code
from services.query.service import QueryService
from services.query.snapshots import PostgresSnapshots
from services.query.usage import UsageStore, flush_forever
from services.query.usage_redis import FAILURES as USAGE_FAILURES
from services.query.usage_redis import RedisUsage

__all__ = ["app_from_env", "build_app", "change_hub", "connect", "postgres_pool"]

log = logging.getLogger(__name__)
KEY_REFRESH_AFTER = 0.25  # s: half the key cache's life (services.auth.authenticator)


def build_app(settings: Settings | None = None) -> FastAPI:
    """The query app as deployed: documents cached in process and in Redis, evaluations counted in Redis."""
    settings = settings if settings is not None else Settings()
    defer_to_code(settings.ofrep_code_defaults)  # before any OFREP answer is rendered

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings
        keys = CacheKeys(s.redis_prefix)
        redis = Redis.from_url(
            s.redis_url,
            **s.redis_options(),
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 1),
        )
        cache = DocumentCache(RedisDocuments(redis), ttl=s.cache_ttl_seconds)
        usage = RedisUsage(redis, s.redis_prefix)
        wiring = wiring_of(app)
        async with postgres_pool(s) as pool:
            hub = change_hub(s, pool, cache)
            listener = asyncio.create_task(InvalidationListener(redis, keys, cache, also=hub.invalidated).run())
            streams = asyncio.create_task(hub.run())
            flusher = asyncio.create_task(flush_forever(wiring.counter, usage, failures=USAGE_FAILURES))
            metrics = asyncio.create_task(flush_every(FLUSH_SECONDS, wiring.metrics.flush))
            connect(app, pool, cache, keys, usage=usage)
            wiring.changes = hub
            try:
                yield
            finally:
                for task in (listener, streams, flusher, metrics):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await redis.aclose()

    return create_app(settings, lifespan=lifespan)


def change_hub(settings: Settings, pool: asyncpg.Pool, cache: DocumentCache) -> ChangeHub:
    """OFREP's change streams of this worker: positions from the read models, woken by the invalidations."""
    limits = StreamSettings(
        max_subscribers=settings.ofrep_stream_max_subscribers,
        heartbeat_seconds=settings.ofrep_stream_heartbeat_seconds,
    )
    return ChangeHub(PostgresPositions(pool), limits, online=lambda: cache.online)


@asynccontextmanager
async def postgres_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The query role's pool, closed on the way out; opened empty when Postgres is down, to serve 503s meanwhile."""
    try:
        pool = await create_pool(settings, Role.QUERY, min_size=2, max_size=10)
    except DRIVER_ERRORS as exc:  # serve (503s) and report not ready until it is up
        log.error("Postgres unreachable at start: %r", exc)
        pool = await create_pool(settings, Role.QUERY, min_size=0, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


def connect(
    app: FastAPI, pool: asyncpg.Pool, cache: DocumentCache, keys: CacheKeys, *, usage: UsageStore | None
) -> None:
    """Plug the Postgres adapters, `cache` and `usage` into the app's `Wiring`; authenticate with the keys in
    Postgres unless the app was given a gate already."""
    settings = wiring_of(app).settings
    source = PostgresDocuments(pool)
    if gate_of(app) is None:
        # A key in use is read again in the background at half its cache life: evaluations never wait on it.
        authenticator = Authenticator(PostgresKeyLookup(pool), refresh_after=KEY_REFRESH_AFTER)
        use_gate(app, AuthGate(authenticator, throttle=FailedAuthThrottle()))
    wiring_of(app).connect(
        QueryService(cache, source, keys),
        ping=source.ping,
        usage=usage,
        override_counts=source,
        snapshots=PostgresSnapshots(pool, topic=settings.topic, projector_group=settings.projector_group),
    )


def app_from_env() -> FastAPI:
    """Factory for the server (`services.query.site`): settings from the `FLAGS_*` environment."""
    settings = Settings()
    configure_logging(settings.log_format)
    return build_app(settings)
