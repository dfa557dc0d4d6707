"""The SQL of the audit trail: history pages over the event store, and stream values as of an instant or version.

Paging cannot skip a row. A writer takes its `sequence` before it commits, so
sequence order is not commit order: a reader paging "after sequence N" can pass
a row that commits later with a lower number. Each row therefore records the
transaction that wrote it (`tx`, migration 0005), pages go in (tx, sequence)
order, and a page shows only rows whose transaction is older than every
transaction still running (`pg_snapshot_xmin`, the visibility horizon). Such a
row's transaction is over, and any row not yet visible has a `tx` at or above
the horizon, so it sorts after every cursor handed out. The price: a row shows
once the writes that began before it have finished, milliseconds here.

Every read runs under the store's reader (`reading_as`: the caller's tenancy, so an org's
auditor reads its own org's rows and the catalogue whatever a query forgets to filter).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.command.eventstore.driver_errors import translated
from services.command.history import LEVEL_PATTERNS, Cursor, HistoryFilter, actor_needles
from services.command.ports import StoredValue
from services.infra.postgres import scoped_transaction
from services.infra.tenancy import Tenancy

__all__ = ["PostgresAuditStore", "StoredValue"]

class PostgresAuditStore:
    """Reads only; connected as `flags_command`, which may SELECT the event store."""

    def __init__(self, pool: asyncpg.Pool, *, reader: Tenancy = Tenancy.SYSTEM) -> None:
        self._pool = pool
        self._reader = reader

    def reading_as(self, reader: Tenancy) -> PostgresAuditStore:
        """The same store, its reads under `reader`."""
        return PostgresAuditStore(self._pool, reader=reader)

    async def horizon(self) -> int:
        """The current visibility horizon: an export pins it so that it ends."""
        async with translated():
            return int(await self._pool.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))

    async def page(
        self, wanted: HistoryFilter, *, after: Cursor | None, limit: int, horizon: int | None = None
    ) -> list[tuple[Cursor, bytes]]:
        sql, args = page_query(wanted, after=after or Cursor(0, 0), limit=limit, horizon=horizon)
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            rows = await conn.fetch(sql, *args)
        return [(Cursor(r["txid"], r["sequence"]), bytes(r["body"])) for r in rows]

    async def org_known(self, org: str) -> bool:
        """Has anything ever been recorded for `org`?"""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM event_store WHERE org_id = $1)", org))

    async def override_streams(self, org: str, flag: str | None) -> list[str]:
        """Every override stream the org has ever had (of one flag, or of all)."""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT stream FROM event_store WHERE org_id = $1 AND stream LIKE 'org/%'"
                " AND flag_key IS NOT NULL"
                " AND ($2::text IS NULL OR flag_key = $2) ORDER BY stream",
                org,
                flag,
            )
        return [r["stream"] for r in rows]

    async def value_as_of(self, stream: str, at: datetime) -> StoredValue:
        """The stream's value after its last event at or before `at` (version 0, None: nothing yet)."""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            row = await conn.fetchrow(
                "SELECT version, convert_from(body, 'UTF8')::jsonb -> 'new' AS new FROM event_store"
                " WHERE stream = $1 AND occurred_at <= $2 ORDER BY version DESC LIMIT 1",
                stream,
                at,
            )
        return (0, None) if row is None else (row["version"], _json(row["new"]))

    async def value_at_version(self, stream: str, version: int) -> StoredValue | None:
        """The stream's value right after `version`; None when the stream has no such version."""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            new = await conn.fetchrow(
                "SELECT convert_from(body, 'UTF8')::jsonb -> 'new' AS new FROM event_store"
                " WHERE stream = $1 AND version = $2",
                stream,
                version,
            )
        return None if new is None else (version, _json(new["new"]))


def page_query(
    wanted: HistoryFilter, *, after: Cursor, limit: int, horizon: int | None
) -> tuple[str, list[Any]]:
    """The SQL of one page with only the conditions asked for, so the planner can use the (tx, sequence) index."""
    args: list[Any] = [str(after.tx), after.sequence]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["(tx, sequence) > ($1::text::xid8, $2)"]
    if horizon is None:
        where.append("tx < pg_snapshot_xmin(pg_current_snapshot())")
    else:
        where.append(f"tx < {arg(str(horizon))}::text::xid8")
    if wanted.org is not None:
        org = f"org_id = {arg(wanted.org)}"
        where.append(f"({org} OR (org_id IS NULL AND stream LIKE 'flag/%'))" if wanted.catalog else org)
    if wanted.flag is not None:
        where.append(f"flag_key = {arg(wanted.flag)}")
    if wanted.levels:
        where.append(f"stream ~ ANY({arg([LEVEL_PATTERNS[level] for level in wanted.levels])}::text[])")
    if wanted.types:
        where.append(f"type = ANY({arg(list(wanted.types))}::text[])")
    if wanted.since is not None:
        where.append(f"occurred_at >= {arg(wanted.since)}")
    if wanted.until is not None:
        where.append(f"occurred_at < {arg(wanted.until)}")
    if wanted.actor is not None:
        by_id, by_name = actor_needles(wanted.actor)
        where.append(f"(position({arg(by_id)}::bytea in body) > 0 OR position({arg(by_name)}::bytea in body) > 0)")
    sql = (
        "SELECT tx::text::bigint AS txid, sequence, body FROM event_store WHERE "
        + " AND ".join(where)
        + f" ORDER BY tx, sequence LIMIT {arg(limit)}"
    )
    return sql, args


def _json(text: str | None) -> dict[str, Any] | None:
    """asyncpg hands jsonb over as text; JSON null is the string 'null'."""
    value = json.loads(text) if text is not None else None
    return value if isinstance(value, dict) else None
