"""The write side of the event store, which is also the transactional outbox.

The primary key (stream, version) is the optimistic-concurrency check: two
writers that read the same head both try to insert head+1 and the loser gets a
unique violation, reported as `VersionConflict`; the append is tried once, and
`CommandService` alone retries, re-deciding on the new head. Each append notifies
`flags_outbox` in the same transaction, so the relay wakes exactly on commit.
Connection failures become `StoreUnavailable` (`driver_errors`).

Under row-level security (migration 0009) every statement runs under a tenancy: reads
under the store's reader (`reading_as`, the caller's: `services.command.tenancy.reader_for`;
the system by default, which sees no tenant's rows); an append under `writer_for` (a
cross-tenant reader's under the tenancy that owns the rows, any other only as itself: a
row of another tenancy is refused, `OutsideTenancy`); the relay's outbox statements
cross-tenant, by name. Each row keeps the trace context its request ran in (the `traceparent`
column, migration 0014; `services.observability.tracing`), for the relay to carry onto Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg

from events import Actor, Change, Envelope, FlagChange
from flagcore import StreamHead
from services.command import chain
from services.command.errors import OutsideTenancy, VersionConflict
from services.command.eventstore.driver_errors import translated
from services.command.ports import OUTBOX_CHANNEL, StoredEvent
from services.command.tenancy import writer_for
from services.infra.pg_errors import UNREACHABLE
from services.infra.postgres import scoped_transaction
from services.infra.tenancy import Tenancy
from services.observability import tracing

log = logging.getLogger(__name__)

# Advisory lock keys. The relay uses the one-bigint key space, flags the
# two-int4 one; PostgreSQL keeps the two spaces apart, and both are per database.
RELAY_LOCK_KEY = int.from_bytes(b"flagrlay", "big")
FLAG_LOCK_SPACE = int.from_bytes(b"flag", "big")
SEGMENT_LOCK_SPACE = int.from_bytes(b"segm", "big")  # a segment's stream: archived alone, named by rules shared

_HEAD = "SELECT version, hash, body FROM event_store WHERE stream = $1 ORDER BY version DESC LIMIT 1"
_INSERT = """
INSERT INTO event_store (stream, version, sequence, event_id, type, org_id, flag_key,
                         partition_key, occurred_at, hash, body, traceparent)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
_LIST = """
SELECT sequence, body FROM event_store
WHERE sequence > $1 AND ($2::text IS NULL OR org_id = $2) AND ($3::text IS NULL OR flag_key = $3)
ORDER BY sequence LIMIT $4
"""


class PostgresEventStore:
    """The `EventStore` port over an asyncpg pool connected as `flags_command`."""

    def __init__(self, pool: asyncpg.Pool, *, dsn: str, reader: Tenancy = Tenancy.SYSTEM) -> None:
        self._pool = pool
        self._dsn = dsn  # for the relay's dedicated (lock + LISTEN) connection
        self._reader = reader

    def reading_as(self, reader: Tenancy) -> PostgresEventStore:
        """The same store, its reads under `reader`."""
        return PostgresEventStore(self._pool, dsn=self._dsn, reader=reader)

    # --- reads -----------------------------------------------------------------

    async def stream_head(self, stream: str) -> StreamHead:
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            return await read_head(conn, stream)

    async def list_events(
        self, *, org: str | None = None, flag: str | None = None, after: int = 0, limit: int = 100
    ) -> list[StoredEvent]:
        async with translated(), scoped_transaction(self._pool, self._reader) as conn:
            rows = await conn.fetch(_LIST, after, org, flag, limit)
        return [StoredEvent(r["sequence"], bytes(r["body"])) for r in rows]

    # --- the append --------------------------------------------------------------

    async def append(
        self,
        changes: Sequence[FlagChange],
        *,
        actor: Actor,
        reason: str,
        expected_version: int | None,
        occurred_at: datetime,
    ) -> list[Envelope]:
        """Append `changes` to their stream in one transaction, as consecutive versions.

        A lost race (another writer inserted the same version first) is a `VersionConflict`
        naming the stream's new version, whether or not `expected_version` was given.
        """
        stream = chain.target_stream(changes)
        defines = changes[0].scope is None
        writer = writer_for(changes, acting_as=self._reader)
        try:
            async with translated(), scoped_transaction(self._pool, writer) as conn:
                # Settings share the flag's lock and definition changes take it alone,
                # so no setting can commit after the archive that should refuse it.
                lock = "pg_advisory_xact_lock" if defines else "pg_advisory_xact_lock_shared"
                await conn.execute(f"SELECT {lock}($1, hashtext($2))", FLAG_LOCK_SPACE, changes[0].flag_key)
                await _check_named_segments(conn, changes)
                head = await read_head(conn, stream)
                chain.check_expected(stream, head, expected_version)
                definition = head if defines else await read_head(conn, chain.definition_of(changes))
                chain.check_flag(changes, definition)
                envelopes = await write_events(conn, changes, head, actor=actor, reason=reason, occurred_at=occurred_at)
        except asyncpg.InsufficientPrivilegeError as exc:  # the RLS policy's WITH CHECK
            raise OutsideTenancy(f"{stream} may not be written under {writer}") from exc
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "event_store_pkey":
                raise
            log.info("append to %s lost a race", stream)
            current = await self.reading_as(writer).stream_head(stream)
            raise VersionConflict(stream, current.version, expected_version) from exc
        log_accepted(envelopes)
        return envelopes

    # --- the outbox: the relay publishes every org's events, so it reads (and stamps) cross-tenant ---------

    async def unpublished(self, limit: int) -> list[StoredEvent]:
        async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
            rows = await conn.fetch(
                "SELECT sequence, body, traceparent FROM event_store WHERE published_at IS NULL "
                "ORDER BY sequence LIMIT $1",
                limit,
            )
        return [StoredEvent(r["sequence"], bytes(r["body"]), r["traceparent"]) for r in rows]

    async def mark_published(self, sequences: Sequence[int]) -> None:
        if not sequences:
            return
        async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
            await conn.execute(
                "UPDATE event_store SET published_at = now() "
                "WHERE sequence = ANY($1::bigint[]) AND published_at IS NULL",
                list(sequences),
            )

    async def count_unpublished(self) -> int:
        async with translated(), scoped_transaction(self._pool, Tenancy.CROSS_TENANT) as conn:
            count = await conn.fetchval("SELECT count(*) FROM event_store WHERE published_at IS NULL")
        return int(count)

    async def ping(self) -> None:
        async with translated():
            await self._pool.fetchval("SELECT 1", timeout=2)

    async def acquire_relay_lease(self, on_notify: Callable[[], None]) -> PostgresRelayLease | None:
        """A dedicated connection holding the relay lock and LISTENing on the outbox channel."""
        async with translated():
            conn = await asyncpg.connect(self._dsn, timeout=5)
            try:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                    await conn.close()
                    return None
                await conn.add_listener(OUTBOX_CHANNEL, lambda *_: on_notify())
                conn.add_termination_listener(lambda _conn: on_notify())
            except BaseException:
                conn.terminate()
                raise
        return PostgresRelayLease(conn)


class PostgresRelayLease:
    """The advisory lock lives as long as this connection's session does."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @property
    def alive(self) -> bool:
        return not self._conn.is_closed()

    async def release(self) -> None:
        if self._conn.is_closed():
            return
        try:
            await asyncio.wait_for(self._conn.close(), timeout=5)
        except UNREACHABLE:
            self._conn.terminate()


async def _check_named_segments(conn: asyncpg.Connection, changes: Sequence[FlagChange]) -> None:
    """Rules naming segments hold those segments' locks shared, so no archive of one commits meanwhile
    (`eventstore.segment_store`), and may name only live ones (`chain.check_segments`)."""
    streams = chain.named_segments(changes)
    if not streams:
        return
    for stream in streams:
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1, hashtext($2))", SEGMENT_LOCK_SPACE, stream)
    chain.check_segments(changes, {stream: await read_head(conn, stream) for stream in streams})


async def write_events(
    conn: asyncpg.Connection,
    changes: Sequence[Change],
    head: StreamHead,
    *,
    actor: Actor,
    reason: str,
    occurred_at: datetime,
) -> list[Envelope]:
    """Seal `changes` onto `head` and insert them, inside the caller's transaction.

    The transaction must be under `writer_for(changes)` (set before `head` was read): row-level
    security refuses rows of any other tenancy. The outbox notification is sent in the same
    transaction, so it fires on commit.
    """
    rows = await conn.fetch("SELECT nextval('event_sequence') AS s FROM generate_series(1, $1)", len(changes))
    envelopes = chain.seal_changes(
        changes, head, sequences=sorted(r["s"] for r in rows), actor=actor, reason=reason, occurred_at=occurred_at
    )
    traceparent = tracing.current_traceparent()
    await conn.executemany(_INSERT, [(*_row(e), traceparent) for e in envelopes])
    await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return envelopes


def log_accepted(envelopes: Sequence[Envelope]) -> None:
    """One line per committed event, with its id (and the request's trace, bound by the span it ran in)."""
    for e in envelopes:
        log.info("accepted %s %s v%d", e.type, e.stream, e.version, extra={"event_id": str(e.event_id)})


async def read_head(conn: asyncpg.Connection, stream: str) -> StreamHead:
    row = await conn.fetchrow(_HEAD, stream)
    return chain.EMPTY_HEAD if row is None else chain.head_from_body(*row)


def _row(e: Envelope) -> tuple[object, ...]:
    return (
        e.stream,
        e.version,
        e.sequence,
        e.event_id,
        e.type,
        e.org_id,
        e.flag_key,
        e.partition_key,
        e.occurred_at,
        e.hash,
        e.to_json(),
    )



async def append_change(
    pool: asyncpg.Pool, change: Change, *, expected_version: int | None, actor: Actor, reason: str, now: datetime
) -> Envelope:
    """Append one change that belongs to no flag (a subscription's, a log acknowledgement) to its stream.

    The stream's own advisory lock orders its writers; a lost race to the same version is a `VersionConflict`
    naming the stream's new version.
    """
    stream = change.stream
    writer = writer_for([change])
    try:
        async with translated(), scoped_transaction(pool, writer) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", FLAG_LOCK_SPACE, stream)
            head = await read_head(conn, stream)
            chain.check_expected(stream, head, expected_version)
            (envelope,) = await write_events(conn, [change], head, actor=actor, reason=reason, occurred_at=now)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "event_store_pkey":
            raise
        async with translated(), scoped_transaction(pool, writer) as conn:
            current = (await read_head(conn, stream)).version
        raise VersionConflict(stream, current, expected_version) from exc
    return envelope
