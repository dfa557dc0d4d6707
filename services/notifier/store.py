"""The delivery log in Postgres (migrations/0008_notifier.sql): every SQL statement over the notifier's tables.

Each write runs in a transaction scoped to the subscription's org (none for a system-wide one), so
row-level security holds the notifier to the rows of the subscription it writes for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.infra.pg_errors import UNREACHABLE
from services.infra.postgres import create_pool, tenant_transaction
from services.infra.settings import Role, Settings
from services.notifier.deliveries import Attempt, DeadLetter
from services.notifier.ports import DeliveryLogError, PendingDeadLetter
from services.notifier.subscriptions import Subscription

__all__ = ["DeliveryLogError", "PostgresDeliveryLog", "create_notifier_pool"]

# Postgres out of reach, or refusing a write: either way the outcome is not recorded, so the delivery is
# held and retried (nothing is sent again unrecorded).
DRIVER_ERRORS = (*UNREACHABLE, asyncpg.PostgresError)


async def create_notifier_pool(settings: Settings) -> asyncpg.Pool:
    return await create_pool(settings, Role.NOTIFIER, min_size=1, max_size=4)


INSERT_ATTEMPT = """
INSERT INTO notifier_attempts
    (subscription_id, org_id, event_ids, attempt, status, http_status, latency_ms, error, response)
VALUES ($1, $2, $3::uuid[], $4, $5, $6, $7, $8, $9)
"""
# Keep the newest `kept` attempts of the subscription: the delivery log is "the last N", not a history.
TRIM_ATTEMPTS = """
DELETE FROM notifier_attempts
WHERE subscription_id = $1
  AND id <= (SELECT id FROM notifier_attempts WHERE subscription_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)
"""
INSERT_OUTCOMES = """
INSERT INTO notifier_outcomes (subscription_id, event_id, org_id, outcome)
SELECT $1, e, $2, $4 FROM unnest($3::uuid[]) AS e
ON CONFLICT (subscription_id, event_id) DO NOTHING
"""
INSERT_DEAD_LETTER = """
INSERT INTO notifier_dead_letters (subscription_id, org_id, event_ids, body, reason, attempts)
VALUES ($1, $2, $3::uuid[], $4, $5, $6)
"""
# "retry now": the dead letter's events get the new outcome, and the dead letter says when it was retried.
FORGET_OUTCOMES = "DELETE FROM notifier_outcomes WHERE subscription_id = $1 AND event_id = ANY($2::uuid[])"
MARK_RETRIED = "UPDATE notifier_dead_letters SET retried_at = now() WHERE id = $1 AND subscription_id = $2"
SETTLED = "SELECT event_id FROM notifier_outcomes WHERE subscription_id = $1 AND event_id = ANY($2::uuid[])"


LATEST_ATTEMPTS = """
SELECT id, event_ids, attempt, status, http_status, latency_ms, error, response, attempted_at
FROM notifier_attempts WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2
"""
DEAD_LETTERS = """
SELECT id, event_ids, reason, attempts, created_at, retried_at
FROM notifier_dead_letters WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2
"""
PENDING_DEAD_LETTERS = """
SELECT id, event_ids, body FROM notifier_dead_letters
WHERE subscription_id = $1 AND retried_at IS NULL ORDER BY id
"""


class PostgresDeliveryLog:
    def __init__(self, pool: asyncpg.Pool, *, kept: int) -> None:
        self._pool = pool
        self._kept = kept

    async def settled(self, subscription: Subscription, event_ids: Sequence[UUID]) -> set[UUID]:
        try:
            async with tenant_transaction(self._pool, subscription.org_id) as conn:
                rows = await conn.fetch(SETTLED, subscription.id, list(event_ids))
        except DRIVER_ERRORS as exc:
            raise DeliveryLogError(f"cannot read outcomes: {exc}") from exc
        return {r["event_id"] for r in rows}

    async def record_attempt(self, attempt: Attempt) -> None:
        try:
            async with tenant_transaction(self._pool, attempt.delivery.subscription.org_id) as conn:
                await self._attempt(conn, attempt)
        except DRIVER_ERRORS as exc:
            raise DeliveryLogError(f"cannot record an attempt: {exc}") from exc

    async def record_outcome(self, attempt: Attempt, dead: DeadLetter | None) -> None:
        d = attempt.delivery
        s = d.subscription
        try:
            async with tenant_transaction(self._pool, s.org_id) as conn:
                await self._attempt(conn, attempt)
                if d.retry_of is not None:
                    await conn.execute(FORGET_OUTCOMES, s.id, list(d.event_ids))
                    await conn.execute(MARK_RETRIED, d.retry_of, s.id)
                await conn.execute(INSERT_OUTCOMES, s.id, s.org_id, list(d.event_ids), "dead" if dead else "delivered")
                if dead is not None:
                    await conn.execute(
                        INSERT_DEAD_LETTER, s.id, s.org_id, list(d.event_ids), d.body, dead.reason, dead.attempts
                    )
        except DRIVER_ERRORS as exc:
            raise DeliveryLogError(f"cannot record an outcome: {exc}") from exc

    async def ping(self) -> None:
        try:
            async with self._pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except DRIVER_ERRORS as exc:
            raise DeliveryLogError(f"PostgreSQL unavailable: {exc.__class__.__name__}") from exc

    async def latest_attempts(self, org_id: str | None, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._read(org_id, LATEST_ATTEMPTS, subscription_id, limit)
        return [{**_plain(r), "event_ids": [str(e) for e in r["event_ids"]]} for r in rows]

    async def dead_letters(self, org_id: str | None, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._read(org_id, DEAD_LETTERS, subscription_id, limit)
        return [{**_plain(r), "event_ids": [str(e) for e in r["event_ids"]]} for r in rows]

    async def pending_dead_letters(self, org_id: str | None, subscription_id: str) -> list[PendingDeadLetter]:
        rows = await self._read(org_id, PENDING_DEAD_LETTERS, subscription_id)
        return [PendingDeadLetter(r["id"], tuple(r["event_ids"]), bytes(r["body"])) for r in rows]

    async def _read(self, org_id: str | None, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            async with tenant_transaction(self._pool, org_id) as conn:
                return list(await conn.fetch(query, *args))
        except DRIVER_ERRORS as exc:
            raise DeliveryLogError(f"cannot read the delivery log: {exc}") from exc

    async def _attempt(self, conn: asyncpg.Connection, a: Attempt) -> None:
        s = a.delivery.subscription
        await conn.execute(
            INSERT_ATTEMPT, s.id, s.org_id, list(a.delivery.event_ids), a.number, a.status.value,
            a.http_status, a.latency_ms, a.error, a.response,
        )
        await conn.execute(TRIM_ATTEMPTS, s.id, self._kept)


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    """A row as JSON-ready values: instants in ISO 8601."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
