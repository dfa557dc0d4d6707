"""Notification subscriptions in the event store: appended through the one write path, listed by the fold.

Every subscription change is an ordinary event (stream `subscription/<id>` or
`org/<org>/subscription/<id>`), so it is audited, relayed and chained like a flag change.
Listing reads the subscription events of one scope in log order and folds them
(`flagcore.subscriptions.SubscriptionBook`); there is no table of subscriptions to drift.
Both run under the tenancy of the subscription's org (the system for a system-wide one):
row-level security keeps each org's subscriptions from every other's.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from events import (
    Actor,
    Envelope,
    SubscriptionChange,
    SubscriptionChanged,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
    decode,
    subscription_stream,
)
from flagcore.subscriptions import SubscriptionBook, SubscriptionView
from services.command import chain
from services.command.errors import VersionConflict
from services.command.eventstore.driver_errors import translated
from services.command.eventstore.writes import FLAG_LOCK_SPACE, read_head, write_events
from services.command.tenancy import writer_for
from services.infra.postgres import scoped_transaction
from services.infra.tenancy import Tenancy

__all__ = ["SUBSCRIPTION_TYPES", "PostgresSubscriptionStore"]

SUBSCRIPTION_TYPES = [
    cls.model_fields["type"].default
    for cls in (SubscriptionCreated, SubscriptionChanged, SubscriptionPaused, SubscriptionResumed, SubscriptionDeleted)
]
_OF_SCOPE = """
SELECT body FROM event_store
WHERE type = ANY($1::text[]) AND org_id IS NOT DISTINCT FROM $2 AND ($3::text IS NULL OR stream = $3)
ORDER BY sequence
"""


class PostgresSubscriptionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def append(
        self, change: SubscriptionChange, *, expected_version: int | None, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        stream = change.stream
        writer = writer_for([change])
        try:
            async with translated(), scoped_transaction(self._pool, writer) as conn:
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", FLAG_LOCK_SPACE, stream)
                head = await read_head(conn, stream)
                chain.check_expected(stream, head, expected_version)
                (envelope,) = await write_events(conn, [change], head, actor=actor, reason=reason, occurred_at=now)
        except asyncpg.UniqueViolationError as exc:  # a creation racing another with the same id
            if exc.constraint_name != "event_store_pkey":
                raise
            raise VersionConflict(stream, (await self._head_version(writer, stream)), expected_version) from exc
        return envelope

    async def list(self, *, org_id: str | None) -> list[SubscriptionView]:
        return (await self._book(org_id, None)).of_org(org_id)

    async def get(self, org_id: str | None, subscription_id: str) -> SubscriptionView | None:
        stream = subscription_stream(org_id, subscription_id)
        return (await self._book(org_id, stream)).live.get(stream)

    async def _book(self, org_id: str | None, stream: str | None) -> SubscriptionBook:
        async with translated(), scoped_transaction(self._pool, Tenancy.of(org_id)) as conn:
            rows = await conn.fetch(_OF_SCOPE, SUBSCRIPTION_TYPES, org_id, stream)
        return SubscriptionBook().extend(decode(bytes(r["body"])) for r in rows)

    async def _head_version(self, writer: Tenancy, stream: str) -> int:
        async with translated(), scoped_transaction(self._pool, writer) as conn:
            return (await read_head(conn, stream)).version
