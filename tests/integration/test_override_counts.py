"""`flag_override_counts`: the projector's count of orgs (and overrides) per flag, against real Postgres.

Random sequences of override sets and clears at every level, applied by the projector's own
code (`Projector` over `PostgresStore`, the projector role, RLS) in batches of random sizes:
after every batch the table equals what the projection holds, read org by org, and what the
log says; a rebuild into a fresh schema (the rebuild's own `create_schema`) counts the same;
and migration 0007, applied to a database that has overrides already, counts them.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest

from events import Envelope, Level
from services.infra.postgres import create_pool, tenant_transaction
from services.infra.provision import migrate
from services.infra.settings import Role, Settings
from services.projector.projection import Projector
from services.projector.rebuild.schema import create_schema
from services.projector.store import PostgresStore, create_projector_pool
from services.query.adapters import PostgresDocuments
from tests.support.eventlog import override_churn
from tests.support.projector_fakes import NoDeadLetters, NullInvalidator
from tests.support.records import Rec

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def db(make_settings: Callable[[], Settings]) -> Settings:
    return make_settings()


def expected_counts(events: Sequence[Envelope]) -> dict[str, tuple[int, int]]:
    """From the log alone: per flag, (orgs with an override, overrides)."""
    present: dict[tuple[Any, ...], bool] = {}
    for e in events:
        scope = getattr(e.data, "scope", None)
        if scope is None or scope.level is Level.SYSTEM:
            continue
        present[(scope.org_id, scope.level, scope.platform, scope.user_id, e.flag_key)] = e.new is not None
    counts: dict[str, tuple[set[str], int]] = {}
    for (org, *_, flag), here in present.items():
        if here:
            orgs, n = counts.get(flag, (set(), 0))
            counts[flag] = (orgs | {org}, n + 1)
    return {flag: (len(orgs), n) for flag, (orgs, n) in counts.items()}


async def projected_counts(pool: asyncpg.Pool, orgs: Sequence[str]) -> dict[str, tuple[int, int]]:
    """What the projection holds, read the only way RLS allows: one org at a time."""
    counts: dict[str, tuple[int, int]] = {}
    for org in orgs:
        async with tenant_transaction(pool, org) as conn:
            rows = await conn.fetch("SELECT flag_key, count(*) AS n FROM overrides GROUP BY flag_key")
        for r in rows:
            o, n = counts.get(r["flag_key"], (0, 0))
            counts[r["flag_key"]] = (o + 1, n + r["n"])
    return counts


async def table_counts(pool: asyncpg.Pool, flags: Sequence[str]) -> dict[str, tuple[int, int]]:
    rows = await PostgresDocuments(pool).override_counts()
    return {r["flag_key"]: (r["orgs"], r["overrides"]) for r in rows if r["flag_key"] in flags}


async def apply_in_batches(projector: Projector, records: Sequence[Rec], rng: random.Random) -> AsyncIterator[int]:
    done = 0
    while done < len(records):
        size = rng.randint(1, 15)
        await projector.apply(records[done : done + size])
        done = min(done + size, len(records))
        yield done


@pytest.mark.parametrize("seed", range(4))
async def test_counts_equal_the_projection_after_every_batch_and_after_a_rebuild(db: Settings, seed: int) -> None:
    log, orgs, flags = override_churn(seed, 90)
    topic = f"counts.{seed}"
    records = [Rec(topic, 0, i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(log.records())]
    rng = random.Random(seed)
    projector_pool = await create_projector_pool(db)
    query_pool = await create_pool(db, Role.QUERY, min_size=1, max_size=2)
    try:
        store = PostgresStore(projector_pool, db.projector_group)
        projector = Projector(store, NoDeadLetters(), NullInvalidator(), retry_backoff=0)
        async for done in apply_in_batches(projector, records, rng):
            held = await projected_counts(query_pool, orgs)
            assert await table_counts(query_pool, flags) == held
            assert held == expected_counts(log.events[:done])
        assert any(orgs for orgs, _ in held.values()), "the sequence left no override: a weak example"
        again = await projector.apply(records)  # a redelivery changes nothing
        assert again.applied == 0
        assert await table_counts(query_pool, flags) == held

        schema = f"rebuild_counts_{seed}"
        owner = await asyncpg.connect(db.pg_dsn(Role.OWNER))
        try:
            await create_schema(owner, schema)
        finally:
            await owner.close()
        rebuilt_pool = await create_projector_pool(db, schema=schema)
        try:
            rebuilt = PostgresStore(rebuilt_pool, db.projector_group)
            rebuilder = Projector(rebuilt, NoDeadLetters(), NullInvalidator(), retry_backoff=0)
            async for _ in apply_in_batches(rebuilder, records, random.Random(seed + 100)):
                pass
            rows = await rebuilt_pool.fetch(
                "SELECT flag_key, orgs, overrides FROM flag_override_counts WHERE flag_key = ANY($1::text[])", flags
            )
            assert {r["flag_key"]: (r["orgs"], r["overrides"]) for r in rows} == held
        finally:
            await rebuilt_pool.close()
    finally:
        await projector_pool.close()
        await query_pool.close()


async def test_the_migration_counts_the_overrides_a_database_already_has(db: Settings) -> None:
    log, orgs, flags = override_churn(10, 60)
    records = [Rec("counts.migration", 0, i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(log.records())]
    projector_pool = await create_projector_pool(db)
    query_pool = await create_pool(db, Role.QUERY, min_size=1, max_size=2)
    owner = await asyncpg.connect(db.pg_dsn(Role.OWNER))
    try:
        store = PostgresStore(projector_pool, db.projector_group)
        await Projector(store, NoDeadLetters(), NullInvalidator()).apply(records)
        await projector_pool.close()  # its sessions' plans name the table about to be dropped
        held = await projected_counts(query_pool, orgs)
        assert held == expected_counts(log.events) and held
        # As before 0007: no count table; then apply 0007 as the provisioning does.
        await owner.execute("DROP TABLE flag_override_counts; DROP INDEX overrides_org_flag")
        await owner.execute("DELETE FROM schema_migrations WHERE name = '0007_flag_override_counts.sql'")
        assert await migrate(db) == ["0007_flag_override_counts.sql"]
        assert await table_counts(query_pool, flags) == held
        forced = await owner.fetchval("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'overrides'::regclass")
        assert forced is True  # RLS binds the owner again once the migration is done
    finally:
        await owner.close()
        await query_pool.close()
        if not projector_pool.is_closing():
            await projector_pool.close()
