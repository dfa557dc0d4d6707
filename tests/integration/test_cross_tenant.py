"""Adversarial cross-tenant suite: a key of org A tries every way to see or touch org B.

Org B's data is real (overrides at every level, projected and cached); org A's
keys forge B's org id in the path, the query string, the body, the headers,
and in spellings a sloppy router might fold onto B; ask for B's streams and
events on the audit API; and, underneath the HTTP layer, SQL runs directly as
each service's Postgres role with A's context (or none) set. Nothing of B may
come back: no row, no value, no event id, and no refusal that differs from
the one for an org that does not exist. (The authorization matrix covers
every route × role × target; this file covers the ways of naming a tenant.)

The audit trail (`event_store`, `snapshots`, `snapshot_runs`) is under row-level
security too: as the command role, under A's tenancy, no query, however unfiltered,
returns a row of B's; the system tenancy sees only system rows; only the explicit
cross-tenant reader sees them all, and no tenancy writes a row it does not own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from services.command.eventstore.audit_reads import PostgresAuditStore
from services.command.eventstore.snapshot_store import PostgresHistory
from services.command.history import HistoryFilter
from services.command.timetravel.positions import kafka_positions
from services.command.timetravel.snapshots import take
from services.infra.postgres import create_pool, set_tenancy
from services.infra.settings import Role, Settings
from services.infra.tenancy import Tenancy
from tests.support.auth import admin_headers, bearer
from tests.support.stack import Stack, start_stack
from tests.support.tenants import REASON, Evidence, Tenants, create_key, expect, seed_tenants

pytestmark = pytest.mark.integration

TENANT_TABLES = ("overrides", "flag_history", "stream_heads")
AUDIT_TRAIL = {  # table -> the column naming its tenant ('' in `snapshots.scope`: the system part)
    "event_store": "org_id",
    "snapshots": "NULLIF(scope, '')",
    "snapshot_runs": "NULL::text",
}


@dataclass
class Attack:
    stack: Stack
    tenants: Tenants
    evidence: Evidence
    admin: httpx.AsyncClient  # org admin of A
    evaluator: httpx.AsyncClient  # evaluator of A
    auditor: httpx.AsyncClient  # auditor of A

    @property
    def t(self) -> Tenants:
        return self.tenants

    def leaks(self, response: httpx.Response) -> list[str]:
        """Whatever of B's identity or event ids shows up in an answer."""
        text = response.text
        return [secret for secret in (self.t.b, *self.t.events[self.t.b]) if secret in text]


@pytest.fixture(scope="module")
def tenant_stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("cross-tenant-logs"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
async def attack(tenant_stack: Stack) -> AsyncIterator[Attack]:
    stack, tenants = tenant_stack, Tenants.new()
    evidence = await Evidence.open(stack.settings)
    async with httpx.AsyncClient(timeout=15, headers=admin_headers(stack.settings)) as root:
        await seed_tenants(root, stack.command_url, tenants)
        keys = {role: await create_key(root, stack.command_url, role, tenants.a)
                for role in ("org-admin", "evaluator", "auditor")}
    await evidence.settle()
    clients = [httpx.AsyncClient(timeout=15, headers=bearer(keys[role]["key"]))
               for role in ("org-admin", "evaluator", "auditor")]
    try:
        yield Attack(stack, tenants, evidence, *clients)
    finally:
        for client in clients:
            await client.aclose()
        await evidence.close()


# --- HTTP: every place a request can name an org ------------------------------------------------------------


async def test_forged_org_in_the_path_is_refused_exactly_like_an_org_that_does_not_exist(attack: Attack) -> None:
    t, q = attack.t, attack.stack.query_url
    for client in (attack.admin, attack.evaluator):
        for org_b, ghost in ((t.b, t.c), (t.b, "ghost")):
            real = await client.get(f"{q}/v1/orgs/{org_b}/flags/{t.flag}", params={"platform": "meta", "user": t.user})
            fake = await client.get(f"{q}/v1/orgs/{ghost}/flags/{t.flag}", params={"platform": "meta", "user": t.user})
            assert (real.status_code, real.json()) == (fake.status_code, fake.json()) == (
                403, {"error": "forbidden", "detail": "this key may not access that resource", "field": None})


async def test_spellings_that_might_fold_onto_b_never_reach_it(attack: Attack) -> None:
    t, q = attack.t, attack.stack.query_url
    spellings = [
        t.b.upper(), f"{t.b}%20", f"%20{t.b}", f"{t.b}%00", f"{t.a}%2F..%2F{t.b}", f"{t.a}/../{t.b}",
        f"{t.b}%2F", f"{t.b};org={t.a}", "%2A", "*", f"{t.a},{t.b}", f"{t.a}%2C{t.b}",
    ]
    for spelling in spellings:
        url = httpx.URL(f"{q}/v1/orgs/{spelling}/flags/{t.flag}")
        response = await attack.evaluator.get(url, params={"user": t.user})
        assert response.status_code in (403, 404, 422), (spelling, response.status_code, response.text)
        assert attack.leaks(response) == [], spelling


async def test_a_forged_org_anywhere_else_in_the_request_changes_nothing(attack: Attack) -> None:
    """Query string, headers and cookies do not name the tenant: the answer is A's, whatever they say."""
    t, q = attack.t, attack.stack.query_url
    honest = await expect(await attack.evaluator.get(f"{q}/v1/orgs/{t.a}/flags/{t.flag}", params={"user": t.user}), 200)
    forgeries = [
        {"params": {"user": t.user, "org": t.b, "org_id": t.b, "tenant": t.b}},
        {"params": {"user": t.user}, "headers": {"X-Org-Id": t.b, "X-Tenant": t.b, "X-Forwarded-Host": t.b}},
        {"params": {"user": t.user}, "headers": {"Cookie": f"org={t.b}; org_id={t.b}"}},
    ]
    for forgery in forgeries:
        response = await attack.evaluator.get(f"{q}/v1/orgs/{t.a}/flags/{t.flag}", **forgery)
        assert response.status_code == 200, (forgery, response.text)
        assert response.json() == honest
        assert attack.leaks(response) == []


async def test_a_forged_org_in_a_write_body_writes_nothing(attack: Attack) -> None:
    t, c = attack.t, attack.stack.command_url
    before = await attack.evidence.snapshot()
    path = f"{c}/v1/orgs/{t.a}/flags/{t.flag}"
    for extra in ({"org_id": t.b}, {"org": t.b}, {"actor": {"id": "key:forged", "name": "someone else"}}):
        response = await attack.admin.put(path, json={"enabled": False, "reason": REASON, **extra})
        assert response.status_code == 422, (extra, response.text)
        assert response.json()["field"] == next(iter(extra)), response.text
    response = await attack.admin.post(f"{c}/v1/keys", json={"name": "x", "role": "evaluator", "org_id": t.b,
                                                            "reason": REASON})
    assert response.status_code == 403
    assert await attack.evidence.snapshot() == before


async def test_the_audit_api_shows_none_of_bs_events(attack: Attack) -> None:
    t, c = attack.t, attack.stack.command_url
    for client in (attack.admin, attack.auditor):
        page = await expect(await client.get(f"{c}/v1/events", params={"limit": "1000"}), 200)
        ids = {event["event_id"] for event in page["events"]}
        assert ids >= set(t.events[t.a]), "A's own events are missing"
        assert ids.isdisjoint(t.events[t.b])
        assert all(event.get("org_id") in (None, t.a) for event in page["events"])
        for stream in (f"org/{t.b}/flag/{t.flag}", f"org/{t.b}/platform/meta/flag/{t.flag}",
                       f"org/{t.b}/user/{t.user}/flag/{t.flag}"):
            real = await client.get(f"{c}/v1/streams/{stream}")
            fake = await client.get(f"{c}/v1/streams/{stream.replace(t.b, t.c)}")
            assert real.status_code == fake.status_code == 403
            assert real.json() == fake.json()
            assert attack.leaks(real) == []


async def test_the_org_catalogue_and_platform_answers_hold_only_a(attack: Attack) -> None:
    t, q = attack.t, attack.stack.query_url
    for path in (f"/v1/orgs/{t.a}/flags", f"/v1/orgs/{t.a}/platforms", "/v1/flags"):
        response = await expect(await attack.evaluator.get(q + path, params={"user": t.user}), 200)
        assert t.b not in json.dumps(response)


# --- SQL: each service role, straight at Postgres -------------------------------------------------------


async def _connect(settings: Settings, role: Role) -> asyncpg.Connection:
    return await asyncpg.connect(settings.pg_dsn(role))


async def _as_org(conn: asyncpg.Connection, org: str | None, sql: str) -> list[asyncpg.Record]:
    async with conn.transaction():
        if org is not None:
            await conn.execute("SELECT set_config('flags.org_id', $1, true)", org)
        return await conn.fetch(sql)


async def test_no_service_role_is_superuser_or_bypasses_rls(attack: Attack) -> None:
    rows = await attack.evidence.conn.fetch(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY($1::text[])", [r.value for r in Role]
    )
    assert {r["rolname"] for r in rows} == {r.value for r in Role}
    assert [r["rolname"] for r in rows if r["rolsuper"] or r["rolbypassrls"]] == []


@pytest.mark.parametrize("role", [Role.QUERY, Role.PROJECTOR])
async def test_a_role_with_as_context_reads_no_row_of_b_and_without_context_no_tenant_row(
    attack: Attack, role: Role
) -> None:
    t = attack.t
    conn = await _connect(attack.stack.settings, role)
    try:
        for table in TENANT_TABLES:
            in_a = await _as_org(conn, t.a, f"SELECT org_id FROM {table} WHERE org_id IS NOT NULL")
            assert in_a, f"{role} sees none of A's rows in {table}: the test proves nothing"
            assert {r["org_id"] for r in in_a} == {t.a}, table
            asked_for_b = await _as_org(conn, t.a, f"SELECT * FROM {table} WHERE org_id = '{t.b}'")
            assert asked_for_b == [], table
            no_context = await _as_org(conn, None, f"SELECT org_id FROM {table} WHERE org_id IS NOT NULL")
            assert no_context == [], f"{role} reads tenant rows of {table} with no org set"
    finally:
        await conn.close()


async def test_the_projector_cannot_write_a_row_for_b_under_as_context(attack: Attack) -> None:
    t = attack.t
    conn = await _connect(attack.stack.settings, Role.PROJECTOR)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await _as_org(conn, t.a, f"""
                INSERT INTO overrides (org_id, level, flag_key, enabled, stream, version, event_id, actor, reason,
                                       updated_at)
                VALUES ('{t.b}', 'org', '{t.flag}', false, 'forged', 99, gen_random_uuid(), 'x', 'x', now())
                RETURNING org_id""")
        changed = await _as_org(conn, t.a, f"UPDATE overrides SET enabled = false WHERE org_id = '{t.b}' RETURNING 1")
        assert changed == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT secret_hash FROM api_keys")
    finally:
        await conn.close()


async def test_the_query_role_cannot_write_and_reads_only_what_it_needs(attack: Attack) -> None:
    t = attack.t
    conn = await _connect(attack.stack.settings, Role.QUERY)
    try:
        for statement in (
            f"UPDATE overrides SET enabled = false WHERE org_id = '{t.a}'",
            f"DELETE FROM flag_history WHERE org_id = '{t.a}'",
            "INSERT INTO flags (flag_key) VALUES ('x')",
            "SELECT * FROM event_store LIMIT 1",
            "UPDATE stream_heads SET version = 0",
            "SELECT last_used_at, created_at FROM api_keys LIMIT 1",
            "UPDATE api_keys SET revoked_at = NULL",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as_org(conn, t.a, statement)
    finally:
        await conn.close()


async def test_redis_holds_b_only_under_bs_namespace(attack: Attack) -> None:
    """Every cached document lives under its org's own key; nothing of B sits under A's."""
    t, redis = attack.t, attack.evidence.redis
    await expect(await attack.evaluator.get(f"{attack.stack.query_url}/v1/orgs/{t.a}/flags",
                                            params={"user": t.user}), 200)
    names = [name.decode() async for name in redis.scan_iter(match=f"{attack.stack.settings.redis_prefix}:*")]
    assert any(t.a in name for name in names), "A's documents are not cached: the test proves nothing"
    for name in names:
        if t.a in name:
            assert t.b not in (await redis.get(name) or b"").decode(errors="replace"), name


# --- the audit trail: event_store, snapshots, snapshot_runs under row-level security -------------------------


@pytest.fixture(scope="module")
async def trail(attack: Attack) -> Attack:
    """The attack's log, plus a system-wide key's event (a system row outside the catalogue) and a snapshot run."""
    settings = attack.stack.settings
    async with httpx.AsyncClient(timeout=15, headers=admin_headers(settings)) as root:
        await create_key(root, attack.stack.command_url, "auditor", None)
    await attack.evidence.settle()
    pool = await create_pool(settings, Role.COMMAND)
    try:
        run = await take(PostgresHistory(pool), lambda seq, start: kafka_positions(settings, seq, start), settle=0.0)
    finally:
        await pool.close()
    assert run is not None, "the snapshot job wrote nothing: the snapshot tests would prove nothing"
    return attack


async def _as(conn: asyncpg.Connection, tenancy: Tenancy, sql: str, *args: object) -> list[asyncpg.Record]:
    async with conn.transaction():
        await set_tenancy(conn, tenancy)
        return await conn.fetch(sql, *args)


async def _owners(conn: asyncpg.Connection, tenancy: Tenancy | None, table: str) -> list[tuple[str | None, str]]:
    """(tenant, stream or scope) of every row `tenancy` sees in `table`, with no WHERE at all."""
    owner, what = AUDIT_TRAIL[table], {"event_store": "stream", "snapshots": "scope"}.get(table, "''")
    sql = f"SELECT {owner} AS org_id, {what} AS what FROM {table}"
    if tenancy is None:
        return [(r["org_id"], r["what"]) for r in await conn.fetch(sql)]
    return [(r["org_id"], r["what"]) for r in await _as(conn, tenancy, sql)]


def _catalogue(table: str, org: str | None, what: str) -> bool:
    """A system row every tenant reads: a definition's or system default's event, the system snapshot part."""
    return org is None and (table == "snapshots" or (table == "event_store" and what.startswith("flag/")))


async def _everything(trail: Attack, table: str) -> list[tuple[str | None, str]]:
    """What is really there: read as the superuser, whom row-level security does not bind."""
    return await _owners(trail.evidence.conn, None, table)


async def test_under_as_tenancy_no_query_of_the_audit_trail_returns_a_row_of_b(trail: Attack) -> None:
    """A's rows and the catalogue (definitions and system defaults, the system snapshot part), nothing else."""
    t = trail.t
    conn = await _connect(trail.stack.settings, Role.COMMAND)
    try:
        for table in AUDIT_TRAIL:
            everything = await _everything(trail, table)
            if table != "snapshot_runs":
                assert any(org == t.b for org, _ in everything), f"B has no rows in {table}: the test proves nothing"
                assert any(org == t.a for org, _ in everything), f"A has no rows in {table}: the test proves nothing"
            expected = [(org, what) for org, what in everything if org == t.a or _catalogue(table, org, what)]
            seen = await _owners(conn, Tenancy.tenant(t.a), table)
            assert sorted(seen, key=repr) == sorted(expected, key=repr), table
            asked_for_b = await _as(
                conn, Tenancy.tenant(t.a), f"SELECT 1 FROM {table} WHERE {AUDIT_TRAIL[table]} = $1", t.b
            )
            assert asked_for_b == [], table
    finally:
        await conn.close()


async def test_the_system_tenancy_sees_every_system_row_and_no_tenants(trail: Attack) -> None:
    conn = await _connect(trail.stack.settings, Role.COMMAND)
    try:
        for table in AUDIT_TRAIL:
            system = [row for row in await _everything(trail, table) if row[0] is None]
            assert system, f"no system rows in {table}: the test proves nothing"
            for tenancy in (Tenancy.SYSTEM, None):  # None: a transaction that set no tenancy at all
                assert sorted(await _owners(conn, tenancy, table), key=repr) == sorted(system, key=repr), table
        streams = {stream for org, stream in await _owners(conn, Tenancy.SYSTEM, "event_store")}
        assert any(s.startswith("key/") for s in streams), "the system-wide key's event is not seen as a system row"
    finally:
        await conn.close()


async def test_only_the_cross_tenant_reader_sees_every_row(trail: Attack) -> None:
    conn = await _connect(trail.stack.settings, Role.COMMAND)
    try:
        for table in AUDIT_TRAIL:
            every = await _owners(conn, Tenancy.CROSS_TENANT, table)
            assert sorted(every, key=repr) == sorted(await _everything(trail, table), key=repr), table
    finally:
        await conn.close()


async def test_the_owner_is_bound_too(trail: Attack) -> None:
    """FORCE: the role that owns the tables, and so every migration, sees no tenant row without a tenancy."""
    conn = await _connect(trail.stack.settings, Role.OWNER)
    try:
        for table in AUDIT_TRAIL:
            assert [row for row in await _owners(conn, None, table) if row[0] is not None] == [], table
    finally:
        await conn.close()


async def test_postgres_refuses_a_row_written_under_another_tenancy(trail: Attack) -> None:
    t = trail.t
    conn = await _connect(trail.stack.settings, Role.COMMAND)
    forged = f"""
        INSERT INTO event_store (stream, version, sequence, event_id, type, org_id, flag_key, partition_key,
                                 occurred_at, hash, body)
        VALUES ($1, 99, nextval('event_sequence'), gen_random_uuid(), 'OrgOverrideSet', $2, '{t.flag}', 'x', now(),
                'x', '{{}}'::bytea)"""
    part = "INSERT INTO snapshots (scope, sequence, covered_until, events, state) VALUES ($1, 0, now(), 0, '{}')"
    refusals = [
        (Tenancy.tenant(t.b), forged, (f"org/{t.a}/flag/{t.flag}", t.a)),  # A's row under B
        (Tenancy.tenant(t.a), forged, (f"flag/{t.flag}", None)),  # a system row under a tenant
        (Tenancy.SYSTEM, forged, (f"org/{t.a}/flag/{t.flag}", t.a)),  # a tenant's row under the system
        (Tenancy.CROSS_TENANT, forged, (f"flag/{t.flag}", None)),  # the cross-tenant reader writes nothing
        (Tenancy.CROSS_TENANT, forged, (f"org/{t.a}/flag/{t.flag}", t.a)),
        (Tenancy.tenant(t.b), part, (t.a,)),
        (Tenancy.SYSTEM, part, (t.a,)),
        (Tenancy.CROSS_TENANT, part, ("",)),
        (Tenancy.tenant(t.a), "INSERT INTO snapshot_runs (sequence, covered_until, kafka_offsets)"
                              " VALUES (0, now(), '{}')", ()),
    ]
    before = await trail.evidence.snapshot()
    try:
        for tenancy, sql, args in refusals:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await _as(conn, tenancy, sql, *args)
        for tenancy in (Tenancy.tenant(t.a), Tenancy.SYSTEM):  # the relay's stamp is cross-tenant only
            stamped = await _as(conn, tenancy, "UPDATE event_store SET published_at = now() RETURNING 1")
            assert stamped == [], tenancy
    finally:
        await conn.close()
    assert await trail.evidence.snapshot() == before


async def test_the_audit_and_time_travel_stores_under_as_tenancy_find_nothing_of_b_even_unfiltered(
    trail: Attack,
) -> None:
    """What a route that forgot its org filter would get: A's rows and the catalogue, never B's."""
    t = trail.t
    pool = await create_pool(trail.stack.settings, Role.COMMAND)
    try:
        audit = PostgresAuditStore(pool).reading_as(Tenancy.tenant(t.a))
        page = await audit.page(HistoryFilter(), after=None, limit=10_000)  # no org, no flag: everything it may see
        orgs = {json.loads(body)["org_id"] for _, body in page}
        assert t.a in orgs and orgs <= {t.a, None}
        assert not await audit.org_known(t.b)
        assert await audit.override_streams(t.b, None) == []
        assert await audit.value_at_version(f"org/{t.b}/flag/{t.flag}", 1) is None

        history = PostgresHistory(pool).reading_as(Tenancy.tenant(t.a))
        now = await trail.evidence.conn.fetchval("SELECT now()")
        assert await history.events(t.a, after=0, until=now), "A's own events are missing"
        assert await history.events(t.b, after=0, until=now) == []
        assert await history.nearest_part(t.a, now) is not None
        assert await history.nearest_part(t.b, now) is None
        assert await history.nearest_part("", now) is not None  # the catalogue's part

        everyone = PostgresHistory(pool).reading_as(Tenancy.CROSS_TENANT)
        assert await everyone.events(t.b, after=0, until=now)
        assert await everyone.nearest_part(t.b, now) is not None
    finally:
        await pool.close()


async def test_an_org_auditor_reads_its_org_and_a_system_auditor_every_org(trail: Attack) -> None:
    """Over HTTP: A's auditor's time travel of B is the uniform refusal; the system-wide auditor's answers."""
    t, c = trail.t, trail.stack.command_url
    async with httpx.AsyncClient(timeout=15, headers=admin_headers(trail.stack.settings)) as root:
        system_auditor = await create_key(root, c, "auditor", None)
    at = (await trail.evidence.conn.fetchval("SELECT now()")).isoformat()
    refused = await trail.auditor.get(f"{c}/v1/audit/at", params={"org": t.b, "at": at})
    assert refused.status_code == 403 and trail.leaks(refused) == []
    async with httpx.AsyncClient(timeout=15, headers=bearer(system_auditor["key"])) as auditor:
        for org in (t.a, t.b):
            answer = await expect(await auditor.get(f"{c}/v1/audit/at", params={"org": org, "at": at}), 200)
            assert t.flag in {f["flag_key"] for f in answer["flags"]}
        events = await expect(await auditor.get(f"{c}/v1/events", params={"limit": "1000"}), 200)
        assert {e["org_id"] for e in events["events"]} >= {t.a, t.b}
