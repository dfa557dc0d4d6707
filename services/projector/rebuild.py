"""Rebuild the read models from offset 0 into a new schema, then switch over atomically.

    python -m services.projector.rebuild [--schema NAME] [--switch] [--batch N]

The live projection keeps serving while the rebuild replays the topic into
`NAME` with the projector's own planning and statements, as the projector role
(`FoldingProjector`: batches folded in memory, written every `--batch` records with
the offsets they cover, in `NAME`, so an interrupted rebuild resumes from the last
checkpoint). The history is copied straight into its table, whose indexes and
row-level security (which COPY cannot pass) are made the live ones at the end.
The read-model tables are the public tables the projector may write, copied with
their indexes, row-level security and grants, so a new migration's table is
rebuilt too.

Switch-over is a table swap in one owner transaction: it locks the live
`projector_offsets` (the first thing every projector batch writes, so the live
projector pauses between batches), catches the rebuild up to exactly the live
offsets, moves the live tables to `retired_<stamp>` and the rebuilt ones into
`public`. Why a swap rather than a search_path or a pointer table: the query
service and the projector keep naming tables unqualified and need no change;
readers see the old tables or the new ones, never a mix, because the move is one
commit; statements blocked on the swap's locks re-resolve the names when they
resume (PostgreSQL replans a cached statement whose tables moved), so the live
projector continues into the rebuilt tables from their offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from flaglog.connection import client_options
from services.infra.kafka import topic_partitions
from services.infra.settings import Role, Settings
from services.projector.fastdecode import decode_fast
from services.projector.planning import CacheTarget, DeadLetter
from services.projector.projection import FoldingProjector, Projector, RejectedByPostgres
from services.projector.store import PostgresStore, create_projector_pool

log = logging.getLogger(__name__)

# As `python -m services.projector` sets them: a batch makes many short-lived acyclic objects.
GC_THRESHOLDS = (100_000, 50, 100)
CHECKPOINT = 100_000  # records per transaction: folded in memory, written with their offsets
FETCH = 10_000  # records per Kafka fetch at most
LIVE = "public"
OFFSETS = "projector_offsets"
READ_MODELS = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind = 'r' AND has_table_privilege($2, c.oid, 'INSERT')
ORDER BY c.relname
"""
POLICIES = """
SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies
WHERE schemaname = $1 AND tablename = $2
"""
RLS_FLAGS = "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass"
GRANTS = """
SELECT a.grantee::regrole::text AS grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = $1::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
"""
# The history is append-only and the rebuild writes each tenant's rows as that tenant's: its
# rows are copied straight into it (binary COPY, which Postgres refuses on a table under
# row-level security) and its RLS is switched on at the switch-over, as the live table's.
# Until then the schema serves nobody: only the projector role may use it.
COPIED_STRAIGHT = ("flag_history",)
# The history's secondary indexes serve readers only (the replay inserts into the table and
# never reads it): built once at the end (`build_indexes`) instead of row by row, with the
# live indexes' names and definitions. The unique ones stay: they are checks.
DEFERRED_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = $1 AND t.relname = 'flag_history' AND NOT i.indisunique
ORDER BY c.relname
"""
GROUP_OFFSETS = "SELECT partition, next_offset FROM {schema}.projector_offsets WHERE consumer_group = $1 AND topic = $2"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Unchanged:
    """The rebuild's dead-letter sink: the live projector already sent those records to the dead letters."""

    def __init__(self) -> None:
        self.count = 0

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.count += len(letters)


class NoInvalidation:
    """The rebuilt tables serve nobody until the switch; the cache describes the live ones."""

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        return True


# --- the schema (as the owner role) ---------------------------------------------------------


async def read_model_tables(owner: asyncpg.Connection, schema: str = LIVE) -> list[str]:
    """The tables of `schema` the projector writes: what a rebuild rebuilds."""
    return [r["relname"] for r in await owner.fetch(READ_MODELS, schema, Role.PROJECTOR.value)]


async def create_schema(owner: asyncpg.Connection, schema: str) -> None:
    """`schema` with an empty copy of every live read-model table; nothing when it exists (resume)."""
    if await owner.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
        return
    s = quoted(schema)
    async with owner.transaction():
        await owner.execute(f"CREATE SCHEMA {s}")
        await owner.execute(f"GRANT USAGE ON SCHEMA {s} TO {quoted(Role.PROJECTOR.value)}")
        for table in await read_model_tables(owner):
            live, new = f"{LIVE}.{quoted(table)}", f"{s}.{quoted(table)}"
            await owner.execute(f"CREATE TABLE {new} (LIKE {live} INCLUDING ALL)")
            if table not in COPIED_STRAIGHT:
                await _copy_rls(owner, live, new)
            for p in await owner.fetch(POLICIES, LIVE, table):
                roles = ", ".join("PUBLIC" if r == "public" else quoted(r) for r in p["roles"])
                clause = f" USING ({p['qual']})" if p["qual"] else ""
                clause += f" WITH CHECK ({p['with_check']})" if p["with_check"] else ""
                await owner.execute(
                    f"CREATE POLICY {quoted(p['policyname'])} ON {new} AS {p['permissive']} "
                    f"FOR {p['cmd']} TO {roles}{clause}"
                )
            for g in await owner.fetch(GRANTS, live):
                await owner.execute(f"GRANT {g['privilege_type']} ON {new} TO {quoted(g['grantee'])}")
        for index in await owner.fetch(DEFERRED_INDEXES, schema):
            await owner.execute(f"DROP INDEX {s}.{quoted(index['name'])}")
    log.info("created schema %s for the rebuild", schema)


async def _copy_rls(owner: asyncpg.Connection, live: str, new: str) -> None:
    rls, force = await owner.fetchrow(RLS_FLAGS, live)
    if rls:
        await owner.execute(f"ALTER TABLE {new} ENABLE ROW LEVEL SECURITY")
    if force:
        await owner.execute(f"ALTER TABLE {new} FORCE ROW LEVEL SECURITY")


async def build_indexes(owner: asyncpg.Connection, schema: str) -> None:
    """Build the history indexes `create_schema` left out, as the live ones; nothing for those already there."""
    for index in await owner.fetch(DEFERRED_INDEXES, LIVE):
        definition = index["definition"]
        head, on, rest = definition.partition(f" ON {LIVE}.")
        assert on and head.startswith("CREATE INDEX "), definition
        head = head.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
        await owner.execute(f"{head} ON {quoted(schema)}.{rest}")


async def finish_schema(owner: asyncpg.Connection, schema: str) -> None:
    """Make `schema`'s tables what the live ones are: the deferred indexes, then row-level security.

    Run by `switch_over` just before the swap, after its last replay (which copies history straight).
    """
    await build_indexes(owner, schema)
    for table in COPIED_STRAIGHT:
        await _copy_rls(owner, f"{LIVE}.{quoted(table)}", f"{quoted(schema)}.{quoted(table)}")


async def group_offsets(conn: asyncpg.Connection, schema: str, group: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch(GROUP_OFFSETS.format(schema=quoted(schema)), group, topic)
    return {r["partition"]: r["next_offset"] for r in rows}


async def swap(owner: asyncpg.Connection, schema: str, retired: str) -> None:
    """Inside the caller's transaction: live tables to `retired`, the rebuilt ones to public."""
    await owner.execute(f"CREATE SCHEMA {quoted(retired)}")
    for table in await read_model_tables(owner, schema):
        await owner.execute(f"ALTER TABLE {LIVE}.{quoted(table)} SET SCHEMA {quoted(retired)}")
        await owner.execute(f"ALTER TABLE {quoted(schema)}.{quoted(table)} SET SCHEMA {LIVE}")
    await owner.execute(f"DROP SCHEMA {quoted(schema)}")


# --- the replay (as the projector role) -------------------------------------------------------


class Bar:
    """One line on stderr: events done, events/s and ETA; rewritten at most every 0.2 s."""

    def __init__(self, total: int, *, stream: Any = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.started = self._shown = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._shown >= 0.2 or self.done >= self.total:
            self._shown = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:5.0f}s" if rate > 0 else "    ?"
        filled = int(30 * min(self.done, self.total) / self.total) if self.total else 30
        return f"rebuild [{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.total:,} {rate:,.0f} ev/s ETA {eta}"

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class Collector:
    """Cyclic garbage collection by hand during a replay: once every `every` records, and only of what is new.

    The automatic collector traverses every young container again and again: with the
    rebuild's thresholds (`GC_THRESHOLDS`) it took 14–16 µs per event of decoding, planning
    and staging 300,000 events (load ~5; 64.8 µs per event in all, 53.3 with no collector).
    Here it is off while a replay runs; every `every` records (a checkpoint's worth) one
    collection finds the cycles made since the last, and `gc.freeze` then moves the survivors
    (the heads and definitions kept in memory) out of every later collection's way: ~0.11 s
    per 100,000 records. Frozen objects are still freed by reference counting; `stop` puts
    things back as they were.
    """

    def __init__(self, *, every: int) -> None:
        self.every = max(every, 1)
        self._since = 0
        self._automatic = gc.isenabled()
        gc.disable()

    def consumed(self, n: int) -> None:
        self._since += n
        if self._since >= self.every:
            self._since = 0
            gc.collect()
            gc.freeze()

    def stop(self) -> None:
        gc.unfreeze()
        if self._automatic:
            gc.enable()


async def replay(
    settings: Settings,
    schema: str,
    *,
    until: Mapping[int, int] | None = None,
    partitions: Sequence[int] | None = None,
    batch: int = CHECKPOINT,
    stop_after: int | None = None,
    bar: bool = True,
    report: Callable[[int], None] | None = None,
) -> int:
    """Apply the topic (or some of its partitions) to `schema` from its stored offsets up to `until`.

    `until` defaults to the current end. Records are folded in memory (`FoldingProjector`)
    and written with their offsets every `batch` records, in one transaction each. Returns
    how many records were consumed; `report` is told each fetched batch's size.
    `stop_after` ends early (an interrupted run, in tests).

    Cyclic garbage is collected by hand (`Collector`) instead of by the automatic collector.
    """
    pool = await create_projector_pool(settings, schema=schema)
    # No CRC check of the record batches (check_crcs=False): the decoder verifies every event's own
    # SHA-256 over its exact bytes (a mismatch is a dead letter, as live) and compares the key and the
    # headers it reads with them, which catches any corruption of what the rebuild uses that a CRC would.
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024, check_crcs=False,
    )  # fmt: skip
    await consumer.start()
    progress: Bar | None = None
    collector = Collector(every=batch)
    try:
        store = PostgresStore(pool, settings.projector_group)
        folder = FoldingProjector(PostgresStore(pool, settings.projector_group, new_history=True), Unchanged(),
                                  decode=decode_fast)  # fmt: skip
        fallback: Projector | None = None  # after Postgres refused a checkpoint: batch by batch, as live
        chosen = partitions if partitions is not None else await topic_partitions(settings, settings.topic)
        tps = [TopicPartition(settings.topic, p) for p in chosen]
        consumer.assign(tps)
        start = await store.stored_offsets(settings.topic)
        if until is None:
            until = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        end = {tp.partition: until.get(tp.partition, 0) for tp in tps}
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        remaining = {tp for tp in tps if start.get(tp.partition, 0) < end[tp.partition]}
        progress = Bar(sum(max(end[p] - start.get(p, 0), 0) for p in end)) if bar else None
        consumed = 0
        while remaining and (stop_after is None or consumed < stop_after):
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=min(batch, FETCH))
            records = [r for tp, rs in fetched.items() for r in rs if r.offset < end[tp.partition]]
            if records:
                if fallback is not None:
                    await fallback.handle(records)
                else:
                    await folder.add(records)
                consumed += len(records)
                if progress:
                    progress.add(len(records))
                if report:
                    report(len(records))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp.partition]:
                    remaining.discard(tp)
            done = not remaining or (stop_after is not None and consumed >= stop_after)
            if fallback is None and (folder.pending >= batch or done):
                try:
                    await folder.checkpoint()
                except RejectedByPostgres as exc:
                    log.warning("Postgres refused a checkpoint (%s); going on batch by batch from the last one", exc)
                    fallback = Projector(store, Unchanged(), NoInvalidation(), retry_backoff=0.0, decode=decode_fast)
                    stored = await store.stored_offsets(settings.topic)
                    for tp in tps:
                        consumer.seek(tp, stored.get(tp.partition, 0))
                    remaining = {tp for tp in tps if stored.get(tp.partition, 0) < end[tp.partition]}
            collector.consumed(len(records))  # after a checkpoint: what it wrote is garbage already
        return consumed
    finally:
        if progress:
            progress.finish()
        await consumer.stop()
        await pool.close()
        collector.stop()


async def replay_parallel(settings: Settings, schema: str, *, workers: int, batch: int, bar: bool = True) -> int:
    """`replay` in `workers` processes, each owning some partitions, up to the end as of now.

    Partitions are independent (a stream lives on one, with its org), each worker's offsets
    are its own rows, and Python decoding is the bottleneck: processes use every core.
    """
    partitions = await topic_partitions(settings, settings.topic)
    groups = [g for g in (partitions[i::workers] for i in range(workers)) if g]
    end = await end_offsets(settings, partitions)
    pool = await create_projector_pool(settings, schema=schema)
    try:
        start = await PostgresStore(pool, settings.projector_group).stored_offsets(settings.topic)
    finally:
        await pool.close()
    ctx = multiprocessing.get_context("spawn")
    counters = [ctx.Value("q", 0) for _ in groups]
    procs = [
        ctx.Process(target=_worker, args=(settings, schema, group, end, batch, counter), daemon=True)
        for group, counter in zip(groups, counters, strict=True)
    ]
    for proc in procs:
        proc.start()
    progress = Bar(sum(max(o - start.get(p, 0), 0) for p, o in end.items())) if bar else None
    shown = 0
    try:
        while any(proc.is_alive() for proc in procs):
            await asyncio.sleep(0.2)
            done = sum(c.value for c in counters)
            if progress:
                progress.add(done - shown)
            shown = done
    finally:
        for proc in procs:
            proc.join()
        if progress:
            progress.add(sum(c.value for c in counters) - shown)
            progress.finish()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} rebuild workers failed (exit codes {failed}); run again to resume")
    return sum(c.value for c in counters)


def _worker(
    settings: Settings, schema: str, partitions: list[int], end: dict[int, int], batch: int, counter: Any
) -> None:
    """A spawned process's whole life: replay its partitions, counting into the shared `counter`."""

    def report(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    logging.basicConfig(level=logging.WARNING)
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(replay(settings, schema, until=end, partitions=partitions, batch=batch, bar=False, report=report))


async def end_offsets(settings: Settings, partitions: Sequence[int]) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**client_options(settings), isolation_level="read_committed")
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(settings.topic, p) for p in partitions])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await consumer.stop()


# --- the whole operation ------------------------------------------------------------------------


async def rebuild(
    settings: Settings, schema: str, *, switch: bool, batch: int = CHECKPOINT, workers: int = 1, bar: bool = True
) -> str | None:
    """Create (or resume) `schema`, replay the topic into it, and switch over if asked.

    Returns the schema now holding the previous live tables, when it switched.
    """
    owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
    try:
        await create_schema(owner, schema)
        if workers > 1:
            await replay_parallel(settings, schema, workers=workers, batch=batch, bar=bar)
        else:
            await replay(settings, schema, batch=batch, bar=bar)
        await build_indexes(owner, schema)
        if not switch:
            return None
        return await switch_over(settings, owner, schema, batch=batch)
    finally:
        await owner.close()


async def switch_over(settings: Settings, owner: asyncpg.Connection, schema: str, *, batch: int = CHECKPOINT) -> str:
    """Catch `schema` up to the live offsets while the live projector waits, then swap in one commit."""
    retired = f"retired_{datetime.now(UTC):%Y%m%d%H%M%S}"
    async with owner.transaction():
        await owner.execute("SET LOCAL lock_timeout = '30s'")
        await owner.execute(f"LOCK TABLE {LIVE}.{OFFSETS} IN EXCLUSIVE MODE")  # the live projector pauses here
        live = await group_offsets(owner, LIVE, settings.projector_group, settings.topic)
        rebuilt = await group_offsets(owner, schema, settings.projector_group, settings.topic)
        behind = {p: o for p, o in live.items() if rebuilt.get(p, 0) < o}
        if behind:
            await replay(settings, schema, until={**rebuilt, **behind}, batch=batch, bar=False)
        await finish_schema(owner, schema)  # the indexes are there already (`rebuild`): RLS on
        await swap(owner, schema, retired)
    log.info("switched over: the rebuilt read models are live; the previous ones are in schema %s", retired)
    return retired


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="rebuild", help="the new schema (resumes it when it exists)")
    parser.add_argument("--switch", action="store_true", help="make the rebuilt read models live when done")
    parser.add_argument("--batch", type=int, default=CHECKPOINT, help="records per transaction (checkpoint)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes, each some partitions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("services.projector.projection").setLevel(logging.WARNING)
    gc.set_threshold(*GC_THRESHOLDS)
    retired = asyncio.run(rebuild(Settings(), args.schema, switch=args.switch, batch=args.batch, workers=args.workers))
    if retired:
        print(f"switched over; the previous read models are in schema {retired}")


if __name__ == "__main__":
    main()
