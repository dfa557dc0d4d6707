"""Proof that the read models match the log: replay it into a scratch schema and compare.

The scratch schema is built by the rebuild's own replay (services/projector/rebuild/)
up to the live offsets, then compared with the live read models table by table,
one checksum per org (and one for the system rows), inside a transaction that holds
the live projector between batches, so both sides cover exactly the same records.
Where a checksum differs, the rows only one side has are named. Offsets are positions,
not projected data, and are not compared. The scratch schema is dropped afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg

from services.infra.postgres import set_tenancy
from services.infra.settings import Role, Settings
from services.infra.tenancy import Tenancy
from services.projector.rebuild.replay import replay
from services.projector.rebuild.schema import LIVE, OFFSETS, create_schema, group_offsets, quoted, read_model_tables

SHOWN = 10  # differing rows named per table and org, each way
SYSTEM = ""  # the checksum key of rows that belong to no org

ORGS = "SELECT DISTINCT org_id FROM event_store WHERE org_id IS NOT NULL ORDER BY org_id"
HAS_ORG = """
SELECT EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = $1 AND table_name = $2 AND column_name = 'org_id')
"""


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    org_id: str  # SYSTEM for rows of no org
    live: str
    replayed: str
    only_live: list[str]  # rows as text
    only_replayed: list[str]


@dataclass(slots=True)
class ProjectionReport:
    tables: list[str] = field(default_factory=list)
    orgs: int = 0
    checksums: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def verify_projection(settings: Settings, *, batch: int = 10_000, bar: bool = True) -> ProjectionReport:
    """Replay into a scratch schema, compare with the live read models, drop the scratch schema."""
    scratch = f"verify_{uuid.uuid4().hex[:10]}"
    owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
    try:
        await create_schema(owner, scratch)
        await replay(settings, scratch, batch=batch, bar=bar)
        async with owner.transaction():
            await owner.execute(f"LOCK TABLE {LIVE}.{OFFSETS} IN SHARE MODE")  # the live projector waits
            live = await group_offsets(owner, LIVE, settings.projector_group, settings.topic)
            replayed = await group_offsets(owner, scratch, settings.projector_group, settings.topic)
            if live != replayed:
                await replay(settings, scratch, until=live, batch=batch, bar=False)
            return await compare(owner, scratch)
    finally:
        await owner.execute(f"DROP SCHEMA IF EXISTS {quoted(scratch)} CASCADE")
        await owner.close()


async def compare(owner: asyncpg.Connection, scratch: str) -> ProjectionReport:
    """Checksum every read-model table per org in both schemas; name the rows where they differ."""
    report = ProjectionReport(tables=[t for t in await read_model_tables(owner, scratch) if t != OFFSETS])
    await set_tenancy(owner, Tenancy.CROSS_TENANT)  # every org that has events: the event store is under RLS too
    orgs = [r["org_id"] for r in await owner.fetch(ORGS)]
    report.orgs = len(orgs)
    for table in report.tables:
        per_org = await owner.fetchval(HAS_ORG, scratch, table)
        for org in (SYSTEM, *orgs) if per_org else (SYSTEM,):
            # Row-level security binds the owner too (FORCE): each org's rows are read in its own context.
            await set_tenancy(owner, Tenancy.of(org or None))
            where = ("org_id IS NULL" if org == SYSTEM else "org_id = $1") if per_org else "true"
            args = (org,) if per_org and org != SYSTEM else ()
            a = await _checksum(owner, LIVE, table, where, args)
            b = await _checksum(owner, scratch, table, where, args)
            report.checksums += 1
            if a != b:
                report.differences.append(
                    Difference(
                        table, org, a, b,
                        await _only(owner, LIVE, scratch, table, where, args),
                        await _only(owner, scratch, LIVE, table, where, args),
                    )
                )  # fmt: skip
    await set_tenancy(owner, Tenancy.SYSTEM)
    return report


async def _checksum(owner: asyncpg.Connection, schema: str, table: str, where: str, args: tuple[str, ...]) -> str:
    row = await owner.fetchrow(
        f"SELECT count(*) AS n, md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) AS sum "
        f"FROM {quoted(schema)}.{quoted(table)} AS t WHERE {where}",
        *args,
    )
    return f"{row['n']} rows, md5 {row['sum']}"


async def _only(
    owner: asyncpg.Connection, first: str, second: str, table: str, where: str, args: tuple[str, ...]
) -> list[str]:
    rows = await owner.fetch(
        f"SELECT t::text AS row FROM (SELECT * FROM {quoted(first)}.{quoted(table)} WHERE {where} "
        f"EXCEPT ALL SELECT * FROM {quoted(second)}.{quoted(table)} WHERE {where}) AS t ORDER BY 1 LIMIT {SHOWN}",
        *args,
    )
    return [r["row"] for r in rows]
