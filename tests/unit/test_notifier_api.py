"""The notifier's HTTP surface over fakes of its ports: probes, the delivery log, dead letters, "retry now", metrics.

The directory folds real subscription events; the dispatcher is the real one, sending through a
scripted sender; the delivery log and the key store are the in-memory ones of the tests.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from events import OrgOverrideSet, SubscriptionPaused
from services.auth.http import use_gate
from services.auth.policy import Role
from services.infra.sealing import Sealer, new_key
from services.notifier.api import NotifierApi, create_app
from services.notifier.deliveries import Attempt, AttemptStatus, Delivery, compose
from services.notifier.directory import SubscriptionDirectory
from services.notifier.dispatcher import Dispatcher
from services.notifier.metrics import NotifierMetrics
from services.notifier.notices import NoticeFeed
from services.notifier.operations import Operations
from services.notifier.retries import RetryPolicy
from tests.support.auth import MemoryKeys, bearer, memory_gate
from tests.support.factories import LogBuilder
from tests.support.metrics import parse
from tests.support.notifier import MemoryDeliveryLog, defined, subscribed

SEALER = Sealer(new_key())
SECRET = "whsec_" + base64.b64encode(b"unit secret of the api, 32 bytes").decode()
ORG = "acme"
HOOK = "https://hooks.example/acme"


class ScriptedSender:
    """Answers each attempt with the next status of `statuses` (then 200), recording what it was asked to send."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.sent: list[Delivery] = []

    async def send(self, delivery: Delivery, number: int) -> Attempt:
        self.sent.append(delivery)
        status = self.statuses.pop(0) if self.statuses else 200
        ok = status < 300
        return Attempt(delivery, number, AttemptStatus.DELIVERED if ok else AttemptStatus.FAILED, status, 12.5,
                       None if ok else f"HTTP {status}")  # fmt: skip


@dataclass
class Notifier:
    http: httpx.AsyncClient
    log: MemoryDeliveryLog
    sender: ScriptedSender
    dispatcher: Dispatcher
    keys: MemoryKeys
    builder: LogBuilder
    directory: SubscriptionDirectory
    caught_up: list[bool]

    def key(self, role: Role, org: str | None = ORG) -> dict[str, str]:
        return bearer(self.keys.issue(role, org))

    async def dead_letter_one(self) -> Delivery:
        """A change the destination refuses (410): one dead letter."""
        feed = NoticeFeed()
        for envelope in self.builder.events:
            feed.observe(envelope)
        change = self.builder.append(OrgOverrideSet(flag_key="ai.insights.enabled", org_id=ORG, enabled=True))
        assert change is not None
        notice = feed.observe(change)
        assert notice is not None
        [subscription] = [s for s in self.directory.current if s.id == "ops"]
        [delivery] = compose(subscription, [notice], console_url="http://console.test")
        self.sender.statuses.append(410)
        await asyncio.wait_for(self.dispatcher.submit(delivery), 5)
        return delivery


@pytest.fixture
async def notifier() -> AsyncIterator[Notifier]:
    builder = LogBuilder()
    directory = SubscriptionDirectory(SEALER)
    for change in (defined("ai.insights.enabled"), subscribed(SEALER, "ops", HOOK, org_id=ORG, secret=SECRET)):
        envelope = builder.append(change)
        assert envelope is not None
        directory.observe(envelope)
    log, sender, metrics, keys = MemoryDeliveryLog(), ScriptedSender([]), NotifierMetrics(), MemoryKeys()
    dispatcher = Dispatcher(sender=sender, deliveries=log, policy=RetryPolicy(attempts=1), observer=metrics)
    caught_up = [True]
    metrics.read_state(lag=lambda: {0: 3}, queued=lambda: 0, caught_up=lambda: caught_up[0])
    operations = Operations(directory=directory, reads=log, submit=dispatcher.submit, caught_up=lambda: caught_up[0])
    app = create_app(NotifierApi(operations, log, lambda: caught_up[0]), metrics)
    use_gate(app, memory_gate(keys))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as http:
        yield Notifier(http, log, sender, dispatcher, keys, builder, directory, caught_up)
    await dispatcher.aclose()


async def test_ready_only_once_caught_up_and_while_the_delivery_log_answers(notifier: Notifier) -> None:
    assert (await notifier.http.get("/healthz")).json() == {"status": "ok"}
    assert (await notifier.http.get("/readyz")).json() == {"status": "ready", "postgres": "ok"}
    notifier.caught_up[0] = False
    behind = await notifier.http.get("/readyz")
    assert (behind.status_code, behind.json()["status"], behind.headers["retry-after"]) == (503, "catching_up", "1")
    notifier.caught_up[0] = True
    notifier.log.down = True
    down = await notifier.http.get("/readyz")
    assert (down.status_code, down.json()["postgres"]) == (503, "down")


async def test_the_delivery_log_and_dead_letters_are_read_under_the_subscription_roles(notifier: Notifier) -> None:
    delivery = await notifier.dead_letter_one()
    path = f"/v1/orgs/{ORG}/subscriptions/ops"
    assert (await notifier.http.get(f"{path}/deliveries")).status_code == 401
    other = await notifier.http.get("/v1/orgs/globex/subscriptions/ops/deliveries",
                                    headers=notifier.key(Role.ORG_ADMIN))  # fmt: skip
    assert (other.status_code, other.json()["error"]) == (403, "forbidden")
    evaluator = await notifier.http.get(f"{path}/deliveries", headers=notifier.key(Role.EVALUATOR))
    assert evaluator.status_code == 403
    read = await notifier.http.get(f"{path}/deliveries", headers=notifier.key(Role.AUDITOR))
    assert read.status_code == 200, read.text
    [attempt] = read.json()["attempts"]
    assert (attempt["status"], attempt["http_status"], attempt["event_ids"]) == (
        "failed", 410, [str(delivery.event_ids[0])])
    dead = await notifier.http.get(f"{path}/dead-letters", headers=notifier.key(Role.AUDITOR))
    assert [(d["reason"], d["retried"]) for d in dead.json()["dead_letters"]] == [("HTTP 410", False)]


async def test_unknown_subscriptions_and_bad_limits_are_named(notifier: Notifier) -> None:
    admin = notifier.key(Role.SYSTEM_ADMIN, None)
    unknown = await notifier.http.get(f"/v1/orgs/{ORG}/subscriptions/nope/deliveries", headers=admin)
    assert (unknown.status_code, unknown.json()["error"], unknown.json()["field"]) == (
        404, "unknown_subscription", "subscription_id")
    system = await notifier.http.get("/v1/subscriptions/ops/deliveries", headers=admin)  # ops is acme's, not system's
    assert system.status_code == 404
    bad = await notifier.http.get(f"/v1/orgs/{ORG}/subscriptions/ops/deliveries?limit=0", headers=admin)
    assert (bad.status_code, bad.json()["error"], bad.json()["field"]) == (422, "invalid_request", "limit")
    notifier.caught_up[0] = False
    starting = await notifier.http.get(f"/v1/orgs/{ORG}/subscriptions/ops/deliveries", headers=admin)
    assert (starting.status_code, starting.json()["error"]) == (503, "not_ready")


async def test_retry_now_sends_each_dead_letter_again_once_and_replaces_its_outcome(notifier: Notifier) -> None:
    delivery = await notifier.dead_letter_one()
    retry = f"/v1/orgs/{ORG}/subscriptions/ops/dead-letters/retry"
    assert (await notifier.http.post(retry, headers=notifier.key(Role.AUDITOR))).status_code == 403
    admin = notifier.key(Role.ORG_ADMIN)
    answer = await notifier.http.post(retry, headers=admin)
    assert (answer.status_code, answer.json()["retried"]) == (202, [1])
    await asyncio.wait_for(_until(lambda: 1 in notifier.log.retried), 5)
    assert [d.body for d in notifier.sender.sent] == [delivery.body, delivery.body]
    assert notifier.log.outcomes == {("ops", delivery.event_ids[0]): "delivered"}
    again = await notifier.http.post(retry, headers=admin)
    assert again.json()["retried"] == []  # nothing left to retry
    assert len(notifier.sender.sent) == 2


async def test_a_paused_subscription_is_not_retried(notifier: Notifier) -> None:
    await notifier.dead_letter_one()
    paused = notifier.builder.append(SubscriptionPaused(subscription_id="ops", org_id=ORG))
    assert paused is not None
    notifier.directory.observe(paused)
    answer = await notifier.http.post(f"/v1/orgs/{ORG}/subscriptions/ops/dead-letters/retry",
                                      headers=notifier.key(Role.ORG_ADMIN))  # fmt: skip
    assert (answer.status_code, answer.json()["error"]) == (409, "subscription_unavailable")
    assert len(notifier.sender.sent) == 1


async def test_the_page_counts_deliveries_attempts_dead_letters_and_lag(notifier: Notifier) -> None:
    await notifier.dead_letter_one()
    page = parse((await notifier.http.get("/metrics")).text)
    webhook = {"destination": "webhook"}
    assert page.value("flagstream_notifier_deliveries_total", outcome="dead", **webhook) == 1
    assert page.value("flagstream_notifier_delivery_attempts_total", status="failed", **webhook) == 1
    assert page.value("flagstream_notifier_delivery_attempt_duration_seconds_count", **webhook) == 1
    assert page.value("flagstream_notifier_dead_letters_total", **webhook) == 1
    assert page.value("flagstream_notifier_consumer_lag_records", partition="0") == 3
    assert page.value("flagstream_notifier_caught_up") == 1


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.01)
