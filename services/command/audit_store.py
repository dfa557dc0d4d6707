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
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.command.history import LEVEL_PATTERNS, Cursor, HistoryFilter
from services.command.store import _translated

__all__ = ["PostgresAuditStore", "StoredValue"]

_PAGE = """
SELECT tx::text::bigint AS tx, sequence, body FROM event_store
WHERE (tx, sequence) > ($1::text::xid8, $2)
  AND tx < COALESCE($3::text::xid8, pg_snapshot_xmin(pg_current_snapshot()))
  AND ($4::text IS NULL OR org_id = $4 OR ($12 AND org_id IS NULL AND stream LIKE 'flag/%'))
  AND ($5::text IS NULL OR flag_key = $5)
  AND ($6::text[] IS NULL OR stream ~ ANY($6))
  AND ($7::text[] IS NULL OR type = ANY($7))
  AND ($8::timestamptz IS NULL OR occurred_at >= $8)
  AND ($9::timestamptz IS NULL OR occurred_at < $9)
  AND ($10::text IS NULL OR $10 IN (convert_from(body, 'UTF8')::jsonb #>> '{actor,id}',
                                    convert_from(body, 'UTF8')::jsonb #>> '{actor,name}'))
ORDER BY tx, sequence
LIMIT $11
"""

StoredValue = tuple[int, dict[str, Any] | None]  # (version, the stream's value after it)


class PostgresAuditStore:
    """Reads only; connected as `flags_command`, which may SELECT the event store."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def horizon(self) -> int:
        """The current visibility horizon: an export pins it so that it ends."""
        async with _translated():
            return int(await self._pool.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))

    async def page(
        self, wanted: HistoryFilter, *, after: Cursor | None, limit: int, horizon: int | None = None
    ) -> list[tuple[Cursor, bytes]]:
        start = after or Cursor(0, 0)
        levels = [LEVEL_PATTERNS[level] for level in wanted.levels] or None
        async with _translated():
            rows = await self._pool.fetch(
                _PAGE,
                str(start.tx),
                start.sequence,
                None if horizon is None else str(horizon),
                wanted.org,
                wanted.flag,
                levels,
                list(wanted.types) or None,
                wanted.since,
                wanted.until,
                wanted.actor,
                limit,
                wanted.catalog,
            )
        return [(Cursor(r["tx"], r["sequence"]), bytes(r["body"])) for r in rows]

    async def org_known(self, org: str) -> bool:
        """Has anything ever been recorded for `org`?"""
        async with _translated():
            return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM event_store WHERE org_id = $1)", org))

    async def override_streams(self, org: str, flag: str | None) -> list[str]:
        """Every override stream the org has ever had (of one flag, or of all)."""
        async with _translated():
            rows = await self._pool.fetch(
                "SELECT DISTINCT stream FROM event_store WHERE org_id = $1 AND stream LIKE 'org/%'"
                " AND ($2::text IS NULL OR flag_key = $2) ORDER BY stream",
                org,
                flag,
            )
        return [r["stream"] for r in rows]

    async def value_as_of(self, stream: str, at: datetime) -> StoredValue:
        """The stream's value after its last event at or before `at` (version 0, None: nothing yet)."""
        async with _translated():
            row = await self._pool.fetchrow(
                "SELECT version, convert_from(body, 'UTF8')::jsonb -> 'new' AS new FROM event_store"
                " WHERE stream = $1 AND occurred_at <= $2 ORDER BY version DESC LIMIT 1",
                stream,
                at,
            )
        return (0, None) if row is None else (row["version"], _json(row["new"]))

    async def value_at_version(self, stream: str, version: int) -> StoredValue | None:
        """The stream's value right after `version`; None when the stream has no such version."""
        async with _translated():
            new = await self._pool.fetchrow(
                "SELECT convert_from(body, 'UTF8')::jsonb -> 'new' AS new FROM event_store"
                " WHERE stream = $1 AND version = $2",
                stream,
                version,
            )
        return None if new is None else (version, _json(new["new"]))


def _json(text: str | None) -> dict[str, Any] | None:
    """asyncpg hands jsonb over as text; JSON null is the string 'null'."""
    value = json.loads(text) if text is not None else None
    return value if isinstance(value, dict) else None
