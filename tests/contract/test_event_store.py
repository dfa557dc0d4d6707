"""The command side's `EventStore` port (services/command/ports.py): one contract, run on the in-memory store and on
PostgreSQL.

What only Postgres can show (two real connections racing, a writer held mid-commit, the relay on a real broker)
is in tests/integration/test_command_store.py. The contract's `store` reads cross-tenant (as a system-wide
reader does); the tenancy tests read one store through `reading_as` under each tenancy.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from events import (
    GENESIS_HASH,
    Actor,
    FlagArchived,
    FlagDefined,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    TargetingRulesSet,
    decode,
)
from flagcore import InvalidTransition
from services.command.errors import InvalidCommand, OutsideTenancy, UnknownFlag, VersionConflict
from services.command.eventstore.writes import PostgresEventStore
from services.command.memory import InMemoryEventStore
from services.command.ports import EventStore
from services.infra.postgres import create_pool
from services.infra.settings import Role, Settings
from services.infra.tenancy import Tenancy
from tests.support.names import fresh_key, fresh_org

ACTOR = Actor(id="tester", name="tester")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def append(store: EventStore, *changes: Any, expected_version: int | None = None) -> list[Any]:
    return await store.append(
        list(changes), actor=ACTOR, reason="contract test", expected_version=expected_version, occurred_at=NOW
    )


async def define(store: EventStore, key: str) -> None:
    await append(store, FlagDefined(flag_key=key, group="t"), expected_version=0)


class EventStoreContract:
    """Subclass with a `store` fixture; every test uses its own flag key and org."""

    async def test_an_empty_stream_has_version_zero(self, store: EventStore) -> None:
        head = await store.stream_head(f"flag/{fresh_key()}")
        assert (head.version, head.hash, head.value) == (0, GENESIS_HASH, None)

    async def test_appends_form_consecutive_versions_and_a_hash_chain(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        await define(store, key)
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))
        await append(store, RolloutPercentageSet(flag_key=key, level="org", org_id=org, percentage=30))
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=False), expected_version=2)

        stored = await store.list_events(org=org, flag=key)
        envelopes = [decode(e.body) for e in stored]  # verifies each hash
        assert [e.version for e in envelopes] == [1, 2, 3]
        assert envelopes[0].prev_hash == GENESIS_HASH
        for before, after in itertools.pairwise(envelopes):
            assert after.prev_hash == before.hash
            assert after.previous == before.new
            assert after.sequence > before.sequence
        assert envelopes[-1].new == {"enabled": False, "rollout_percentage": 30}
        assert [e.sequence for e in envelopes] == [e.sequence for e in stored]

        head = await store.stream_head(f"org/{org}/flag/{key}")
        assert (head.version, head.hash, head.value) == (3, envelopes[-1].hash, envelopes[-1].new)

    async def test_the_stored_body_is_the_canonical_envelope(self, store: EventStore) -> None:
        key = fresh_key()
        (envelope,) = await append(store, FlagDefined(flag_key=key, group="t", owner="me"))
        (stored,) = await store.list_events(flag=key)
        assert stored.body == envelope.to_json()
        assert json.loads(stored.body)["actor"] == {"id": "tester", "name": "tester"}

    async def test_several_changes_in_one_append_take_consecutive_versions(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        await define(store, key)
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))
        written = await append(
            store,
            OrgOverrideCleared(flag_key=key, org_id=org),
            RolloutPercentageSet(flag_key=key, level="org", org_id=org, percentage=50),
            expected_version=1,
        )
        assert [(e.version, e.previous, e.new) for e in written] == [
            (2, {"enabled": True, "rollout_percentage": None}, None),
            (3, None, {"enabled": None, "rollout_percentage": 50}),
        ]
        assert written[1].prev_hash == written[0].hash
        assert written[1].sequence > written[0].sequence

    async def test_a_stale_expected_version_is_a_conflict_naming_the_current_one(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        await define(store, key)
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True), expected_version=0)

        with pytest.raises(VersionConflict) as caught:
            await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=False), expected_version=0)
        assert (caught.value.stream, caught.value.current_version, caught.value.expected_version) == (
            f"org/{org}/flag/{key}",
            1,
            0,
        )
        assert (await store.stream_head(f"org/{org}/flag/{key}")).version == 1

    async def test_settings_need_a_defined_live_flag(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        with pytest.raises(UnknownFlag):
            await append(store, SystemDefaultSet(flag_key=key, enabled=True))
        await define(store, key)
        await append(store, FlagArchived(flag_key=key))
        with pytest.raises(UnknownFlag) as caught:
            await append(store, PlatformOverrideSet(flag_key=key, org_id=org, platform="meta", enabled=True))
        assert caught.value.archived
        assert await store.list_events(org=org) == []

    async def test_rules_name_only_segments_that_are_live_in_their_scope(self, store: EventStore) -> None:
        """Neither store holds a segment here (segments have a store of their own): a rule naming one is refused,
        naming the condition, and nothing is written; a rule naming none is appended."""
        key, org = fresh_key(), fresh_org()
        await define(store, key)
        exists = {"attribute": "plan", "operator": "exists"}
        segment = {"operator": "not_in_segment", "values": ["nowhere"]}

        def rules(*conditions: dict[str, Any]) -> TargetingRulesSet:
            listed = [{"id": "r", "conditions": list(conditions), "variant": "on"}]
            return TargetingRulesSet.model_validate({"flag_key": key, "level": "org", "org_id": org, "rules": listed})

        with pytest.raises(InvalidCommand) as caught:
            await append(store, rules(exists, segment))
        assert caught.value.field == "rules.0.conditions.1.values"
        assert await store.list_events(org=org) == []
        (appended,) = await append(store, rules(exists))
        assert appended.version == 1

    async def test_definition_changes_follow_the_transitions(self, store: EventStore) -> None:
        key = fresh_key()
        with pytest.raises(UnknownFlag):
            await append(store, FlagArchived(flag_key=key))
        await define(store, key)
        with pytest.raises(InvalidTransition):
            await append(store, FlagDefined(flag_key=key, group="t"))

    async def test_one_append_writes_one_stream(self, store: EventStore) -> None:
        key = fresh_key()
        await define(store, key)
        with pytest.raises(ValueError, match="one stream"):
            await append(
                store,
                OrgOverrideSet(flag_key=key, org_id=fresh_org(), enabled=True),
                OrgOverrideSet(flag_key=key, org_id=fresh_org(), enabled=True),
            )

    async def test_list_events_filters_and_pages_in_sequence_order(self, store: EventStore) -> None:
        key, org, other = fresh_key(), fresh_org(), fresh_org()
        await define(store, key)
        for i in range(5):
            await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=i % 2 == 0))
        await append(store, OrgOverrideSet(flag_key=key, org_id=other, enabled=True))

        everything = await store.list_events(flag=key)
        assert len(everything) == 7  # definition + 5 + 1
        first = await store.list_events(org=org, limit=2)
        rest = await store.list_events(org=org, after=first[-1].sequence, limit=10)
        assert [e.sequence for e in first + rest] == sorted(e.sequence for e in first + rest)
        assert len(first) == 2 and len(rest) == 3
        assert {decode(e.body).org_id for e in first + rest} == {org}

    async def test_unpublished_rows_are_handed_out_in_order_until_marked(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        before = await store.count_unpublished()
        await define(store, key)
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))
        mine = [e.sequence for e in await store.list_events(flag=key)]
        assert await store.count_unpublished() == before + 2

        pending = await store.unpublished(limit=10_000)
        assert [p.sequence for p in pending] == sorted(p.sequence for p in pending)
        assert set(mine) <= {p.sequence for p in pending}

        await store.mark_published(mine)
        await store.mark_published(mine)  # marking twice is harmless
        assert await store.count_unpublished() == before
        assert not set(mine) & {p.sequence for p in await store.unpublished(limit=10_000)}

    # --- reads under a tenancy (row-level security on Postgres) ---------------------------------------

    async def test_a_tenant_reads_its_own_rows_and_the_catalogue_never_another_tenants(
        self, store: EventStore
    ) -> None:
        key, org, other = fresh_key(), fresh_org(), fresh_org()
        await define(store, key)
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))
        await append(store, OrgOverrideSet(flag_key=key, org_id=other, enabled=False))

        mine = store.reading_as(Tenancy.tenant(org))
        seen = [decode(e.body) for e in await mine.list_events(flag=key)]
        assert [(e.stream, e.org_id) for e in seen] == [(f"flag/{key}", None), (f"org/{org}/flag/{key}", org)]
        assert await mine.list_events(org=other) == []  # asked for by name: still nothing
        assert (await mine.stream_head(f"org/{other}/flag/{key}")).version == 0
        assert (await mine.stream_head(f"flag/{key}")).version == 1

    async def test_the_system_reads_only_system_rows_and_cross_tenant_reads_all(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        await define(store, key)
        await append(store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))

        system = [decode(e.body).org_id for e in await store.reading_as(Tenancy.SYSTEM).list_events(flag=key)]
        assert system == [None]
        assert (await store.reading_as(Tenancy.SYSTEM).stream_head(f"org/{org}/flag/{key}")).version == 0
        every = [decode(e.body).org_id for e in await store.reading_as(Tenancy.CROSS_TENANT).list_events(flag=key)]
        assert every == [None, org]

    async def test_a_tenant_appends_its_own_changes_checked_against_the_catalogue(self, store: EventStore) -> None:
        key, org = fresh_key(), fresh_org()
        await define(store, key)
        mine = store.reading_as(Tenancy.tenant(org))
        (first,) = await append(mine, OrgOverrideSet(flag_key=key, org_id=org, enabled=True), expected_version=0)
        (second,) = await append(mine, OrgOverrideSet(flag_key=key, org_id=org, enabled=False), expected_version=1)
        assert (first.org_id, second.version, second.prev_hash) == (org, 2, first.hash)
        await append(store, FlagArchived(flag_key=key))
        with pytest.raises(UnknownFlag):  # the archive, a system row, is seen from inside the tenant's append
            await append(mine, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))

    async def test_a_context_other_than_cross_tenant_writes_only_as_itself(self, store: EventStore) -> None:
        key, org, other = fresh_key(), fresh_org(), fresh_org()
        await define(store, key)
        before = await store.count_unpublished()
        override = OrgOverrideSet(flag_key=key, org_id=org, enabled=True)
        default = SystemDefaultSet(flag_key=key, enabled=True)
        for context, change in ((Tenancy.tenant(other), override), (Tenancy.tenant(org), default),
                                (Tenancy.SYSTEM, override)):
            with pytest.raises(OutsideTenancy):
                await append(store.reading_as(context), change)
        assert await store.count_unpublished() == before
        (system,) = await append(store.reading_as(Tenancy.SYSTEM), default)
        assert system.org_id is None

    async def test_only_one_relay_lease_at_a_time(self, store: EventStore) -> None:
        first = await store.acquire_relay_lease(lambda: None)
        assert first is not None and first.alive
        try:
            assert await store.acquire_relay_lease(lambda: None) is None
        finally:
            await first.release()
        again = await store.acquire_relay_lease(lambda: None)
        assert again is not None
        await again.release()


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore(reader=Tenancy.CROSS_TENANT)


@pytest.fixture(scope="module")
def event_store_settings(make_settings: Callable[[], Settings]) -> Settings:
    """A database of its own: the outbox and the relay lease are per database."""
    return make_settings()


@pytest_asyncio.fixture(scope="module")
async def postgres_event_store(event_store_settings: Settings) -> AsyncIterator[PostgresEventStore]:
    pool = await create_pool(event_store_settings, Role.COMMAND, min_size=1, max_size=4)
    yield PostgresEventStore(pool, dsn=event_store_settings.pg_dsn(Role.COMMAND), reader=Tenancy.CROSS_TENANT)
    await pool.close()


@pytest.mark.integration
class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, postgres_event_store: PostgresEventStore) -> PostgresEventStore:
        return postgres_event_store
