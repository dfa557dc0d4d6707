"""Wiring: the only module that names the notifier's concrete adapters. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
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
from services.notifier.alerting import AlertTeller
from services.notifier.alerts import LagAlarm
from services.notifier.api import NotifierApi, create_app
from services.notifier.consumer import ChangeConsumer
from services.notifier.directory import SubscriptionDirectory
from services.notifier.dispatcher import Dispatcher
from services.notifier.guard import AddressGuard
from services.notifier.metrics import NotifierMetrics
from services.notifier.operations import Operations
from services.notifier.positions import KafkaEnds, ProjectorPositions
from services.notifier.retries import RetryPolicy
from services.notifier.sender import HttpSender, create_client
from services.notifier.store import PostgresDeliveryLog, create_notifier_pool
from services.notifier.watches import DeadLetterWatch, LagWatch

__all__ = ["run", "subscription_sealer"]

Watch = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

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
        teller = AlertTeller(lambda: directory.current, dispatcher.submit, told=metrics.alerted)
        consumer = ChangeConsumer(
            kafka, topic=s.topic, dispatcher=dispatcher, directory=directory, console_url=s.notifier_console_url,
            alerts=teller,
        )  # fmt: skip
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
        watches = _watches(s, pool, kafka, teller, lambda: consumer.caught_up)
        await stack.enter_async_context(_running(watches, stop))
        await consumer.run(stop)
        log.info("notifier stopping")


def _watches(
    s: Settings, pool: asyncpg.Pool, kafka: AIOKafkaConsumer, teller: AlertTeller,
    ready: Callable[[], bool],
) -> list[Watch]:
    """The dead-letter and lag watches (their alerts go to the subscriptions that opted in)."""
    dead = AIOKafkaConsumer(
        **client_options(s),
        group_id=f"{s.notifier_group}-dead-letters",
        client_id="flagstream-notifier-dead-letters",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    positions = ProjectorPositions(pool, group=s.projector_group, topic=s.topic)
    alarm = LagAlarm(threshold_seconds=s.notifier_alert_lag_seconds, topic=s.topic, group=s.projector_group)
    lag = LagWatch(ends=KafkaEnds(kafka, topic=s.topic).ends, applied=positions.applied, alarm=alarm, teller=teller,
                   ready=ready, interval=s.notifier_lag_interval)  # fmt: skip

    async def dead_letters(stop: asyncio.Event) -> None:
        await dead.start()
        try:
            dead.subscribe([s.dead_letter_topic])
            await DeadLetterWatch(dead, topic=s.dead_letter_topic, teller=teller, ready=ready).run(stop)
        finally:
            await dead.stop()

    return [dead_letters, lag.run]


@asynccontextmanager
async def _running(watches: list[Watch], stop: asyncio.Event
                   ) -> AsyncIterator[None]:  # fmt: skip
    """Run each watch as a task until `stop`; one that fails is logged, and the notifier delivers changes on."""
    tasks = [asyncio.create_task(watch(stop), name=f"notifier-watch-{i}") for i, watch in enumerate(watches)]

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("alert watch %s stopped: %r", task.get_name(), task.exception())

    for task in tasks:
        task.add_done_callback(ended)
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


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
