"""Connecting to Postgres as a service role, and the tenant context RLS reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.infra.pg_errors import quiet_pool_floor_retries
from services.infra.settings import Role, Settings

TENANT_SETTING = "flags.org_id"


async def create_pool(settings: Settings, role: Role, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    quiet_pool_floor_retries()
    pool = await asyncpg.create_pool(
        settings.pg_dsn(role), min_size=min_size, max_size=max_size, command_timeout=30
    )
    assert pool is not None
    return pool


async def set_tenant(conn: asyncpg.Connection, org_id: str | None) -> None:
    """Scope the current transaction to one org (None: no tenant rows visible)."""
    await conn.execute("SELECT set_config($1, $2, true)", TENANT_SETTING, org_id or "")


@asynccontextmanager
async def tenant_transaction(pool: asyncpg.Pool, org_id: str | None) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose row-level security context is `org_id`."""
    async with pool.acquire() as conn, conn.transaction():
        await set_tenant(conn, org_id)
        yield conn
