"""The projector's Postgres adapter: offsets, stream heads and the read models, all SQL here.

Everything a batch writes happens on one connection in one transaction
(`PostgresStore.batch`). Row-level security binds the projector like any other
role, so rows are written tenant by tenant with the tenant context set for each.
To do that without a round trip per tenant, a batch is staged with binary COPY
into session-private temp tables (no RLS: they belong to this session alone) and
applied by one constant `DO` block that loops over the staged tenants, calling
`set_config('flags.org_id', org, true)` (what `set_tenant` does) before each
tenant's statements. Stream heads for a cache miss are read the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from flaglog import TopicPartition
from services.infra.pg_errors import UNREACHABLE, quiet_pool_floor_retries
from services.infra.settings import Role, Settings
from services.projector.heads import Head
from services.projector.rows import stored_definition
from services.projector.tenant_plan import TenantPlan

LOCK_OFFSETS = """
    SELECT topic, partition, next_offset FROM projector_offsets
    WHERE consumer_group = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
    ORDER BY topic, partition
    FOR UPDATE
"""
# Creating the rows first makes two consumers that both think they own a new
# partition queue on the row lock instead of both applying the batch.
CREATE_OFFSETS = """
    INSERT INTO projector_offsets (consumer_group, topic, partition, next_offset)
    SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS u(t, p)
    ON CONFLICT DO NOTHING
"""
ADVANCE_OFFSETS = """
    UPDATE projector_offsets o SET next_offset = u.n, updated_at = now()
    FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, n)
    WHERE o.consumer_group = $1 AND o.topic = u.t AND o.partition = u.p AND o.next_offset < u.n
"""
STORED_OFFSETS = """
    SELECT partition, next_offset FROM projector_offsets
    WHERE consumer_group = $1 AND topic = $2 AND next_offset > 0
"""
NOTHING_PROJECTED = "SELECT NOT EXISTS (SELECT 1 FROM projector_offsets WHERE next_offset > 0)"
DEFINITIONS = (
    "SELECT flag_key, kind, description, owner, grp, archived, killed, variants::text, expires_at, value_type, "
    "variant_values::text, default_variant, off_variant FROM flags "
    "WHERE flag_key = ANY($1::text[])"
)

# Per connection: the staging tables (emptied by clear_staged() before each commit), and
# generic plans for the statements a batch repeats with different tenants.
STAGING_SETUP = """
SET plan_cache_mode = force_generic_plan;
CREATE TEMP TABLE IF NOT EXISTS stage_heads (stream text, org_id text, version int, hash text);
CREATE TEMP TABLE IF NOT EXISTS stage_history (LIKE flag_history);
CREATE TEMP TABLE IF NOT EXISTS stage_overrides (LIKE overrides);
CREATE TEMP TABLE IF NOT EXISTS stage_override_deletes
    (org_id text, level text, platform text, user_id text, flag_key text);
CREATE TEMP TABLE IF NOT EXISTS stage_flags (LIKE flags);
CREATE TEMP TABLE IF NOT EXISTS stage_system (LIKE system_defaults);
CREATE TEMP TABLE IF NOT EXISTS stage_system_deletes (flag_key text);
CREATE TEMP TABLE IF NOT EXISTS stage_rules (LIKE targeting_rules);
CREATE TEMP TABLE IF NOT EXISTS stage_rule_deletes (org_id text, stream text);
CREATE TEMP TABLE IF NOT EXISTS stage_wanted (org_id text, stream text);
CREATE TEMP TABLE IF NOT EXISTS stage_found (stream text, version int, hash text);
CREATE TEMP TABLE IF NOT EXISTS stage_override_counts (flag_key text, orgs int, overrides int);
CREATE INDEX IF NOT EXISTS stage_heads_org ON stage_heads (org_id);
CREATE INDEX IF NOT EXISTS stage_history_org ON stage_history (org_id);
CREATE INDEX IF NOT EXISTS stage_overrides_org ON stage_overrides (org_id);
CREATE INDEX IF NOT EXISTS stage_override_deletes_org ON stage_override_deletes (org_id);
CREATE INDEX IF NOT EXISTS stage_wanted_org ON stage_wanted (org_id);
"""

STAGING_TABLES = (
    "stage_heads",
    "stage_history",
    "stage_overrides",
    "stage_override_deletes",
    "stage_flags",
    "stage_system",
    "stage_system_deletes",
    "stage_rules",
    "stage_rule_deletes",
    "stage_wanted",
    "stage_found",
    "stage_override_counts",
)
STAGING_BYTES_BEFORE_TRUNCATE = 4 << 20
STAGED_ROWS_BEFORE_TRUNCATE = 500
_STAGING_BYTES = " + ".join(f"pg_total_relation_size('pg_temp.{t}')" for t in STAGING_TABLES)

# Why not ON COMMIT DELETE ROWS: Postgres then truncates every staging table, index and
# TOAST table at each commit that touched any of them, 3-4 ms, most of a one-event
# batch's time. Deleting a small batch's rows costs microseconds; temp tables are never
# autovacuumed, so once the dead rows add up to a few MB one TRUNCATE lets them go. A large
# batch truncates at once: its dead rows would slow the next batches' per-tenant scans.
CLEAR_STAGED = f"""
CREATE OR REPLACE FUNCTION pg_temp.clear_staged(staged bigint) RETURNS void LANGUAGE plpgsql AS $clear$
BEGIN
    IF staged > {STAGED_ROWS_BEFORE_TRUNCATE} OR {_STAGING_BYTES} > {STAGING_BYTES_BEFORE_TRUNCATE} THEN
        TRUNCATE {", ".join(STAGING_TABLES)};
    ELSE
        {" ".join(f"DELETE FROM {t};" for t in STAGING_TABLES)}
    END IF;
END
$clear$;
"""

# Staged rows → read models. Constant text: the only input is what was staged.
APPLY_STAGED = """
CREATE OR REPLACE FUNCTION pg_temp.apply_staged() RETURNS void LANGUAGE plpgsql AS $apply$
DECLARE
    tenant text;
BEGIN
    -- System rows: definitions and system defaults have no RLS; their heads and
    -- history rows carry org_id NULL, which every tenant context may write.
    PERFORM set_config('flags.org_id', '', true);
    INSERT INTO flags SELECT * FROM stage_flags
    ON CONFLICT (flag_key) DO UPDATE SET
        kind = EXCLUDED.kind, description = EXCLUDED.description, owner = EXCLUDED.owner,
        grp = EXCLUDED.grp, archived = EXCLUDED.archived, version = EXCLUDED.version,
        event_id = EXCLUDED.event_id, actor = EXCLUDED.actor, reason = EXCLUDED.reason,
        updated_at = EXCLUDED.updated_at, killed = EXCLUDED.killed, variants = EXCLUDED.variants,
        expires_at = EXCLUDED.expires_at, value_type = EXCLUDED.value_type,
        variant_values = EXCLUDED.variant_values, default_variant = EXCLUDED.default_variant,
        off_variant = EXCLUDED.off_variant;
    INSERT INTO system_defaults SELECT * FROM stage_system
    ON CONFLICT (flag_key) DO UPDATE SET
        enabled = EXCLUDED.enabled, rollout_percentage = EXCLUDED.rollout_percentage,
        stream = EXCLUDED.stream, version = EXCLUDED.version, event_id = EXCLUDED.event_id,
        actor = EXCLUDED.actor, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at,
        schedule = EXCLUDED.schedule, variant = EXCLUDED.variant, split = EXCLUDED.split;
    DELETE FROM system_defaults WHERE flag_key IN (SELECT flag_key FROM stage_system_deletes);
    INSERT INTO targeting_rules SELECT * FROM stage_rules WHERE org_id IS NULL
    ON CONFLICT (stream) DO UPDATE SET
        rules = EXCLUDED.rules, version = EXCLUDED.version, event_id = EXCLUDED.event_id,
        actor = EXCLUDED.actor, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at;
    DELETE FROM targeting_rules
    WHERE org_id IS NULL AND stream IN (SELECT stream FROM stage_rule_deletes WHERE org_id IS NULL);
    INSERT INTO stream_heads SELECT stream, org_id, version, hash FROM stage_heads WHERE org_id IS NULL
    ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version, hash = EXCLUDED.hash;
    INSERT INTO flag_history SELECT * FROM stage_history WHERE org_id IS NULL
    ON CONFLICT (event_id) DO NOTHING;

    FOR tenant IN SELECT DISTINCT org_id FROM stage_heads WHERE org_id IS NOT NULL LOOP
        PERFORM set_config('flags.org_id', tenant, true);  -- RLS: this tenant's rows only
        -- flag_override_counts: minus this org's overrides of each touched flag before, plus after
        INSERT INTO stage_override_counts
        SELECT flag_key, -(n > 0)::int, -n FROM (
            SELECT t.flag_key,
                   (SELECT count(*) FROM overrides o WHERE o.org_id = tenant AND o.flag_key = t.flag_key)::int
            FROM (SELECT flag_key FROM stage_overrides WHERE org_id = tenant
                  UNION SELECT flag_key FROM stage_override_deletes WHERE org_id = tenant) t
        ) AS c(flag_key, n);
        INSERT INTO overrides SELECT * FROM stage_overrides WHERE org_id = tenant
        ON CONFLICT (org_id, level, platform, user_id, flag_key) DO UPDATE SET
            enabled = EXCLUDED.enabled, rollout_percentage = EXCLUDED.rollout_percentage,
            stream = EXCLUDED.stream, version = EXCLUDED.version, event_id = EXCLUDED.event_id,
            actor = EXCLUDED.actor, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at,
            schedule = EXCLUDED.schedule, variant = EXCLUDED.variant, split = EXCLUDED.split;
        DELETE FROM overrides o USING stage_override_deletes d
        WHERE d.org_id = tenant AND o.org_id = tenant AND o.level = d.level
          AND o.platform = d.platform AND o.user_id = d.user_id AND o.flag_key = d.flag_key;
        INSERT INTO stage_override_counts
        SELECT flag_key, (n > 0)::int, n FROM (
            SELECT t.flag_key,
                   (SELECT count(*) FROM overrides o WHERE o.org_id = tenant AND o.flag_key = t.flag_key)::int
            FROM (SELECT flag_key FROM stage_overrides WHERE org_id = tenant
                  UNION SELECT flag_key FROM stage_override_deletes WHERE org_id = tenant) t
        ) AS c(flag_key, n);
        INSERT INTO targeting_rules SELECT * FROM stage_rules WHERE org_id = tenant
        ON CONFLICT (stream) DO UPDATE SET
            rules = EXCLUDED.rules, version = EXCLUDED.version, event_id = EXCLUDED.event_id,
            actor = EXCLUDED.actor, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at;
        DELETE FROM targeting_rules
        WHERE org_id = tenant AND stream IN (SELECT stream FROM stage_rule_deletes WHERE org_id = tenant);
        INSERT INTO stream_heads SELECT stream, org_id, version, hash FROM stage_heads WHERE org_id = tenant
        ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version, hash = EXCLUDED.hash;
        INSERT INTO flag_history SELECT * FROM stage_history WHERE org_id = tenant
        ON CONFLICT (event_id) DO NOTHING;
    END LOOP;
    PERFORM set_config('flags.org_id', '', true);
    -- In key order, so concurrent projectors lock the count rows in the same order.
    INSERT INTO flag_override_counts AS c (flag_key, orgs, overrides)
    SELECT flag_key, sum(orgs), sum(overrides) FROM stage_override_counts GROUP BY flag_key
    HAVING sum(orgs) <> 0 OR sum(overrides) <> 0 ORDER BY flag_key
    ON CONFLICT (flag_key) DO UPDATE SET orgs = c.orgs + EXCLUDED.orgs, overrides = c.overrides + EXCLUDED.overrides;
    DELETE FROM flag_override_counts
    WHERE overrides = 0 AND flag_key IN (SELECT flag_key FROM stage_override_counts);
END
$apply$;
"""

READ_STAGED_HEADS = """
CREATE OR REPLACE FUNCTION pg_temp.read_staged_heads() RETURNS void LANGUAGE plpgsql AS $heads$
DECLARE
    tenant text;
BEGIN
    PERFORM set_config('flags.org_id', '', true);
    INSERT INTO stage_found
    SELECT h.stream, h.version, h.hash FROM stream_heads h JOIN stage_wanted w USING (stream)
    WHERE w.org_id IS NULL AND h.org_id IS NULL;
    FOR tenant IN SELECT DISTINCT org_id FROM stage_wanted WHERE org_id IS NOT NULL LOOP
        PERFORM set_config('flags.org_id', tenant, true);
        INSERT INTO stage_found
        SELECT h.stream, h.version, h.hash FROM stream_heads h JOIN stage_wanted w USING (stream)
        WHERE w.org_id = tenant AND h.org_id = tenant;
    END LOOP;
    PERFORM set_config('flags.org_id', '', true);
END
$heads$;
"""

# Functions in pg_temp, not DO blocks: compiled once per connection instead of per batch.
SESSION_SETUP = STAGING_SETUP + CLEAR_STAGED + APPLY_STAGED + READ_STAGED_HEADS

HISTORY_COLUMNS = (
    "event_id", "sequence", "org_id", "stream", "version", "type", "flag_key", "level", "platform",
    "user_id", "actor_id", "actor_name", "reason", "previous", "new", "occurred_at",
)  # fmt: skip
OVERRIDE_COLUMNS = (
    "org_id", "level", "platform", "user_id", "flag_key", "enabled", "rollout_percentage", "stream",
    "version", "event_id", "actor", "reason", "updated_at", "schedule", "variant", "split",
)  # fmt: skip
FLAG_COLUMNS = (
    "flag_key", "kind", "description", "owner", "grp", "archived", "version", "event_id", "actor",
    "reason", "updated_at", "killed", "variants", "expires_at", "value_type", "variant_values", "default_variant",
    "off_variant",
)  # fmt: skip
SYSTEM_COLUMNS = (
    "flag_key", "enabled", "rollout_percentage", "stream", "version", "event_id", "actor", "reason",
    "updated_at", "schedule", "variant", "split",
)  # fmt: skip

RULES_COLUMNS = ("stream", "org_id", "flag_key", "rules", "version", "event_id", "actor", "reason", "updated_at")


def staged_rows(plans: Iterable[TenantPlan]) -> dict[str, list[tuple[Any, ...]]]:
    """Each staging table's rows for these plans (tables with no rows are left out)."""
    tables: dict[str, list[tuple[Any, ...]]] = {
        "stage_heads": [],
        "stage_history": [],
        "stage_overrides": [],
        "stage_override_deletes": [],
        "stage_flags": [],
        "stage_system": [],
        "stage_system_deletes": [],
        "stage_rules": [],
        "stage_rule_deletes": [],
    }
    for plan in plans:
        if not plan.changed:
            continue
        org = plan.org_id
        tables["stage_heads"].extend((stream, org, h.version, h.hash) for stream, h in plan.heads.items())
        tables["stage_history"].extend((h.event_id, h.sequence, org, *h[2:]) for h in plan.history)
        for key, row in plan.overrides.items():
            if row is None:
                tables["stage_override_deletes"].append((org, *key))
            else:
                tables["stage_overrides"].append((org, *key, *row))
        tables["stage_flags"].extend(plan.definitions.values())
        for flag_key, row in plan.system.items():
            if row is None:
                tables["stage_system_deletes"].append((flag_key,))
            else:
                tables["stage_system"].append((flag_key, *row))
        for stream, rules in plan.rules.items():
            if rules is None:
                tables["stage_rule_deletes"].append((org, stream))
            else:
                tables["stage_rules"].append((stream, org, *rules))
    return {name: rows for name, rows in tables.items() if rows}


COLUMNS: dict[str, Sequence[str]] = {
    "stage_heads": ("stream", "org_id", "version", "hash"),
    "stage_history": HISTORY_COLUMNS,
    "stage_overrides": OVERRIDE_COLUMNS,
    "stage_override_deletes": ("org_id", "level", "platform", "user_id", "flag_key"),
    "stage_flags": FLAG_COLUMNS,
    "stage_system": SYSTEM_COLUMNS,
    "stage_system_deletes": ("flag_key",),
    "stage_rules": RULES_COLUMNS,
    "stage_rule_deletes": ("org_id", "stream"),
    "stage_wanted": ("org_id", "stream"),
}


class BatchTransaction:
    """One batch's transaction: lock offsets, read heads, write plans, advance offsets."""

    def __init__(self, conn: asyncpg.Connection, group: str, *, new_history: bool = False) -> None:
        self._conn = conn
        self._group = group
        self.staged = 0  # rows put in the staging tables, which clear_staged() empties
        self._new_history = new_history

    async def lock_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Lock (creating at 0 if new) and return the next offset to apply of each partition."""
        tps = sorted(set(partitions))
        topics = [tp.topic for tp in tps]
        numbers = [tp.partition for tp in tps]
        await self._conn.execute(CREATE_OFFSETS, self._group, topics, numbers)
        rows = await self._conn.fetch(LOCK_OFFSETS, self._group, topics, numbers)
        return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def nothing_projected(self) -> bool:
        """True when no consumer has applied anything to this database yet."""
        return bool(await self._conn.fetchval(NOTHING_PROJECTED))

    async def definitions(self, flag_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored definitions of these flags, as stream values (what `transition` takes)."""
        rows = await self._conn.fetch(DEFINITIONS, list(flag_keys))
        return {r["flag_key"]: stored_definition(r) for r in rows}

    async def heads(self, wanted: Mapping[str | None, Iterable[str]]) -> dict[str, Head]:
        """Stored heads of these streams, read tenant by tenant (org None: system streams)."""
        records = [(org, stream) for org, streams in wanted.items() for stream in streams]
        if not records:
            return {}
        await self._stage("stage_wanted", records)
        await self._conn.execute("SELECT pg_temp.read_staged_heads()")
        rows = await self._conn.fetch("SELECT stream, version, hash FROM stage_found")
        return {r["stream"]: Head(r["version"], r["hash"]) for r in rows}

    async def write(self, plans: Sequence[TenantPlan]) -> None:
        """Stage every plan's rows, then apply them tenant by tenant in one statement."""
        tables = staged_rows(plans)
        if self._new_history and "stage_history" in tables:
            await self._conn.copy_records_to_table(
                "flag_history", records=tables.pop("stage_history"), columns=list(HISTORY_COLUMNS)
            )
        if not tables:
            return
        for name, rows in tables.items():
            await self._stage(name, rows)
        await self._conn.execute("SELECT pg_temp.apply_staged()")

    async def advance(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the next offsets (never moving one backwards)."""
        if not offsets:
            return
        tps = list(offsets)
        await self._conn.execute(
            ADVANCE_OFFSETS,
            self._group,
            [tp.topic for tp in tps],
            [tp.partition for tp in tps],
            [offsets[tp] for tp in tps],
        )

    async def _stage(self, table: str, records: Sequence[tuple[Any, ...]]) -> None:
        self.staged += len(records)
        await self._conn.copy_records_to_table(
            table, records=records, columns=list(COLUMNS[table]), schema_name="pg_temp"
        )


async def _setup_session(conn: asyncpg.Connection) -> None:
    await conn.execute(SESSION_SETUP)


async def create_projector_pool(settings: Settings, *, schema: str | None = None) -> asyncpg.Pool:
    """Connections as the projector role, each with its staging tables.

    `schema` puts the read models of another schema first on the search path (a rebuild:
    services/projector/rebuild/); every statement here names its tables unqualified.
    """
    server_settings = {"search_path": f'"{schema}"'} if schema is not None else None
    quiet_pool_floor_retries()
    pool = await asyncpg.create_pool(
        settings.pg_dsn(Role.PROJECTOR),
        min_size=1,
        max_size=2,
        command_timeout=60,
        init=_setup_session,
        server_settings=server_settings,
    )
    assert pool is not None
    return pool


# Each ops flag whose kill switch is engaged, with when it was: its last KillSwitchEngaged in the history
# (system-level, so visible under any tenant context), else the definition's last change.
KILL_SWITCHES = """
SELECT f.flag_key, coalesce(max(h.occurred_at), max(f.updated_at)) AS engaged_at
FROM flags f
LEFT JOIN flag_history h ON h.flag_key = f.flag_key AND h.org_id IS NULL AND h.type = 'KillSwitchEngaged'
WHERE f.killed
GROUP BY f.flag_key
"""


class PostgresStore:
    """The read-model database as the projector role.

    `new_history=True` (a rebuild's fold, whose events were never applied): history rows are
    copied straight into `flag_history`, which must have no row-level security (a rebuild's
    has none until it is finished), with no ON CONFLICT, so an event id met again is a data
    error instead of skipped; half the work of staging them and inserting them tenant by tenant.
    """

    def __init__(self, pool: asyncpg.Pool, group: str, *, new_history: bool = False) -> None:
        self._pool = pool
        self._group = group
        self._new_history = new_history

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[BatchTransaction]:
        async with self._pool.acquire() as conn, conn.transaction():
            tx = BatchTransaction(conn, self._group, new_history=self._new_history)
            yield tx
            await conn.execute("SELECT pg_temp.clear_staged($1)", tx.staged)

    async def ping(self) -> bool:
        """Whether Postgres answers within 2 s (the projector's `/readyz`)."""
        try:
            await self._pool.fetchval("SELECT 1", timeout=2)
        except (*UNREACHABLE, asyncpg.PostgresError):  # out of reach, or any error the server answers
            return False
        return True

    async def kill_switches(self) -> dict[str, datetime] | None:
        """Flag key → when its kill switch was engaged, for the engaged ones; None when Postgres does not answer."""
        try:
            rows = await self._pool.fetch(KILL_SWITCHES, timeout=2)
        except (*UNREACHABLE, asyncpg.PostgresError):  # out of reach, or any error the server answers
            return None
        return {r["flag_key"]: r["engaged_at"] for r in rows}

    async def stored_offsets(self, topic: str) -> dict[int, int]:
        """Partition → next offset to apply, for the partitions that have applied anything."""
        rows = await self._pool.fetch(STORED_OFFSETS, self._group, topic)
        return {r["partition"]: r["next_offset"] for r in rows}
