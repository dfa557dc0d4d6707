"""Connecting to Postgres as a service role, and the tenancy row-level security reads.

Two per-transaction settings carry it (`set_config(…, true)`, so a pooled connection
forgets them at commit): `flags.org_id`, the tenant ('' for none), which every table
under RLS reads; and `flags.cross_tenant`, 'on' only for the explicit system-wide
reader (`Tenancy.CROSS_TENANT`), which only the audit trail's policies read
(migration 0009). Both are set together, by `set_tenancy`, and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.infra.pg_errors import quiet_pool_floor_retries
from services.infra.settings import Role, Settings
from services.infra.tenancy import Tenancy

TENANT_SETTING = "flags.org_id"
CROSS_TENANT_SETTING = "flags.cross_tenant"
CROSS_TENANT_ON = "on"


async def create_pool(settings: Settings, role: Role, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    quiet_pool_floor_retries()
    pool = await asyncpg.create_pool(
        settings.pg_dsn(role), min_size=min_size, max_size=max_size, command_timeout=30
    )
    assert pool is not None
    return pool


async def set_tenancy(conn: asyncpg.Connection, tenancy: Tenancy) -> None:
    """Scope the current transaction to `tenancy` (both settings, so none is left from before)."""
    await conn.execute(
        "SELECT set_config($1, $2, true), set_config($3, $4, true)",
        TENANT_SETTING,
        tenancy.org_id or "",
        CROSS_TENANT_SETTING,
        CROSS_TENANT_ON if tenancy.cross_tenant else "",
    )


async def set_tenant(conn: asyncpg.Connection, org_id: str | None) -> None:
    """Scope the current transaction to one org (None or '': the system, so no tenant rows visible)."""
    await set_tenancy(conn, Tenancy.of(org_id or None))


@asynccontextmanager
async def scoped_transaction(pool: asyncpg.Pool, tenancy: Tenancy) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose row-level security context is `tenancy`."""
    async with pool.acquire() as conn, conn.transaction():
        await set_tenancy(conn, tenancy)
        yield conn


@asynccontextmanager
async def tenant_transaction(pool: asyncpg.Pool, org_id: str | None) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose row-level security context is `org_id` (None or '': the system)."""
    async with scoped_transaction(pool, Tenancy.of(org_id or None)) as conn:
        yield conn
