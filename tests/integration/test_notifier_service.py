"""The notifier process on the real Kafka and Postgres, telling a real receiver on 127.0.0.1.

Changes are sealed by `LogBuilder` and produced to the topic as the relay would, after a
`SubscriptionCreated` sealed with the test key; the notifier runs as `python -m services.notifier`,
folds its subscription from the topic, and is stopped (SIGTERM) or killed (SIGKILL)
and started again: every change reaches the receiver, and none is delivered twice.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from events import Envelope, OrgOverrideSet, to_record
from services.infra.postgres import create_pool, tenant_transaction
from services.infra.sealing import Sealer
from services.infra.settings import Role, Settings
from tests.support.factories import LogBuilder
from tests.support.kafka import produce
from tests.support.metrics import scrape, wait_for_page
from tests.support.notifier import defined, subscribed
from tests.support.processes import ServiceProcess
from tests.support.receivers import Answer, Received, Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"integration secret, 32 bytes ok").decode()


@pytest.fixture
def db(make_settings: Callable[[], Settings]) -> Settings:
    """A fresh database and topic (and consumer group) of the test's own."""
    return make_settings()


def notifier_settings(db: Settings) -> Settings:
    return db.model_copy(update={
        "notifier_allow_hosts": ["127.0.0.1"],
        "notifier_backoff_base": 0.05,
        "notifier_backoff_cap": 0.2,
        "notifier_max_attempts": 1000,  # the receiver that is down comes back; nothing is dead-lettered here
    })


def subscription(settings: Settings, log: LogBuilder, url: str) -> Envelope:
    assert settings.subscription_key is not None
    sealer = Sealer(settings.subscription_key.get_secret_value())
    envelope = log.append(subscribed(sealer, "everything", url, secret=SECRET))
    assert envelope is not None
    return envelope


def changes(log: LogBuilder, count: int, org: str = "acme") -> list[Envelope]:
    sealed = [log.append(OrgOverrideSet(flag_key="ai.insights.enabled", org_id=org, enabled=i % 2 == 0))
              for i in range(count)]
    return [e for e in sealed if e is not None]


async def publish(settings: Settings, envelopes: list[Envelope]) -> None:
    await produce(settings, [to_record(e) for e in envelopes])


async def delivered_ids(receiver: Receiver, count: int, timeout: float = 30.0) -> list[str]:
    """The webhook-ids the receiver accepted (answered 2xx), once there are `count` of them (or the time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        accepted = accepted_ids(receiver)
        if len(accepted) >= count:
            return accepted
        await asyncio.sleep(0.05)
    return accepted_ids(receiver)


def accepted_ids(receiver: Receiver) -> list[str]:
    return [r.headers["webhook-id"] for r, status in zip(receiver.received, receiver.answered, strict=False)
            if 200 <= status < 300]


async def outcomes(settings: Settings) -> dict[str, str]:
    pool = await create_pool(settings, Role.NOTIFIER, min_size=1, max_size=1)
    try:
        async with tenant_transaction(pool, None) as conn:  # a system-wide subscription's rows
            rows = await conn.fetch("SELECT event_id, outcome FROM notifier_outcomes")
    finally:
        await pool.close()
    return {str(r["event_id"]): r["outcome"] for r in rows}


async def test_a_restart_resumes_without_losing_or_resending_a_change(
    db: Settings, tmp_path: Path
) -> None:
    async with Receiver() as receiver:
        settings = notifier_settings(db)
        log = LogBuilder()
        told = subscription(settings, log, receiver.url)
        first = [e for e in [log.append(defined("ai.insights.enabled"))] if e] + changes(log, 10)
        await publish(settings, [told, *first])
        notifier = ServiceProcess("notifier", settings, tmp_path).start()
        try:
            got = await delivered_ids(receiver, len(first))
            assert got == [str(e.event_id) for e in first], notifier.tail()
            assert len(await outcomes(settings)) == len(first)
            endpoint = f"http://127.0.0.1:{settings.notifier_port}"
            assert httpx.get(f"{endpoint}/readyz").json() == {"status": "ready", "postgres": "ok"}
            page = scrape(endpoint)
            assert page.value("flagstream_notifier_deliveries_total", outcome="delivered", destination="webhook") \
                == len(first)
            wait_for_page(endpoint, lambda p: p.total("flagstream_notifier_consumer_lag_records") == 0)  # committed
            notifier.stop()  # SIGTERM: commits what is recorded
            second = changes(log, 10)
            await publish(settings, second)  # while the notifier is down
            notifier.start()
            everything = [str(e.event_id) for e in first + second]
            got = await delivered_ids(receiver, len(everything))
            await asyncio.sleep(1.0)  # a resend would come now, right after the replay
            assert accepted_ids(receiver) == everything, notifier.tail()
            assert await outcomes(settings) == dict.fromkeys(everything, "delivered")
        finally:
            notifier.stop()


async def test_a_crash_while_a_destination_is_down_loses_nothing_and_resends_nothing_delivered(
    db: Settings, tmp_path: Path
) -> None:
    up = {"answering": True}

    def respond(request: Received, index: int) -> Answer:
        return Answer() if up["answering"] else Answer(503, b"down on purpose")

    async with Receiver(respond) as receiver:
        settings = notifier_settings(db)
        log = LogBuilder()
        told = subscription(settings, log, receiver.url)
        first = [e for e in [log.append(defined("ai.insights.enabled"))] if e] + changes(log, 5)
        await publish(settings, [told, *first])
        notifier = ServiceProcess("notifier", settings, tmp_path).start()
        try:
            assert len(await delivered_ids(receiver, len(first))) == len(first), notifier.tail()
            up["answering"] = False
            second = changes(log, 5)
            await publish(settings, second)
            deadline = time.monotonic() + 20
            while receiver.answered.count(503) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the notifier is retrying the first of the second lot
            assert receiver.answered.count(503) >= 3, notifier.tail()
            notifier.kill()  # SIGKILL, mid-retry: nothing of the second lot was delivered or committed
            up["answering"] = True
            notifier.start()
            everything = [str(e.event_id) for e in first + second]
            await delivered_ids(receiver, len(everything))
            await asyncio.sleep(1.0)
            assert accepted_ids(receiver) == everything, notifier.tail()
        finally:
            notifier.stop()


async def test_a_taken_port_is_logged_and_the_notifier_delivers_without_its_endpoint(
    db: Settings, tmp_path: Path
) -> None:
    async with Receiver() as receiver:
        settings = notifier_settings(db)
        log = LogBuilder()
        told = subscription(settings, log, receiver.url)
        sent = [e for e in [log.append(defined("ai.insights.enabled"))] if e] + changes(log, 3)
        await publish(settings, [told, *sent])
        with socket.socket() as taken:
            taken.bind((settings.notifier_host, settings.notifier_port))
            taken.listen()
            notifier = ServiceProcess("notifier", settings, tmp_path).start()
            try:
                assert await delivered_ids(receiver, len(sent)) == [str(e.event_id) for e in sent], notifier.tail()
                assert "notifier API not served on" in notifier.tail(200)
            finally:
                notifier.stop()
        assert notifier.proc is not None and notifier.proc.returncode == 0, notifier.tail()  # a clean stop
