"""The real projector from the outside: how far it has consumed, waiting until it has, and its rows under RLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from services.infra.postgres import set_tenant
from services.infra.settings import Role, Settings
from tests.support.eventlog import EventLog
from tests.support.kafka import produce, topic_size


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.1)


async def applied_offsets(settings: Settings) -> int:
    """Sum over partitions of the next offset the projector stored: records consumed so far."""
    conn = await asyncpg.connect(settings.pg_dsn(Role.PROJECTOR))
    try:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(next_offset), 0) FROM projector_offsets WHERE consumer_group = $1",
                settings.projector_group,
            )
        )
    finally:
        await conn.close()


async def wait_for_offsets(settings: Settings, total: int, *, timeout: float = 90) -> None:
    async def done() -> bool:
        return await applied_offsets(settings) >= total

    await wait_until(done, timeout=timeout, what=f"{total} records consumed")


async def publish_and_wait(settings: Settings, log: EventLog, since: int = 0) -> None:
    """Produce the log's events from index `since` and wait until the projector consumed them."""
    before = await topic_size(settings)
    await produce(settings, log.records()[since:])
    await wait_for_offsets(settings, before + len(log.events) - since)


async def tenant_rows(settings: Settings, role: Role, org_id: str | None, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of `sql` in a transaction scoped to `org_id` (RLS), connected as `role`."""
    conn = await asyncpg.connect(settings.pg_dsn(role))
    try:
        async with conn.transaction():
            await set_tenant(conn, org_id)
            return await conn.fetch(sql, *args)
    finally:
        await conn.close()
