"""The SQL of time travel and of the snapshot job, over the event store and the snapshots, as the command role.

Events come back as decoded envelopes (their hashes checked, by the fast path where it applies); snapshot parts as
their JSON documents. Connection failures become `StoreUnavailable` (`driver_errors`).

Time travel reads under the store's reader (`reading_as`: the caller's tenancy). The snapshot
job folds every org's events, so it reads cross-tenant, by name, and adds each part under
the tenancy of its scope and each run under the system's (row-level security, migration 0009).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from itertools import islice

import asyncpg
import orjson

from events import Envelope
from flagcore.history import SYSTEM_SCOPE
from flaglog import decode_event
from services.command.eventstore.driver_errors import translated
from services.command.eventstore.parts import Part, Run
from services.infra.postgres import scoped_transaction, set_tenancy
from services.infra.tenancy import Tenancy

# Decoded events kept per process, keyed by their exact stored bytes (so a row altered in the
# store is decoded, and its hash checked, again): time travel reads the same recent events often.
# About 3.3 KB each (body and envelope), so at most ~35 MB.
DECODED_KEPT = 10_000

# A scope's flag events: an org's, or (scope '') the system ones (definitions, system defaults).
# Two texts rather than one with a CASE, so each can use the (org_id, sequence) index.
_ORG_SCOPE, _SYSTEM_SCOPE = "org_id = $1", "org_id IS NULL AND $1 = ''"
# What the fold reads: flag events, and segment events (which carry no flag key), not key or subscription ones.
_FOLDED = "(flag_key IS NOT NULL OR type IN ('SegmentDefined', 'SegmentChanged', 'SegmentArchived'))"
_EVENTS = f"""
SELECT body FROM event_store WHERE {{scope}} AND {_FOLDED} AND sequence > $2 AND occurred_at <= $3
  AND ($4::text[] IS NULL OR EXISTS (SELECT 1 FROM unnest($4::text[]) AS p WHERE starts_with(stream, p)))
ORDER BY sequence
"""
_NEAREST = """
SELECT sequence, events, state FROM snapshots
WHERE scope = $1 AND covered_until <= $2 ORDER BY sequence DESC LIMIT 1
"""
# The same, with only the entries of streams that start with one of $3: a large org's part is
# cut down where it is stored, not shipped whole for the few streams one view reads.
_KEPT = "EXISTS (SELECT 1 FROM unnest($3::text[]) AS p WHERE starts_with({stream}, p))"
_NEAREST_VIEW = f"""
SELECT sequence, events, jsonb_build_object(
    'heads', (SELECT coalesce(jsonb_agg(h), '[]') FROM jsonb_array_elements(state->'heads') AS h
              WHERE {_KEPT.format(stream="h->>0")}),
    'org', (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(state->'org') AS x
            WHERE {_KEPT.format(stream="x->-1->>1")}),
    'platform', (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(state->'platform') AS x
                 WHERE {_KEPT.format(stream="x->-1->>1")}),
    'user', (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(state->'user') AS x
             WHERE {_KEPT.format(stream="x->-1->>1")}),
    'segments', (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(state->'segments') AS x
                 WHERE {_KEPT.format(stream="x->-1->>1")})
) AS state
FROM snapshots WHERE scope = $1 AND covered_until <= $2 ORDER BY sequence DESC LIMIT 1
"""
# The scope's event count up to the part, and every head of the stored part against the log,
# in one round trip and without shipping the part anywhere.
_SOUND = f"""
SELECT (SELECT count(*) FROM event_store WHERE {{scope}} AND {_FOLDED} AND sequence <= $2) AS counted,
       count(*) AS heads, count(e.stream) AS matching
FROM snapshots AS s CROSS JOIN jsonb_array_elements(s.state->'heads') AS h
LEFT JOIN event_store AS e ON e.stream = h->>0 AND e.version = (h->>1)::int AND e.hash = h->>2
WHERE s.scope = $1 AND s.sequence = $2
"""
_ORG_KNOWN = "SELECT EXISTS (SELECT 1 FROM event_store WHERE org_id = $1 AND flag_key IS NOT NULL)"
_LATEST_RUN = "SELECT sequence, covered_until, kafka_offsets FROM snapshot_runs ORDER BY sequence DESC LIMIT 1"
_LATEST_PARTS = """
SELECT DISTINCT ON (scope) scope, sequence, events, state FROM snapshots ORDER BY scope, sequence DESC
"""
# A run's cutoff: events old enough that no append still in flight can take a lower sequence,
# and all published, so the Kafka offsets the run records cover every one of them.
_CUTOFF = """
SELECT max(sequence) FROM event_store
WHERE occurred_at <= now() - make_interval(secs => $1)
  AND sequence < coalesce((SELECT min(sequence) FROM event_store WHERE published_at IS NULL), 9223372036854775807)
"""
_SINCE = f"""
SELECT sequence, occurred_at, body FROM event_store
WHERE {_FOLDED} AND sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3
"""


class PostgresHistory:
    """The event store and the snapshots, read (and snapshots added) by the command role."""

    def __init__(
        self, pool: asyncpg.Pool, *, reader: Tenancy = Tenancy.SYSTEM, decoded: dict[bytes, Envelope] | None = None
    ) -> None:
        self._pool = pool
        self._reader = reader
        self._decoded: dict[bytes, Envelope] = {} if decoded is None else decoded

    def reading_as(self, reader: Tenancy) -> PostgresHistory:
        """The same store (and the same decoded events), its time-travel reads under `reader`."""
        return PostgresHistory(self._pool, reader=reader, decoded=self._decoded)

    async def org_known(self, org_id: str) -> bool:
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            return bool(await conn.fetchval(_ORG_KNOWN, org_id))

    async def nearest_part(self, scope: str, instant: datetime, prefixes: tuple[str, ...] | None = None) -> Part | None:
        """The latest snapshot part of `scope` that only covers events at or before `instant`.

        With `prefixes`, its document holds only the streams that start with one of them.
        """
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            if prefixes is None:
                row = await conn.fetchrow(_NEAREST, scope, instant)
            else:
                row = await conn.fetchrow(_NEAREST_VIEW, scope, instant, list(prefixes))
        return None if row is None else Part(scope, row["sequence"], row["events"], orjson.loads(row["state"]))

    async def part_is_sound(self, part: Part) -> bool:
        """Does the log still hold exactly what the stored part folded (every head's hash, the count)?"""
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            row = await conn.fetchrow(_scoped(_SOUND, part.scope), part.scope, part.sequence)
        return row["counted"] == part.events and row["matching"] == row["heads"]

    async def events(
        self, scope: str, *, after: int, until: datetime, prefixes: tuple[str, ...] | None = None
    ) -> list[Envelope]:
        """The scope's flag events after sequence `after` that occurred at or before `until`.

        With `prefixes`, only the events of streams that start with one of them.
        """
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            rows = await conn.fetch(
                _scoped(_EVENTS, scope), scope, after, until, list(prefixes) if prefixes is not None else None
            )
        return [self._decode(bytes(r["body"])) for r in rows]

    def _decode(self, body: bytes) -> Envelope:
        """`events.decode(body)`, remembered: decoding is a pure function of the bytes."""
        envelope = self._decoded.get(body)
        if envelope is None:
            if len(self._decoded) >= DECODED_KEPT:  # forget the older half (dicts keep insertion order)
                for stale in list(islice(self._decoded, DECODED_KEPT // 2)):
                    del self._decoded[stale]
            envelope = self._decoded[body] = decode_event(body)
        return envelope

    # --- the snapshot job: reads every org's events and parts, so cross-tenant -------------

    async def latest_run(self) -> Run | None:
        async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
            row = await conn.fetchrow(_LATEST_RUN)
        if row is None:
            return None
        offsets = {int(p): int(o) for p, o in orjson.loads(row["kafka_offsets"]).items()}
        return Run(row["sequence"], row["covered_until"], offsets)

    async def latest_parts(self) -> list[Part]:
        async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
            rows = await conn.fetch(_LATEST_PARTS)
        return [Part(r["scope"], r["sequence"], r["events"], orjson.loads(r["state"])) for r in rows]

    async def cutoff(self, settle_seconds: float) -> int | None:
        """The highest sequence a run may cover now; None when there is none."""
        async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
            value = await conn.fetchval(_CUTOFF, settle_seconds)
        return None if value is None else int(value)

    async def stream_events(
        self, *, after: int, upto: int, page: int = 5000
    ) -> AsyncIterator[tuple[int, datetime, Envelope]]:
        """Flag events with `after` < sequence <= `upto`, in sequence order, paged."""
        while True:
            async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
                rows = await conn.fetch(_SINCE, after, upto, page)
            for r in rows:
                yield r["sequence"], r["occurred_at"], decode_event(bytes(r["body"]))
            if len(rows) < page:
                return
            after = rows[-1]["sequence"]

    async def save_parts(self, parts: Sequence[tuple[Part, datetime]]) -> None:
        """Add parts, each under its scope's tenancy, in one transaction (a part is whole on its own)."""
        by_scope: dict[str, list[tuple[Part, datetime]]] = {}
        for part, until in parts:
            by_scope.setdefault(part.scope, []).append((part, until))
        async with translated(), self._pool.acquire() as conn, conn.transaction():
            for scope, kept in by_scope.items():
                await set_tenancy(conn, Tenancy.SYSTEM if scope == SYSTEM_SCOPE else Tenancy.tenant(scope))
                await conn.executemany(
                    "INSERT INTO snapshots (scope, sequence, covered_until, events, state) VALUES ($1, $2, $3, $4, $5)",
                    [(p.scope, p.sequence, until, p.events, orjson.dumps(p.doc).decode()) for p, until in kept],
                    timeout=300,
                )

    async def save_run(self, run: Run) -> None:
        """Record a finished run: the next one starts after its sequence (a system row)."""
        async with translated(), scoped_transaction(self._pool, Tenancy.SYSTEM) as conn:
            await conn.execute(
                "INSERT INTO snapshot_runs (sequence, covered_until, kafka_offsets) VALUES ($1, $2, $3)",
                run.sequence,
                run.covered_until,
                orjson.dumps({str(p): o for p, o in run.kafka_offsets.items()}).decode(),
            )


def _scoped(sql: str, scope: str) -> str:
    return sql.format(scope=_SYSTEM_SCOPE if scope == SYSTEM_SCOPE else _ORG_SCOPE)

