"""Wiring: the only module that names the notifier's concrete adapters. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from granian.constants import Interfaces
from granian.server.embed import Server

from flaglog.connection import client_options
from services.auth.authenticator import Authenticator
from services.auth.http import AuthGate, use_gate
from services.auth.postgres import PostgresKeyLookup
from services.http.throttle import FailedAuthThrottle
from services.infra.kafka import ensure_topics
from services.infra.sealing import Sealer
from services.infra.settings import Settings
from services.notifier.api import NotifierApi, create_app
from services.notifier.consumer import ChangeConsumer
from services.notifier.directory import SubscriptionDirectory
from services.notifier.dispatcher import Dispatcher
from services.notifier.guard import AddressGuard
from services.notifier.metrics import NotifierMetrics
from services.notifier.operations import Operations
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
    """Run the notifier, and its HTTP endpoint on `notifier_host:notifier_port`, until `stop` is set."""
    s = settings
    directory = SubscriptionDirectory(subscription_sealer(s))
    metrics = NotifierMetrics()
    async with AsyncExitStack() as stack:
        await ensure_topics(s)
        pool = await create_notifier_pool(s)
        stack.push_async_callback(pool.close)
        client = create_client(connect_timeout=s.notifier_connect_timeout, read_timeout=s.notifier_read_timeout)
        stack.push_async_callback(client.aclose)
        sender = HttpSender(client, AddressGuard(s.notifier_allow_hosts), response_bytes=s.notifier_response_bytes)
        policy = RetryPolicy(attempts=s.notifier_max_attempts, base=s.notifier_backoff_base, cap=s.notifier_backoff_cap)
        deliveries = PostgresDeliveryLog(pool, kept=s.notifier_attempts_kept)
        dispatcher = Dispatcher(sender=sender, deliveries=deliveries, policy=policy, observer=metrics)
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
        metrics.read_state(
            lag=consumer.lag, queued=lambda: sum(dispatcher.backlog().values()), caught_up=lambda: consumer.caught_up
        )
        operations = Operations(
            directory=directory, reads=deliveries, submit=dispatcher.submit, caught_up=lambda: consumer.caught_up
        )
        app = create_app(NotifierApi(operations, deliveries, lambda: consumer.caught_up), metrics)
        use_gate(app, AuthGate(Authenticator(PostgresKeyLookup(pool)), throttle=FailedAuthThrottle()))
        await kafka.start()
        stack.push_async_callback(kafka.stop)
        await _serve(stack, app, s)
        kafka.subscribe([s.topic], listener=consumer.listener())
        log.info("notifier ready: topic %s, group %s", s.topic, s.notifier_group)
        await consumer.run(stop)
        log.info("notifier stopping")


async def _serve(stack: AsyncExitStack, app: FastAPI, settings: Settings) -> None:
    """The HTTP endpoint on the notifier's own loop (granian embedded, as the command service), stopped first.

    As the projector's: if it cannot serve (the port is taken), that is logged and the notifier delivers without it.
    """
    host, port = settings.notifier_host, settings.notifier_port
    server = Server(app, address=host, port=port, interface=Interfaces.ASGI, log_access=False)
    serving = asyncio.create_task(server.serve(), name="notifier-http")

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            reason = str(task.exception()).splitlines()[0]
            log.error("notifier API not served on %s:%d (%s); delivering without it", host, port, reason)

    serving.add_done_callback(ended)

    async def stop() -> None:
        if not serving.done():
            server.stop()
        await asyncio.gather(serving, return_exceptions=True)

    stack.push_async_callback(stop)
    log.info("notifier API on http://%s:%d (/healthz, /readyz, /metrics, /v1)", host, port)
