"""Segments in the event store: appended through the one write path, read from stream heads.

Every segment change is an ordinary event (stream `segment/<key>` or `org/<org>/segment/<key>`), so it is
audited, relayed and chained like a flag change. Reads run under the caller's tenancy (row-level security:
an org's key sees the system's segments, migration 0013, and its own org's, never another org's).

An archive is refused while any flag's rules name the segment: the check and the append are one
transaction, which holds the segment's advisory lock (`SEGMENT_LOCK_SPACE`) exclusively; a targeting-rule
append takes the locks of the segments its rules name, shared (`eventstore.writes`), so no rule naming the
segment can commit between the check and the archive. The check reads as the caller (a system admin
cross-tenant: every org's rules), the append is made under the tenancy that owns the row.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg
import orjson

from events import Actor, Envelope, SegmentArchived, SegmentChange, segment_stream
from services.command import chain
from services.command.errors import SegmentInUse, VersionConflict
from services.command.eventstore.driver_errors import translated
from services.command.eventstore.writes import SEGMENT_LOCK_SPACE, read_head, write_events
from services.command.segments import RuleHead, SegmentUse, SegmentView, uses, view_of
from services.command.tenancy import writer_for
from services.infra.postgres import scoped_transaction, set_tenancy
from services.infra.tenancy import Tenancy

__all__ = ["SEGMENT_TYPES", "PostgresSegmentStore"]

SEGMENT_TYPES = ["SegmentDefined", "SegmentChanged", "SegmentArchived"]
_HEADS = """
SELECT DISTINCT ON (stream) stream, version, hash, body FROM event_store
WHERE type = ANY($1::text[]) AND org_id IS NOT DISTINCT FROM $2
ORDER BY stream, version DESC
"""
# The head of every targeting-rule stream the transaction may read: one org's ($1 false), or all (system segment).
_RULE_HEADS = """
SELECT DISTINCT ON (stream) org_id, flag_key, body FROM event_store
WHERE type = 'TargetingRulesSet' AND ($1::boolean OR org_id IS NOT DISTINCT FROM $2)
ORDER BY stream, version DESC
"""
# The orgs with a segment of their own of this key: their rules name theirs, not the system's.
_SHADOWING = """
SELECT DISTINCT org_id FROM event_store
WHERE type = 'SegmentDefined' AND org_id IS NOT NULL AND stream = 'org/' || org_id || '/segment/' || $1
"""


class PostgresSegmentStore:
    """The segment routes' store: `reader` is the caller's tenancy (`services.command.tenancy.reader_for`)."""

    def __init__(self, pool: asyncpg.Pool, *, reader: Tenancy = Tenancy.SYSTEM) -> None:
        self._pool = pool
        self._reader = reader

    def reading_as(self, reader: Tenancy) -> PostgresSegmentStore:
        return PostgresSegmentStore(self._pool, reader=reader)

    async def append(
        self, change: SegmentChange, *, expected_version: int | None, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        """Append one change; `VersionConflict`, `InvalidTransition`, `SegmentInUse` (an archive)."""
        stream = change.stream
        writer = writer_for([change], acting_as=self._reader)
        try:
            async with translated(), self._pool.acquire() as conn, conn.transaction():
                await set_tenancy(conn, self._reader)
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", SEGMENT_LOCK_SPACE, stream)
                if isinstance(change, SegmentArchived):
                    used = await _uses(conn, change.org_id, change.segment_key)
                    if used:
                        raise SegmentInUse(change.segment_key, used)
                await set_tenancy(conn, writer)
                head = await read_head(conn, stream)
                chain.check_expected(stream, head, expected_version)
                (envelope,) = await write_events(conn, [change], head, actor=actor, reason=reason, occurred_at=now)
        except asyncpg.UniqueViolationError as exc:  # a definition racing another of the same key
            if exc.constraint_name != "event_store_pkey":
                raise
            current = await self.get(change.org_id, change.segment_key)
            raise VersionConflict(stream, 0 if current is None else current.version, expected_version) from exc
        return envelope

    async def get(self, org_id: str | None, key: str) -> SegmentView | None:
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            return view_of(org_id, key, await read_head(conn, segment_stream(org_id, key)))

    async def of_scope(self, org_id: str | None) -> list[SegmentView]:
        """The scope's segments, archived ones included, by key."""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            rows = await conn.fetch(_HEADS, SEGMENT_TYPES, org_id)
        found = []
        for row in rows:
            head = chain.head_from_body(row["version"], row["hash"], bytes(row["body"]))
            view = view_of(org_id, row["stream"].rsplit("/", 1)[1], head)
            if view is not None:
                found.append(view)
        return sorted(found, key=lambda v: v.key)

    async def uses(self, org_id: str | None, key: str) -> list[SegmentUse]:
        """The flags whose rules name the segment, among the rules the caller may read."""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            return await _uses(conn, org_id, key)


async def _uses(conn: asyncpg.Connection, org_id: str | None, key: str) -> list[SegmentUse]:
    rows = await conn.fetch(_RULE_HEADS, org_id is None, org_id)
    shadowed = [r["org_id"] for r in await conn.fetch(_SHADOWING, key)] if org_id is None else []
    return uses(org_id, key, _rule_heads(rows), shadowed)


def _rule_heads(rows: Iterable[asyncpg.Record]) -> Iterable[RuleHead]:
    for row in rows:
        yield RuleHead(row["org_id"], row["flag_key"], orjson.loads(bytes(row["body"]))["new"])
