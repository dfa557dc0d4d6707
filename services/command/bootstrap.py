"""Wiring: the only module that names the concrete adapters (asyncpg pool, aiokafka producer).

Nothing connects at import time: the lifespan opens the pool and starts the
relay, and closes both on shutdown. Neither Postgres nor Kafka being down stops
the process from starting: `/readyz` reports Postgres, and the relay retries
Kafka (including topic creation) in the background while the API accepts writes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.auth.authenticator import Authenticator
from services.auth.http import AuthGate, use_gate
from services.auth.postgres import PostgresKeyLookup
from services.command.api import create_app
from services.command.dependencies import wiring_of
from services.command.errors import StoreUnavailable
from services.command.eventstore.audit_reads import PostgresAuditStore
from services.command.eventstore.segment_store import PostgresSegmentStore
from services.command.eventstore.snapshot_store import PostgresHistory
from services.command.eventstore.writes import PostgresEventStore
from services.command.key_store import PostgresKeyStore
from services.command.log_acknowledgements import PostgresLogAcknowledgements
from services.command.published_log import KafkaPublishedLog
from services.command.relay import Relay
from services.command.subscription_store import PostgresSubscriptionStore
from services.command.timetravel.service import TimeTravel
from services.http.throttle import FailedAuthThrottle
from services.infra.kafka import create_producer, ensure_topics, probe
from services.infra.postgres import create_pool
from services.infra.sealing import Sealer
from services.infra.settings import Role, Settings

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # min_size=0: start even when Postgres is down; /readyz says so until it is back.
        pool = await create_pool(settings, Role.COMMAND, min_size=0)
        store = PostgresEventStore(pool, dsn=settings.pg_dsn(Role.COMMAND))
        relay = Relay(
            store,
            lambda: create_producer(settings),
            topic=settings.topic,
            prepare=lambda: ensure_topics(settings),
            published=KafkaPublishedLog(settings),
            probe=probe,  # type: ignore[arg-type]  # the relay's producer is the one create_producer made
        )
        wiring = wiring_of(app)
        wiring.connect(store, relay=relay)
        wiring.keys = PostgresKeyStore(pool)
        wiring.timetravel = TimeTravel(PostgresHistory(pool))
        wiring.audit = PostgresAuditStore(pool)
        wiring.subscriptions = PostgresSubscriptionStore(pool)
        wiring.acknowledgements = PostgresLogAcknowledgements(pool)
        wiring.segments = PostgresSegmentStore(pool)
        if settings.subscription_key is not None:  # checked at start: a bad key stops it, not the first request
            wiring.sealer = Sealer(settings.subscription_key.get_secret_value())
        else:
            log.warning("FLAGS_SUBSCRIPTION_KEY is not set: notification subscriptions cannot be created")
        use_gate(app, AuthGate(Authenticator(PostgresKeyLookup(pool)), throttle=FailedAuthThrottle()))
        try:
            await store.ping()
        except StoreUnavailable as exc:
            log.warning("PostgreSQL unreachable at start (%s); /readyz reports 503 until it is back", exc)
        await relay.start()
        log.info("command service ready: topic %s, database %s", settings.topic, settings.pg_database)
        try:
            yield
        finally:
            await relay.stop()
            await pool.close()

    return create_app(settings, lifespan=lifespan)
