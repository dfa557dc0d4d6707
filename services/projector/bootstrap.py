"""Wiring: the only module that names the projector's concrete adapters (asyncpg pool, aiokafka producer, Redis).

Nothing connects at import time: the lifespan makes sure of the topics, opens the pool, the dead-letter
producer and Redis, connects the consumer's `Wiring`, and closes them all on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from faststream import FastStream
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.infra.cache_keys import CacheKeys
from services.infra.kafka import create_producer, ensure_topics
from services.infra.settings import Settings
from services.observability.endpoint import MetricsEndpoint
from services.projector.adapters import KafkaDeadLetters, RedisInvalidator
from services.projector.app import create_app
from services.projector.dependencies import Wiring
from services.projector.invalidation import BackgroundInvalidator
from services.projector.projection import Projector
from services.projector.readiness import ProjectorReadiness
from services.projector.store import PostgresStore, create_projector_pool

__all__ = ["build_app"]

log = logging.getLogger(__name__)

SHUTDOWN_DRAIN_SECONDS = 2.0


def build_app(settings: Settings) -> FastStream:
    """The projector as deployed: read models and offsets in Postgres, dead letters to Kafka, invalidations to Redis."""
    wiring = Wiring(settings)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        s = settings
        async with AsyncExitStack() as stack:
            await ensure_topics(s)
            pool = await create_projector_pool(s)
            stack.push_async_callback(pool.close)
            producer = create_producer(s)
            await producer.start()
            stack.push_async_callback(producer.stop)
            redis = Redis.from_url(
                s.redis_url,
                **s.redis_options(),
                socket_timeout=2,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 1),
            )
            stack.push_async_callback(redis.aclose)
            store = PostgresStore(pool, s.projector_group)
            redis_invalidator = RedisInvalidator(redis, CacheKeys(s.redis_prefix))
            invalidations = BackgroundInvalidator(redis_invalidator, redis_invalidator.purge)
            await _run_in_background(stack, invalidations)
            projector = Projector(store, KafkaDeadLetters(producer, s.dead_letter_topic), invalidations)
            wiring.offsets, wiring.projector = store, projector
            if wiring.metrics is not None:
                wiring.metrics.watch_invalidations(invalidations)
                lag = s.projector_ready_lag_seconds
                ready = ProjectorReadiness(wiring.metrics.lags, store.ping, max_lag_seconds=lag)
                wiring.metrics.watch(ready=ready, kill_switches=store.kill_switches)
                page = wiring.metrics.metrics
                endpoint = MetricsEndpoint(page, host=s.projector_host, port=s.projector_port, ready=ready)
                await _serve_metrics(stack, endpoint, s)
            log.info(
                "projector ready: topic %s, group %s, dead letters to %s",
                s.topic,
                s.projector_group,
                s.dead_letter_topic,
            )
            yield
            log.info("projector stopping; applied %d events in total", projector.totals.applied)

    return create_app(settings, wiring, lifespan=lifespan)


async def _run_in_background(stack: AsyncExitStack, invalidations: BackgroundInvalidator) -> None:
    """Send invalidations until shutdown, then what is still queued (bounded: a hung Redis cannot hold it up)."""
    task = asyncio.create_task(invalidations.run(), name="cache-invalidation")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(invalidations.drain(), SHUTDOWN_DRAIN_SECONDS)

    stack.push_async_callback(stop)


async def _serve_metrics(stack: AsyncExitStack, endpoint: MetricsEndpoint, settings: Settings) -> None:
    """The projector's /metrics and /readyz endpoint; a port in use is logged, and the projector projects without it."""
    try:
        await endpoint.start()
    except OSError as exc:
        log.error("metrics endpoint not started on %s:%d: %s", settings.projector_host, settings.projector_port, exc)
        return
    stack.push_async_callback(endpoint.stop)
