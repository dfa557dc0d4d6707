"""The notifier's delivery log in Postgres: what it records, what it trims, and who sees which rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
import pytest

from services.infra.postgres import create_pool, tenant_transaction
from services.infra.settings import Role, Settings
from services.notifier.deliveries import Attempt, AttemptStatus, DeadLetter, Delivery
from services.notifier.store import PostgresDeliveryLog
from services.notifier.subscriptions import Destination, DestinationKind, Subscription

pytestmark = pytest.mark.integration

SLACK = Destination(DestinationKind.SLACK, "https://hooks.example/slack")


@pytest.fixture
def db(make_settings: Callable[[], Settings]) -> Settings:
    return make_settings()


def attempt(subscription: Subscription, number: int, status: AttemptStatus = AttemptStatus.FAILED) -> Attempt:
    delivery = Delivery(subscription, (uuid.uuid4(), uuid.uuid4()), b'{"text":"x"}')
    return Attempt(delivery, number, status, 503, 12.5, "HTTP 503")


async def test_outcomes_attempts_and_dead_letters_are_kept_per_org_and_trimmed(db: Settings) -> None:
    pool = await create_pool(db, Role.NOTIFIER, min_size=1, max_size=2)
    try:
        store = PostgresDeliveryLog(pool, kept=3)
        acme = Subscription("acme-hook", SLACK, org_id="acme")
        system = Subscription("ops", SLACK)
        for n in range(1, 6):
            await store.record_attempt(attempt(acme, n))
        last = attempt(acme, 6)
        await store.record_outcome(last, DeadLetter(last.delivery, "HTTP 503 after 6 attempts", 6))
        delivered = attempt(system, 1, AttemptStatus.DELIVERED)
        await store.record_outcome(delivered, None)
        await store.record_outcome(delivered, None)  # recorded twice: one outcome per event still

        assert await store.settled(acme, last.delivery.event_ids) == set(last.delivery.event_ids)
        assert await store.settled(system, delivered.delivery.event_ids) == set(delivered.delivery.event_ids)
        assert await store.settled(system, last.delivery.event_ids) == set()

        async with tenant_transaction(pool, "acme") as conn:
            kept = await conn.fetch("SELECT attempt FROM notifier_attempts ORDER BY id")
            dead = await conn.fetch("SELECT reason, attempts, event_ids FROM notifier_dead_letters")
            outcomes = await conn.fetchval("SELECT count(*) FROM notifier_outcomes")
        assert [r["attempt"] for r in kept] == [4, 5, 6]  # the last N attempts
        assert [(r["reason"], r["attempts"]) for r in dead] == [("HTTP 503 after 6 attempts", 6)]
        assert outcomes == 2
        async with tenant_transaction(pool, "globex") as conn:  # another org sees nothing of acme's or the system's
            assert await conn.fetchval("SELECT count(*) FROM notifier_attempts") == 0
            assert await conn.fetchval("SELECT count(*) FROM notifier_outcomes") == 0
        async with tenant_transaction(pool, None) as conn:  # no org: the system-wide rows only
            assert await conn.fetchval("SELECT count(*) FROM notifier_outcomes") == 2
            assert await conn.fetchval("SELECT count(*) FROM notifier_dead_letters") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute("INSERT INTO notifier_outcomes (subscription_id, event_id, org_id, outcome) "
                                   "VALUES ('x', gen_random_uuid(), 'acme', 'delivered')")
    finally:
        await pool.close()


async def test_the_operators_reads_and_a_retried_dead_letter_replacing_its_outcome(db: Settings) -> None:
    pool = await create_pool(db, Role.NOTIFIER, min_size=1, max_size=2)
    try:
        store = PostgresDeliveryLog(pool, kept=10)
        acme = Subscription("acme-hook", SLACK, org_id="acme")
        await store.ping()
        failed = attempt(acme, 1)
        await store.record_outcome(failed, DeadLetter(failed.delivery, "HTTP 503 after 1 attempts", 1))
        [pending] = await store.pending_dead_letters("acme", "acme-hook")
        assert (pending.event_ids, pending.body) == (failed.delivery.event_ids, failed.delivery.body)
        assert await store.pending_dead_letters("globex", "acme-hook") == []  # another org's rows are not seen
        assert await store.pending_dead_letters(None, "acme-hook") == []

        again = Delivery(acme, pending.event_ids, pending.body, retry_of=pending.id)
        await store.record_outcome(Attempt(again, 1, AttemptStatus.DELIVERED, 200, 3.0), None)
        assert await store.pending_dead_letters("acme", "acme-hook") == []
        [letter] = await store.dead_letters("acme", "acme-hook", 10)
        assert (letter["id"], letter["reason"], letter["event_ids"]) == (
            pending.id, "HTTP 503 after 1 attempts", [str(e) for e in pending.event_ids])
        assert letter["retried_at"] is not None
        newest, oldest = await store.latest_attempts("acme", "acme-hook", 10)
        assert (newest["status"], newest["http_status"], oldest["status"]) == ("delivered", 200, "failed")
        assert await store.latest_attempts("acme", "acme-hook", 1) == [newest]
        async with tenant_transaction(pool, "acme") as conn:
            outcomes = await conn.fetch("SELECT outcome FROM notifier_outcomes WHERE subscription_id = 'acme-hook'")
        assert [r["outcome"] for r in outcomes] == ["delivered", "delivered"]  # the dead outcome replaced
    finally:
        await pool.close()
