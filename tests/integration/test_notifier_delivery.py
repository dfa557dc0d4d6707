"""The notifier's deliveries against real HTTP receivers on 127.0.0.1 (allowed by the guard's allowlist).

No Kafka or Postgres here: the delivery log is the in-memory one of tests/support/notifier.py.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from events import OrgOverrideSet
from services.notifier.deliveries import AttemptStatus, Delivery, compose
from services.notifier.dispatcher import Dispatcher
from services.notifier.guard import AddressGuard
from services.notifier.notices import NoticeFeed
from services.notifier.retries import RetryPolicy
from services.notifier.sender import HttpSender, create_client
from services.notifier.subscriptions import Destination, DestinationKind, Subscription
from tests.support.factories import LogBuilder
from tests.support.notifier import MemoryDeliveryLog, defined
from tests.support.receivers import Receiver, always, failing, slow, verifying

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes length").decode()
LOCAL = ("127.0.0.1",)


def changes(count: int) -> list:
    log = LogBuilder()
    feed = NoticeFeed()
    feed.observe(log.append(defined("ai.insights.enabled")))  # type: ignore[arg-type]
    sealed = [log.append(OrgOverrideSet(flag_key="ai.insights.enabled", org_id="acme", enabled=i % 2 == 0))
              for i in range(count)]
    return [feed.observe(e) for e in sealed]  # type: ignore[arg-type]


def webhook(sub_id: str, url: str, secret: str = SECRET) -> Subscription:
    return Subscription(sub_id, Destination(DestinationKind.WEBHOOK, url, secret))


def deliveries(subscription: Subscription, count: int = 1) -> list[Delivery]:
    return compose(subscription, changes(count), console_url="http://console.test")


@asynccontextmanager
async def dispatcher(
    log: MemoryDeliveryLog,
    *,
    allow: tuple[str, ...] = LOCAL,
    attempts: int = 4,
    read_timeout: float = 5.0,
    response_bytes: int = 4096,
    pauses: list[float] | None = None,
) -> AsyncIterator[Dispatcher]:
    async def sleep(seconds: float) -> None:
        if pauses is not None:
            pauses.append(seconds)

    client = create_client(connect_timeout=1.0, read_timeout=read_timeout)
    sender = HttpSender(client, AddressGuard(allow), response_bytes=response_bytes)
    found = Dispatcher(sender=sender, deliveries=log, policy=RetryPolicy(attempts=attempts, base=0.5, cap=2.0),
                       rng=random.Random(3), sleep=sleep)
    try:
        yield found
    finally:
        await found.aclose()
        await client.aclose()


async def test_a_webhook_delivery_is_signed_so_the_standard_webhooks_verifier_accepts_it() -> None:
    log = MemoryDeliveryLog()
    async with Receiver(verifying(SECRET)) as receiver, dispatcher(log) as d:
        [delivery] = deliveries(webhook("signed", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
    [request] = receiver.received
    assert receiver.answered == [204]
    assert request.headers["webhook-id"] == str(delivery.event_ids[0])
    body = orjson.loads(request.body)
    assert (body["specversion"], body["id"], body["data"]["event_id"]) == ("1.0", request.headers["webhook-id"],
                                                                           request.headers["webhook-id"])
    assert [a.status for a in log.of("signed")] == [AttemptStatus.DELIVERED]
    assert log.outcomes == {("signed", delivery.event_ids[0]): "delivered"}


async def test_a_signature_with_the_wrong_secret_is_refused_by_the_receiver_and_given_up_at_once() -> None:
    log = MemoryDeliveryLog()
    other = "whsec_" + base64.b64encode(b"another secret, also 32 bytes!!!").decode()
    async with Receiver(verifying(other)) as receiver, dispatcher(log) as d:
        [delivery] = deliveries(webhook("wrong", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
    assert receiver.answered == [401]
    [dead] = log.dead
    assert (dead.reason, dead.attempts) == ("HTTP 401", 1)


async def test_a_receiver_that_fails_on_purpose_is_retried_with_backoff_until_it_answers() -> None:
    log, pauses = MemoryDeliveryLog(), []
    async with Receiver(failing(2)) as receiver, dispatcher(log, pauses=pauses) as d:
        [delivery] = deliveries(webhook("flaky", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
    assert receiver.answered == [503, 503, 200]
    attempts = log.of("flaky")
    assert [(a.number, a.status, a.http_status) for a in attempts] == [
        (1, AttemptStatus.FAILED, 503), (2, AttemptStatus.FAILED, 503), (3, AttemptStatus.DELIVERED, 200)]
    assert attempts[0].response == "down on purpose"
    assert len(pauses) == 2 and 0 <= pauses[0] <= 0.5 and 0 <= pauses[1] <= 1.0  # full jitter under each ceiling
    assert not log.dead


async def test_a_receiver_that_never_recovers_gets_the_stated_attempts_then_a_dead_letter() -> None:
    log = MemoryDeliveryLog()
    async with Receiver(always(500)) as receiver, dispatcher(log, attempts=3, pauses=[]) as d:
        [delivery] = deliveries(webhook("dead", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
    assert receiver.answered == [500, 500, 500]
    [dead] = log.dead
    assert (dead.reason, dead.attempts, dead.delivery.event_ids) == ("HTTP 500 after 3 attempts", 3,
                                                                     delivery.event_ids)
    assert log.outcomes == {("dead", delivery.event_ids[0]): "dead"}


async def test_a_slow_destination_does_not_delay_the_others() -> None:
    log = MemoryDeliveryLog()
    async with Receiver(slow(1.5)) as stalling, Receiver() as quick, dispatcher(log) as d:
        held = [d.submit(x) for x in deliveries(webhook("slow", stalling.url), 3)]
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(d.submit(x) for x in deliveries(webhook("quick", quick.url), 3))), 5)
        quick_took = time.monotonic() - started
        assert quick_took < 1.0 and not any(f.done() for f in held)
        assert d.backlog()["slow"] == 2
        await asyncio.wait_for(asyncio.gather(*held), 10)
    assert len(stalling.answered) == 3 and len(quick.answered) == 3


async def test_a_read_that_times_out_is_a_failed_attempt() -> None:
    log = MemoryDeliveryLog()
    async with Receiver(slow(3)) as stalling, dispatcher(log, attempts=2, read_timeout=0.3, pauses=[]) as d:
        [delivery] = deliveries(webhook("stalls", stalling.url))
        started = time.monotonic()
        await asyncio.wait_for(d.submit(delivery), 10)
        assert time.monotonic() - started < 2.0
    [dead] = log.dead
    assert dead.reason == "timed out (ReadTimeout) after 2 attempts"
    assert all(a.http_status is None and a.latency_ms >= 300 for a in log.of("stalls"))


async def test_one_destination_receives_in_the_order_submitted_even_across_a_retry() -> None:
    log = MemoryDeliveryLog()
    async with Receiver(failing(1)) as receiver, dispatcher(log, pauses=[]) as d:
        sent = deliveries(webhook("ordered", receiver.url), 8)
        await asyncio.wait_for(asyncio.gather(*(d.submit(x) for x in sent)), 10)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [sent[0].message_id] + [x.message_id for x in sent]


async def test_without_the_allowlist_a_loopback_destination_is_refused_and_never_contacted() -> None:
    log = MemoryDeliveryLog()
    async with Receiver() as receiver, dispatcher(log, allow=()) as d:
        [delivery] = deliveries(webhook("local", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
    assert receiver.received == []
    [attempt] = log.of("local")
    assert attempt.status is AttemptStatus.REFUSED and "http scheme" in (attempt.error or "")
    assert len(log.dead) == 1


async def test_only_the_start_of_an_answer_is_read() -> None:
    log = MemoryDeliveryLog()
    async with Receiver(always(200, b"x" * 200_000)) as receiver, dispatcher(log, response_bytes=64) as d:
        [delivery] = deliveries(webhook("chatty", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
    [attempt] = log.of("chatty")
    assert attempt.response == "x" * 64


async def test_what_was_already_delivered_is_not_sent_again() -> None:
    log = MemoryDeliveryLog()
    async with Receiver() as receiver, dispatcher(log) as d:
        [delivery] = deliveries(webhook("once", receiver.url))
        await asyncio.wait_for(d.submit(delivery), 10)
        await asyncio.wait_for(d.submit(delivery), 10)
    assert len(receiver.received) == 1


async def test_a_slack_destination_gets_block_kit_json_unsigned() -> None:
    log = MemoryDeliveryLog()
    async with Receiver() as receiver, dispatcher(log) as d:
        subscription = Subscription("slack", Destination(DestinationKind.SLACK, receiver.url))
        [delivery] = compose(subscription, changes(1), console_url="http://console.test")
        await asyncio.wait_for(d.submit(delivery), 10)
    [request] = receiver.received
    assert "webhook-signature" not in request.headers
    assert orjson.loads(request.body)["blocks"][0]["type"] == "header"
