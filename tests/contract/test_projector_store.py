"""The projector's store (`Store` and `Transaction` in services/projector/projection.py): one contract, run on the
fake of tests/support/projector_fakes.py and on `PostgresStore` (the projector role, under RLS).

What the projector relies on: a new partition locks at offset 0; offsets advanced in a batch are
what the next batch locks and what `stored_offsets` reports, and never move back; a batch that
fails leaves nothing; heads and definitions written read back (heads tenant by tenant); the rows
of the plans are upserted and deleted as the log's fold says. Plans are made by the projector's
own pure planning (`plan_tenant`) from `every_row_log`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import asyncpg
import orjson
import pytest
import pytest_asyncio

from events import definition_stream
from flagcore import Definition, Setting, fold
from flaglog import Decoded, TopicPartition, decode_record
from services.infra.settings import Role, Settings
from services.projector.heads import Head
from services.projector.ports import Transaction
from services.projector.store import PostgresStore, create_projector_pool
from services.projector.tenant_plan import TenantPlan, group_by_tenant, plan_tenant
from tests.support.eventlog import LIMITS, THEMES, EventLog, every_row_log
from tests.support.projection import tenant_rows
from tests.support.projector_fakes import FakeStore
from tests.support.records import TOPIC, records

ORGS = ("o1", "o2")
FIRST, SECOND = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)

ReadModels = Callable[[], Awaitable[dict[str, Any]]]


class ProjectorStore(Protocol):
    def batch(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def stored_offsets(self, topic: str) -> dict[int, int]: ...


class Failed(Exception):
    """Raised inside a batch by the tests, after it has written."""


def decoded(log: EventLog) -> list[Decoded]:
    found = [decode_record(r) for r in records(log)]
    assert all(isinstance(d, Decoded) for d in found), found
    return found  # type: ignore[return-value]


async def plan(tx: Transaction, items: Sequence[Decoded]) -> list[TenantPlan]:
    """The projector's planning without its cache of heads: read the heads and definitions, plan each tenant."""
    groups = group_by_tenant(items)
    heads = await tx.heads({org: sorted({i.envelope.stream for i in group}) for org, group in groups.items()})
    keys = {i.envelope.flag_key for i in groups.get(None, ()) if i.scope is None}
    definitions = await tx.definitions(keys)  # type: ignore[arg-type]  # a flag event's key, never None
    return [plan_tenant(org, group, heads, definitions) for org, group in groups.items()]


async def project(store: ProjectorStore, items: Sequence[Decoded]) -> None:
    async with store.batch() as tx:
        await tx.lock_offsets([FIRST])
        await tx.write(await plan(tx, items))
        await tx.advance({FIRST: items[-1].record.offset + 1})


def schedule_of(setting: Setting) -> list[dict[str, Any]] | None:
    return [step.to_value() for step in setting.schedule] or None


def folded_models(log: EventLog) -> dict[str, Any]:
    """The read models' rows as the fold of the whole log says they are (the shape `read_models` returns)."""
    state = fold(log.events)

    def row(s: Setting) -> tuple[Any, ...]:
        assert s.source is not None
        split = s.selection().get("split")
        return (s.enabled, s.rollout_percentage, s.source.version, s.source.event_id, schedule_of(s), s.variant, split)

    overrides: dict[tuple[str, ...], tuple[Any, ...]] = {}
    for org in ORGS:
        rules = state.tenant(org)
        overrides.update(((org, "org", "", "", k), row(s)) for k, s in rules.org.items())
        overrides.update(((org, "platform", p, "", k), row(s)) for (p, k), s in rules.platform.items())
        overrides.update(((org, "user", "", u, k), row(s)) for (u, k), s in rules.user.items())
    rules: dict[str, tuple[Any, ...]] = {}
    for org, table in ((None, state.catalog.rules), *((o, state.tenant(o).rules) for o in ORGS)):
        for key, r in table.items():
            assert r.source is not None
            rules[r.source.stream] = (org, key, state.heads[r.source.stream].value["rules"], r.source.version,  # type: ignore[index]
                                      r.source.event_id)  # fmt: skip
    return {
        "system": {k: row(s) for k, s in state.catalog.system.items()},
        "overrides": overrides,
        "history": sorted(str(e.event_id) for e in log.events),
        "rules": rules,
    }


class ProjectorStoreContract:
    """Subclass with a `store` fixture (an empty store) and a `read_models` fixture reading what it holds."""

    async def test_an_empty_store_has_projected_nothing_and_new_partitions_start_at_zero(
        self, store: ProjectorStore
    ) -> None:
        async with store.batch() as tx:
            assert await tx.nothing_projected()
            assert await tx.lock_offsets([FIRST, SECOND]) == {FIRST: 0, SECOND: 0}
        assert await store.stored_offsets(TOPIC) == {}

    async def test_advanced_offsets_are_locked_by_the_next_batch_and_stored(self, store: ProjectorStore) -> None:
        async with store.batch() as tx:
            await tx.lock_offsets([FIRST, SECOND])
            await tx.advance({FIRST: 5})
        async with store.batch() as tx:
            assert not await tx.nothing_projected()
            assert await tx.lock_offsets([FIRST, SECOND]) == {FIRST: 5, SECOND: 0}
        assert await store.stored_offsets(TOPIC) == {0: 5}  # a partition still at 0 is not reported
        assert await store.stored_offsets("another.topic") == {}

    async def test_an_offset_never_moves_back(self, store: ProjectorStore) -> None:
        for offset in (7, 3):
            async with store.batch() as tx:
                await tx.lock_offsets([FIRST])
                await tx.advance({FIRST: offset})
        assert await store.stored_offsets(TOPIC) == {0: 7}

    async def test_a_batch_that_fails_leaves_nothing_behind(
        self, store: ProjectorStore, read_models: ReadModels
    ) -> None:
        items = decoded(every_row_log())
        with pytest.raises(Failed):
            async with store.batch() as tx:
                await tx.lock_offsets([FIRST])
                await tx.write(await plan(tx, items))
                await tx.advance({FIRST: len(items)})
                raise Failed
        assert await store.stored_offsets(TOPIC) == {}
        assert await read_models() == {"system": {}, "overrides": {}, "history": [], "rules": {}}
        async with store.batch() as tx:
            assert await tx.nothing_projected()
            assert await tx.heads({None: [definition_stream("c.release")], "o1": ["org/o1/flag/c.release"]}) == {}
            assert await tx.definitions(["c.release"]) == {}

    async def test_written_rows_are_what_the_fold_of_the_log_says(
        self, store: ProjectorStore, read_models: ReadModels
    ) -> None:
        log = every_row_log()
        items = decoded(log)
        middle = len(items) // 2  # in two batches: the second upserts and deletes rows the first wrote
        await project(store, items[:middle])
        await project(store, items[middle:])
        models = await read_models()
        assert models == folded_models(log)
        assert set(models["rules"]) == {"flag/c.release/system/rules", "org/o1/flag/c.theme/rules"}  # o2's emptied
        assert models["rules"]["flag/c.release/system/rules"][2][0]["id"] == "acme-staff"  # the second list won
        assert await store.stored_offsets(TOPIC) == {0: len(items)}

    async def test_definitions_read_back_as_the_values_their_events_left(self, store: ProjectorStore) -> None:
        log = every_row_log()
        await project(store, decoded(log))
        expected = {
            key: Definition.from_value(key, e.new).to_value()
            for e in log.events
            if e.new is not None and (key := e.flag_key) is not None and e.stream == definition_stream(key)
        }
        assert {d["kind"] for d in expected.values()} == {"release", "experiment", "ops", "permission"}
        async with store.batch() as tx:
            found = await tx.definitions([*expected, "c.never-defined"])
        assert found == expected
        assert found["c.ops"]["killed"] and found["c.retired"]["archived"]
        assert found["c.experiment"]["variants"] and found["c.experiment"]["expires_at"] == "2030-01-01T00:00:00Z"
        assert (found["c.theme"]["value_type"], found["c.theme"]["values"]) == ("string", THEMES)
        assert found["c.theme"]["description"] == "the colour theme"  # the update applied to the stored definition
        assert (found["c.limits"]["values"], found["c.limits"]["off_variant"]) == (LIMITS, "small")
        assert "value_type" not in found["c.release"]  # a boolean flag reads back as before typed values

    async def test_every_level_keeps_the_variant_or_split_it_serves(
        self, store: ProjectorStore, read_models: ReadModels
    ) -> None:
        await project(store, decoded(every_row_log()))
        models = await read_models()
        selections = {key: row[5:] for key, row in (*models["system"].items(), *models["overrides"].items())}
        assert selections["c.theme"] == ("blue", None)
        assert selections["o1", "org", "", "", "c.limits"] == (None, [{"name": "small", "weight": 700},
                                                                     {"name": "large", "weight": 300}])
        assert selections["o1", "platform", "meta", "", "c.theme"] == ("dark", None)
        assert selections["o1", "user", "", "u1", "c.theme"] == ("light", None)
        assert selections["o2", "org", "", "", "c.limits"] == ("list", None)
        assert selections["c.release"] == (None, None)

    async def test_heads_read_back_tenant_by_tenant(self, store: ProjectorStore) -> None:
        log = every_row_log()
        await project(store, decoded(log))
        last = {e.stream: Head(e.version, e.hash) for e in log.events}
        mine, theirs = "org/o1/flag/c.release", "org/o2/flag/c.experiment"
        async with store.batch() as tx:
            found = await tx.heads({None: [definition_stream("c.ops")], "o1": [mine, theirs, "org/o1/flag/c.none"]})
        assert found == {definition_stream("c.ops"): last[definition_stream("c.ops")], mine: last[mine]}


class TestFakeStore(ProjectorStoreContract):
    @pytest.fixture
    def store(self) -> FakeStore:
        return FakeStore()

    @pytest.fixture
    def read_models(self, store: FakeStore) -> ReadModels:
        def setting(row: Any) -> tuple[Any, ...]:
            schedule = None if row.schedule is None else orjson.loads(row.schedule)
            split = None if row.split is None else orjson.loads(row.split)
            return (row.enabled, row.rollout_percentage, row.version, str(row.event_id), schedule, row.variant, split)

        async def read() -> dict[str, Any]:
            return {
                "system": {k: setting(r) for k, r in store.state["system"].items()},
                "overrides": {k: setting(r) for k, r in store.state["overrides"].items()},
                "history": sorted(str(e) for e in store.state["history"]),
                "rules": {
                    stream: (org, r.flag_key, orjson.loads(r.rules), r.version, str(r.event_id))
                    for stream, (org, r) in store.state["rules"].items()
                },
            }

        return read


@pytest.fixture
def projector_database(make_settings: Callable[[], Settings]) -> Settings:
    """An empty database per test: `nothing_projected` asks about every consumer of it."""
    return make_settings()


@pytest.mark.integration
class TestPostgresStore(ProjectorStoreContract):
    @pytest_asyncio.fixture
    async def store(self, projector_database: Settings) -> AsyncIterator[PostgresStore]:
        pool = await create_projector_pool(projector_database)
        yield PostgresStore(pool, projector_database.projector_group)
        await pool.close()

    @pytest.fixture
    def read_models(self, projector_database: Settings) -> ReadModels:
        db = projector_database
        columns = "enabled, rollout_percentage, version, event_id, schedule::text AS schedule, variant, split::text"

        def setting(row: Any) -> tuple[Any, ...]:
            schedule = None if row["schedule"] is None else orjson.loads(row["schedule"])
            split = None if row["split"] is None else orjson.loads(row["split"])
            selection = (schedule, row["variant"], split)
            return (row["enabled"], row["rollout_percentage"], row["version"], str(row["event_id"]), *selection)

        async def read() -> dict[str, Any]:
            system = await tenant_rows(db, Role.PROJECTOR, None, f"SELECT flag_key, {columns} FROM system_defaults")
            overrides: dict[tuple[str, ...], tuple[Any, ...]] = {}
            history: list[str] = []
            for org in ORGS:
                sql = f"SELECT org_id, level, platform, user_id, flag_key, {columns} FROM overrides"
                for r in await tenant_rows(db, Role.PROJECTOR, org, sql):
                    overrides[r["org_id"], r["level"], r["platform"], r["user_id"], r["flag_key"]] = setting(r)
            for org in (None, *ORGS):
                where, args = ("org_id IS NULL", ()) if org is None else ("org_id = $1", (org,))
                sql = f"SELECT event_id FROM flag_history WHERE {where}"
                history += [str(r["event_id"]) for r in await tenant_rows(db, Role.PROJECTOR, org, sql, *args)]
            rules: dict[str, tuple[Any, ...]] = {}
            for org in (None, *ORGS):
                where, args = ("org_id IS NULL", ()) if org is None else ("org_id = $1", (org,))
                columns_ = "stream, org_id, flag_key, rules::text, version, event_id"
                sql = f"SELECT {columns_} FROM targeting_rules WHERE {where}"
                for r in await tenant_rows(db, Role.PROJECTOR, org, sql, *args):
                    rules[r["stream"]] = (r["org_id"], r["flag_key"], orjson.loads(r["rules"]), r["version"],
                                          str(r["event_id"]))  # fmt: skip
            return {
                "system": {r["flag_key"]: setting(r) for r in system},
                "overrides": overrides,
                "history": sorted(history),
                "rules": rules,
            }

        return read

    async def test_targeting_rules_rows_are_under_row_level_security(
        self, store: PostgresStore, projector_database: Settings
    ) -> None:
        """System rows for every tenant, an org's only under it, nothing of an org with no tenant set; and a
        tenant cannot write another org's row (FORCEd: the table owner is bound too)."""
        await project(store, decoded(every_row_log()))
        sql = "SELECT stream FROM targeting_rules ORDER BY stream"  # no WHERE: the policy alone decides
        seen = {}
        for role in (Role.QUERY, Role.PROJECTOR, Role.OWNER):
            for org in (None, "o1", "o2"):
                seen[role, org] = [r["stream"] for r in await tenant_rows(projector_database, role, org, sql)]
        for role in (Role.QUERY, Role.PROJECTOR, Role.OWNER):
            assert seen[role, None] == ["flag/c.release/system/rules"]
            assert seen[role, "o1"] == ["flag/c.release/system/rules", "org/o1/flag/c.theme/rules"]
            assert seen[role, "o2"] == ["flag/c.release/system/rules"]  # its own list was emptied
        insert = (
            "INSERT INTO targeting_rules VALUES ('org/o1/flag/x/rules', 'o1', 'x', '[]', 1, gen_random_uuid(), "
            "'a', 'r', now())"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant_rows(projector_database, Role.PROJECTOR, "o2", insert)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant_rows(projector_database, Role.QUERY, "o1", insert)
