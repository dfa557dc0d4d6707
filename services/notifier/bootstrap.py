"""Wiring: the only module that names the notifier's concrete adapters. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaConsumer

from flaglog.connection import client_options
from services.infra.kafka import ensure_topics
from services.infra.sealing import Sealer
from services.infra.settings import Settings
from services.notifier.consumer import ChangeConsumer
from services.notifier.directory import SubscriptionDirectory
from services.notifier.dispatcher import Dispatcher
from services.notifier.guard import AddressGuard
from services.notifier.retries import RetryPolicy
from services.notifier.sender import HttpSender, create_client
from services.notifier.store import PostgresDeliveryLog, create_notifier_pool

__all__ = ["run", "subscription_sealer"]

log = logging.getLogger(__name__)


def subscription_sealer(settings: Settings) -> Sealer | None:
    """The key that opens the subscriptions' secrets; without one, no subscription is delivered to."""
    if settings.subscription_key is None:
        log.warning("FLAGS_SUBSCRIPTION_KEY is not set: no subscription's secrets open, nobody is told")
        return None
    return Sealer(settings.subscription_key.get_secret_value())


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run the notifier until `stop` is set."""
    s = settings
    directory = SubscriptionDirectory(subscription_sealer(s))
    async with AsyncExitStack() as stack:
        await ensure_topics(s)
        pool = await create_notifier_pool(s)
        stack.push_async_callback(pool.close)
        client = create_client(connect_timeout=s.notifier_connect_timeout, read_timeout=s.notifier_read_timeout)
        stack.push_async_callback(client.aclose)
        sender = HttpSender(client, AddressGuard(s.notifier_allow_hosts), response_bytes=s.notifier_response_bytes)
        policy = RetryPolicy(attempts=s.notifier_max_attempts, base=s.notifier_backoff_base, cap=s.notifier_backoff_cap)
        dispatcher = Dispatcher(
            sender=sender, deliveries=PostgresDeliveryLog(pool, kept=s.notifier_attempts_kept), policy=policy
        )
        stack.push_async_callback(dispatcher.aclose)
        kafka = AIOKafkaConsumer(
            **client_options(s),
            group_id=s.notifier_group,
            client_id="flagstream-notifier",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        consumer = ChangeConsumer(
            kafka, topic=s.topic, dispatcher=dispatcher, directory=directory, console_url=s.notifier_console_url
        )
        await kafka.start()
        stack.push_async_callback(kafka.stop)
        kafka.subscribe([s.topic], listener=consumer.listener())
        log.info("notifier ready: topic %s, group %s", s.topic, s.notifier_group)
        await consumer.run(stop)
        log.info("notifier stopping")
