"""The query service with no document cache at all: for `bench.evaluation_latency`'s "no cache" figure only.

    FLAGS_...=... .venv/bin/python -m bench.query_uncached

The same server as `python -m services.query` (the product's HTTP server and the
hot path), except that its `DocumentCache` keeps nothing, in process or in Redis:
every document is read from Postgres under RLS and compiled, on every request. No
Redis client is made, so no invalidation listener runs and no evaluation is
counted. It lives in bench/ so that no service can be started this way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.__main__ import serve
from services.query.api import create_app
from services.query.bootstrap import connect, postgres_pool
from services.query.cache import DocumentCache
from services.query.site import QuerySite

log = logging.getLogger(__name__)


def uncached_app(settings: Settings) -> FastAPI:
    """`services.query.bootstrap.build_app`'s app with a cache that holds nothing and no Redis."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache = DocumentCache(None, ttl=settings.cache_ttl_seconds, local=False)
        async with postgres_pool(settings) as pool:
            connect(app, pool, cache, CacheKeys(settings.redis_prefix), usage=None)
            log.warning("caching is off (bench.query_uncached): every document is read from Postgres")
            yield

    return create_app(settings, lifespan=lifespan)


def site_from_env() -> QuerySite:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    return QuerySite(uncached_app(settings), cors=bool(settings.cors_origins))


if __name__ == "__main__":
    serve("bench.query_uncached:site_from_env")
