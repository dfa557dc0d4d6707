"""The projector's staging tables, against real Postgres as the projector role.

They are plain temp tables emptied by `pg_temp.clear_staged()` before each commit (not
ON COMMIT DELETE ROWS, which truncates every one of them at every commit): a small batch's
rows are deleted; a large batch, or dead rows adding up, truncates them, so they cannot
grow without bound (temp tables are never autovacuumed).
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest

from services.infra.settings import Role, Settings
from services.projector.projection import Projector
from services.projector.store import (
    SESSION_SETUP,
    STAGED_ROWS_BEFORE_TRUNCATE,
    STAGING_TABLES,
    PostgresStore,
    create_projector_pool,
)
from tests.support.eventlog import override_churn
from tests.support.projector_fakes import NoDeadLetters, NullInvalidator
from tests.support.records import Rec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(make_settings: Callable[[], Settings]) -> Settings:
    return make_settings()


async def staged_rows(conn: asyncpg.Connection) -> int:
    return sum([await conn.fetchval(f"SELECT count(*) FROM pg_temp.{t}") for t in STAGING_TABLES])


async def staged_bytes(conn: asyncpg.Connection) -> int:
    return sum([await conn.fetchval(f"SELECT pg_total_relation_size('pg_temp.{t}')") for t in STAGING_TABLES])


async def test_every_batch_leaves_the_staging_tables_empty(db: Settings) -> None:
    log, _, _ = override_churn(31, 40)
    records = [Rec("staging.batches", 0, i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(log.records())]
    pool = await create_projector_pool(db)
    try:
        store = PostgresStore(pool, db.projector_group)
        projector = Projector(store, NoDeadLetters(), NullInvalidator(), retry_backoff=0)
        for start in range(0, len(records), 4):
            result = await projector.apply(records[start : start + 4])
            assert result.applied > 0
            async with pool.acquire() as conn:
                assert await staged_rows(conn) == 0
    finally:
        await pool.close()


async def test_small_batches_are_deleted_and_large_ones_or_many_leftovers_truncated(db: Settings) -> None:
    conn = await asyncpg.connect(db.pg_dsn(Role.PROJECTOR))

    async def stage_and_clear(rows: int, *, reported: int) -> None:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO stage_wanted SELECT 'org', repeat('s', 60) || n FROM generate_series(1, $1::int) n", rows
            )
            await conn.execute("SELECT pg_temp.clear_staged($1)", reported)
        assert await staged_rows(conn) == 0

    try:
        await conn.execute(SESSION_SETUP)
        empty = await staged_bytes(conn)
        await stage_and_clear(100, reported=100)
        assert await staged_bytes(conn) > empty  # deleted: the pages stay
        await stage_and_clear(STAGED_ROWS_BEFORE_TRUNCATE + 1, reported=STAGED_ROWS_BEFORE_TRUNCATE + 1)
        assert await staged_bytes(conn) == empty  # a large batch: truncated
        await stage_and_clear(60_000, reported=100)  # as if many small batches had left their dead rows
        assert await staged_bytes(conn) == empty  # past the size limit: truncated
    finally:
        await conn.close()
