"""A rebuild's tables equal the live projection's, table by table, against the real servers.

One log (definitions, kill switches, archives, settings and clears at every level, rollouts,
a republished stretch, a broken record, an event id met again in another stream) is
produced onto three partitions. The live projector applies it into `public` in
partition-interleaved batches of random sizes; `rebuild` replays the topic into a new
schema (folded in memory, checkpoints of a few records, one or two workers). Every
read-model table must hold the same rows (offsets without their timestamps), and the
history indexes built at the end and its row-level security, switched on when the schema is
finished, must be the live ones.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from events import GENESIS_HASH, Actor, UserOverrideSet, seal, to_record
from flaglog import DeadLetter
from flaglog.connection import client_options
from services.infra.settings import Role, Settings
from services.projector.projection import Projector
from services.projector.rebuild.operation import rebuild
from services.projector.rebuild.schema import finish_schema, read_model_tables
from services.projector.store import PostgresStore, create_projector_pool
from tests.support.eventlog import mixed_log
from tests.support.projector_fakes import NullInvalidator
from tests.support.records import Rec, interleaved

pytestmark = pytest.mark.integration

PARTITIONS = 3


class Kept:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        pass


def the_log(topic: str) -> list[list[Rec]]:
    """Each partition's records, keyed by org as the relay keys them, with the troubles above."""
    log = mixed_log(11)
    first = next(e for e in log.events if e.org_id == "o1")
    again = seal(  # a new stream's first event under an event id o1 already used
        event_id=first.event_id, sequence=10_000, version=1, occurred_at=first.occurred_at + timedelta(days=1),
        actor=Actor(id="key-mallory", name="mallory"), reason="same id", previous=None, new={"enabled": True,
        "rollout_percentage": None}, data=UserOverrideSet(flag_key=first.flag_key, org_id="o1", user_id="eve",
        enabled=True), prev_hash=GENESIS_HASH,
    )  # fmt: skip
    parts: list[list[Rec]] = [[] for _ in range(PARTITIONS)]
    records = [*log.records(), *log.records()[40:46], to_record(again)]
    for r in records:
        p = sum(r.key or b"") % PARTITIONS
        parts[p].append(Rec(topic, p, len(parts[p]), r.key, r.value, tuple(r.headers)))
    parts[1].append(Rec(topic, 1, len(parts[1]), b"o2", b"{broken", ()))
    return parts


async def produce(settings: Settings, parts: list[list[Rec]]) -> None:
    producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for p, recs in enumerate(parts):
            for r in recs:
                meta = await producer.send_and_wait(settings.topic, r.value, key=r.key, headers=list(r.headers),
                                                    partition=p)  # fmt: skip
                assert meta.offset == r.offset
    finally:
        await producer.stop()


async def project_live(settings: Settings, parts: list[list[Rec]], rng: random.Random) -> None:
    pool = await create_projector_pool(settings)
    try:
        projector = Projector(PostgresStore(pool, settings.projector_group), Kept(), NullInvalidator(), retry_backoff=0)
        for batch in interleaved(parts, rng):
            await projector.handle(batch)
    finally:
        await pool.close()


async def differences(settings: Settings, schema: str) -> dict[str, tuple[int, int, int]]:
    """Per table: (rows only live, rows only rebuilt, rows), read as the superuser (no RLS)."""
    admin = await asyncpg.connect(settings.pg_admin_url.rsplit("/", 1)[0] + f"/{settings.pg_database}")
    try:
        found = {}
        for table in await read_model_tables(admin):
            columns = "consumer_group, topic, partition, next_offset" if table == "projector_offsets" else "*"
            live, new = f"SELECT {columns} FROM public.{table}", f'SELECT {columns} FROM "{schema}".{table}'
            found[table] = (
                await admin.fetchval(f"SELECT count(*) FROM ({live} EXCEPT ALL {new}) d"),
                await admin.fetchval(f"SELECT count(*) FROM ({new} EXCEPT ALL {live}) d"),
                await admin.fetchval(f"SELECT count(*) FROM ({live}) d"),
            )
        return found
    finally:
        await admin.close()


async def history_indexes(settings: Settings, schema: str) -> list[str]:
    owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
    try:
        rows = await owner.fetch(
            "SELECT indexname, replace(indexdef, $1 || '.', '') AS def FROM pg_indexes "
            "WHERE schemaname = $1 AND tablename = 'flag_history' ORDER BY indexname",
            schema,
        )
        return [f"{r['indexname']}: {r['def']}" for r in rows]
    finally:
        await owner.close()


async def finished_security(settings: Settings, schema: str) -> tuple[list[tuple[str, bool, bool]], ...]:
    """Each read-model table's (name, RLS, forced RLS), live and rebuilt, once the rebuilt schema is finished."""
    owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
    try:
        await finish_schema(owner, schema)
        flags = "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass"
        found: list[list[tuple[str, bool, bool]]] = []
        for s in ("public", schema):
            found.append([(t, *(await owner.fetchrow(flags, f'"{s}".{t}'))) for t in await read_model_tables(owner, s)])
        return tuple(found)
    finally:
        await owner.close()


@pytest.fixture(scope="module")
def projected(make_settings: Callable[[], Settings]) -> Settings:
    settings = make_settings()
    parts = the_log(settings.topic)
    asyncio.run(produce(settings, parts))
    asyncio.run(project_live(settings, parts, random.Random(3)))
    return settings


@pytest.mark.parametrize(("batch", "workers"), [(5, 1), (23, 2), (100_000, 1)])
def test_rebuilt_tables_equal_the_live_projection_table_by_table(projected: Settings, batch: int, workers: int) -> None:
    schema = f"rebuilt_{batch}_{workers}"
    assert asyncio.run(rebuild(projected, schema, switch=False, batch=batch, workers=workers, bar=False)) is None
    found = asyncio.run(differences(projected, schema))
    assert {t: d[:2] for t, d in found.items()} == dict.fromkeys(found, (0, 0)), found
    assert all(found[t][2] > 0 for t in ("overrides", "flag_history", "stream_heads", "flags", "system_defaults"))
    assert found["projector_offsets"][2] == PARTITIONS
    assert asyncio.run(history_indexes(projected, schema)) == asyncio.run(history_indexes(projected, "public"))
    live, rebuilt = asyncio.run(finished_security(projected, schema))
    assert rebuilt == live and ("flag_history", True, True) in live
