"""Wiring: the only module that names the console's concrete adapters (Redis sessions, the APIs over httpx,
the topic followed with aiokafka).

Nothing connects at import time: the lifespan opens Redis and the HTTP client, starts following the topic,
connects the app's `Wiring`, and closes them all on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis
from starlette.applications import Starlette

from services.console.app import create_app
from services.console.client import HttpApi
from services.console.dependencies import wiring_of
from services.console.live import TopicFeed
from services.console.sessions import RedisSessionStore
from services.infra.settings import Settings
from services.observability.logs import configure_logging

__all__ = ["app_from_env", "build_app"]


def build_app(settings: Settings) -> Starlette:
    """The console as deployed: sessions in Redis, the command and query APIs over HTTP, the topic followed live."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        wiring = wiring_of(app)
        redis = Redis.from_url(settings.redis_url, **settings.redis_options())
        wiring.sessions = RedisSessionStore(redis, prefix=settings.redis_prefix, idle=settings.console_idle_seconds)
        http = httpx.AsyncClient(timeout=10.0)
        command = f"http://{settings.command_host}:{settings.command_port}"
        query = f"http://{settings.query_host}:{settings.query_port}"
        notifier = f"http://{settings.notifier_host}:{settings.notifier_port}"
        wiring.api_for = lambda key: HttpApi(http, command_url=command, query_url=query, key=key,
                                             notifier_url=notifier)  # fmt: skip
        feed = TopicFeed(settings, wiring.broadcaster)
        wiring.feed = feed
        feed_task = asyncio.create_task(feed.run())
        try:
            yield
        finally:
            feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed_task
            await http.aclose()
            await redis.aclose()

    return create_app(settings, lifespan=lifespan)


def app_from_env() -> Starlette:
    """Factory for granian: settings from the `FLAGS_*` environment."""
    settings = Settings()
    configure_logging(settings.log_format)
    return build_app(settings)
