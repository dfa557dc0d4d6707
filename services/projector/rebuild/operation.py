"""The whole rebuild: create (or resume) the schema, replay into it, and switch over if asked."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from services.infra.settings import Role, Settings
from services.projector.rebuild.replay import CHECKPOINT, replay, replay_parallel
from services.projector.rebuild.schema import (
    LIVE,
    OFFSETS,
    build_indexes,
    create_schema,
    finish_schema,
    group_offsets,
    swap,
)

log = logging.getLogger(__name__)


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
