"""The rebuild's schema, as the owner role: an empty copy of the live read models, finished and swapped in.

The read-model tables are the public tables the projector may write, copied with
their indexes, row-level security and grants, so a new migration's table is
rebuilt too. The history's secondary indexes and row-level security are left out
until the end (`finish_schema`); `swap` moves the live tables out and the rebuilt
ones in, inside the caller's transaction.
"""

from __future__ import annotations

import logging

import asyncpg

from services.infra.settings import Role

log = logging.getLogger(__name__)

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
