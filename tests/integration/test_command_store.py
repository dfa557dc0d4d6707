"""What only the Postgres event store shows, and the relay, against the real PostgreSQL and Kafka.

The `EventStore` contract it shares with the in-memory store is tests/contract/test_event_store.py;
here: appends racing on two real connections, a writer held mid-commit, and the relay on a real broker.
The stores read cross-tenant, as a system admin's do; raw SQL sets the tenancy it writes or reads under.
Uses its own fresh database and topic (`make_settings`), not the shared one:
the relay lock and the outbox are per database, so a command service started
by another test on the shared database would otherwise publish (or hold the
lock for) the rows these tests count.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from events import GENESIS_HASH, Actor, FlagDefined, OrgOverrideSet, RolloutPercentageSet, Scope, decode, from_record
from services.command import chain
from services.command.commands import SetSetting
from services.command.errors import VersionConflict
from services.command.eventstore.writes import PostgresEventStore
from services.command.published_log import KafkaPublishedLog
from services.command.relay import Relay
from services.command.service import CommandService, Outcome
from services.infra.kafka import create_producer
from services.infra.postgres import create_pool, set_tenancy
from services.infra.settings import Role, Settings
from services.infra.tenancy import Tenancy
from tests.support.kafka import consume_all, topic_size
from tests.support.names import fresh_key, fresh_org

pytestmark = pytest.mark.integration

ACTOR = Actor(id="it", name="it")
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_settings(make_settings: Callable[[], Settings]) -> Settings:
    return make_settings()


async def open_store(settings: Settings) -> PostgresEventStore:
    pool = await create_pool(settings, Role.COMMAND, min_size=1, max_size=4)
    return PostgresEventStore(pool, dsn=settings.pg_dsn(Role.COMMAND), reader=Tenancy.CROSS_TENANT)


@pytest_asyncio.fixture(scope="module")
async def pg_store(store_settings: Settings) -> AsyncIterator[PostgresEventStore]:
    store = await open_store(store_settings)
    yield store
    await store._pool.close()


async def append(store: PostgresEventStore, *changes: Any, expected_version: int | None = None) -> list[Any]:
    return await store.append(
        list(changes), actor=ACTOR, reason="it", expected_version=expected_version, occurred_at=NOW
    )


async def defined_flag(store: PostgresEventStore) -> str:
    key = fresh_key()
    await append(store, FlagDefined(flag_key=key, group="t"), expected_version=0)
    return key


async def test_racing_appends_with_the_same_expected_version_exactly_one_wins(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    key, org = await defined_flag(pg_store), fresh_org()
    other = await open_store(store_settings)  # a second pool: two real connections racing
    try:
        for round_ in range(5):
            stream = f"org/{org}-{round_}/flag/{key}"
            results = await asyncio.gather(
                append(
                    pg_store, OrgOverrideSet(flag_key=key, org_id=f"{org}-{round_}", enabled=True), expected_version=0
                ),
                append(
                    other,
                    RolloutPercentageSet(flag_key=key, level="org", org_id=f"{org}-{round_}", percentage=10),
                    expected_version=0,
                ),
                return_exceptions=True,
            )
            winners = [r for r in results if isinstance(r, list)]
            losers = [r for r in results if isinstance(r, VersionConflict)]
            assert (len(winners), len(losers)) == (1, 1), results
            assert (losers[0].stream, losers[0].current_version, losers[0].expected_version) == (stream, 1, 0)
            assert (await pg_store.stream_head(stream)).version == 1
    finally:
        await other._pool.close()


async def _insert_held_open(settings: Settings, change: Any) -> tuple[asyncpg.Connection, Any]:
    """Append `change` as version 1 in a transaction left open: a concurrent writer mid-commit."""
    conn = await asyncpg.connect(settings.pg_dsn(Role.COMMAND))
    await conn.execute("BEGIN")
    await set_tenancy(conn, Tenancy.of(change.tenant))
    sequence = await conn.fetchval("SELECT nextval('event_sequence')")
    (envelope,) = chain.seal_changes(
        [change], chain.EMPTY_HEAD, sequences=[sequence], actor=ACTOR, reason="other", occurred_at=NOW
    )
    await conn.execute(
        "INSERT INTO event_store (stream, version, sequence, event_id, type, org_id, flag_key, partition_key,"
        " occurred_at, hash, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        envelope.stream,
        envelope.version,
        envelope.sequence,
        envelope.event_id,
        envelope.type,
        envelope.org_id,
        envelope.flag_key,
        envelope.partition_key,
        envelope.occurred_at,
        envelope.hash,
        envelope.to_json(),
    )
    return conn, envelope


@pytest.mark.parametrize("expected", [0, None])
async def test_a_unique_violation_is_a_conflict_naming_the_new_version(
    store_settings: Settings, pg_store: PostgresEventStore, expected: int | None
) -> None:
    """The store tries an append once; retrying (re-deciding on the new head) is `CommandService`'s."""
    key, org = await defined_flag(pg_store), fresh_org()
    held, _ = await _insert_held_open(store_settings, OrgOverrideSet(flag_key=key, org_id=org, enabled=False))
    try:
        ours = asyncio.create_task(
            append(pg_store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True), expected_version=expected)
        )
        await asyncio.sleep(0.3)
        assert not ours.done(), "the second insert of version 1 should wait on the primary key"
        await held.execute("COMMIT")
        with pytest.raises(VersionConflict) as caught:
            await ours
        assert (caught.value.current_version, caught.value.expected_version) == (1, expected)
    finally:
        await held.close()


async def test_a_command_that_loses_a_race_is_decided_again_on_the_new_head(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    key, org = await defined_flag(pg_store), fresh_org()
    held, theirs = await _insert_held_open(store_settings, OrgOverrideSet(flag_key=key, org_id=org, enabled=False))
    try:
        command = SetSetting(scope=Scope.org(org), flag_key=key, enabled=True, reason="ours", actor=ACTOR)
        ours = asyncio.create_task(CommandService(pg_store, clock=lambda: NOW).execute(command))
        await asyncio.sleep(0.3)
        assert not ours.done(), "the second insert of version 1 should wait on the primary key"
        await held.execute("COMMIT")
        (envelope,) = (await ours).events
        assert (envelope.version, envelope.prev_hash, envelope.previous) == (2, theirs.hash, theirs.new)
    finally:
        await held.close()


async def test_concurrent_last_writer_wins_commands_never_share_a_version(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    key, org = await defined_flag(pg_store), fresh_org()
    other = await open_store(store_settings)
    try:
        services = [CommandService(pg_store, clock=lambda: NOW), CommandService(other, clock=lambda: NOW)]
        results = await asyncio.gather(
            *(
                services[i % 2].execute(
                    SetSetting(scope=Scope.org(org), flag_key=key, rollout_percentage=i, reason="it", actor=ACTOR)
                )
                for i in range(12)
            ),
            return_exceptions=True,
        )
    finally:
        await other._pool.close()
    written = [e for r in results if isinstance(r, Outcome) for e in r.events]
    assert all(isinstance(r, Outcome | VersionConflict) for r in results), results
    assert written  # every retry round has a winner; the rest give up after three attempts

    conn = await asyncpg.connect(store_settings.pg_dsn(Role.COMMAND))
    try:
        async with conn.transaction():
            await set_tenancy(conn, Tenancy.CROSS_TENANT)
            duplicates = await conn.fetchval(
                "SELECT count(*) FROM (SELECT stream, version FROM event_store GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
    finally:
        await conn.close()
    assert duplicates == 0
    chain_ = [decode(e.body) for e in await pg_store.list_events(org=org)]
    assert [e.version for e in chain_] == list(range(1, len(written) + 1))
    assert chain_[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash and b.previous == a.new for a, b in itertools.pairwise(chain_))


# --- the relay against the real broker -------------------------------------------------------


async def wait_drained(relay: Relay, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await relay.lag() > 0:
        assert asyncio.get_running_loop().time() < deadline, f"relay still has {await relay.lag()} unpublished"
        await asyncio.sleep(0.05)


def make_relay(store: PostgresEventStore, settings: Settings) -> Relay:
    return Relay(store, lambda: create_producer(settings), topic=settings.topic, poll_interval=1.0, max_backoff=0.5)


async def test_relay_outage_then_recovery_publishes_everything_once_in_order(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    # Runs before the publish test below and drains whatever earlier tests left, so the
    # topic ends up holding every event of this database exactly once.
    dead = store_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    down = make_relay(pg_store, dead)
    await down.start()
    try:
        key, org = await defined_flag(pg_store), fresh_org()
        for i in range(6):
            await append(pg_store, RolloutPercentageSet(flag_key=key, level="org", org_id=org, percentage=i * 10))
        await asyncio.sleep(1.5)  # several retries against the closed port
        assert down.status()["leader"] and down.status()["kafka"] == "down"
        mine = [e.sequence for e in await pg_store.list_events(flag=key)]
        pending = [e.sequence for e in await pg_store.unpublished(10_000)]
        assert set(mine) <= set(pending)
    finally:
        await down.stop()

    up = make_relay(pg_store, store_settings)
    await up.start()
    try:
        await wait_drained(up)
    finally:
        await up.stop()

    # Nothing was published before (no relay ran on this database), so the
    # topic must now hold exactly the rows that were pending: each once.
    records = await consume_all(store_settings, len(pending))
    assert sorted(from_record(r.value, r.headers).sequence for r in records) == pending
    for partition in {r.partition for r in records}:  # Kafka order is sequence order, per partition
        in_partition = [from_record(r.value, r.headers).sequence for r in records if r.partition == partition]
        assert in_partition == sorted(in_partition)
    ours = [from_record(r.value, r.headers) for r in records if from_record(r.value, r.headers).flag_key == key]
    assert sorted(e.sequence for e in ours) == mine
    assert [e.version for e in ours if e.org_id == org] == list(range(1, 7))


async def test_relay_publishes_the_stored_bytes_with_cloudevents_headers(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    key, org = await defined_flag(pg_store), fresh_org()
    await append(pg_store, OrgOverrideSet(flag_key=key, org_id=org, enabled=True))
    await append(pg_store, RolloutPercentageSet(flag_key=key, level="org", org_id=org, percentage=25))
    assert await pg_store.count_unpublished() == 3
    stored = {e.sequence: e.body for e in await pg_store.list_events(flag=key)}
    already = await topic_size(store_settings)

    relay = make_relay(pg_store, store_settings)
    await relay.start()
    try:
        await wait_drained(relay)
    finally:
        await relay.stop()

    records = await consume_all(store_settings, already + 3)
    mine = [r for r in records if from_record(r.value, r.headers).flag_key == key]
    assert len(mine) == 3
    assert len(records) == len({r.value for r in records}) == already + 3  # no duplicates
    for record in mine:
        headers = {name: value.decode() for name, value in record.headers}
        envelope = decode(record.value)
        assert record.value == stored[envelope.sequence]  # the exact bytes, unchanged
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_id"] == str(envelope.event_id)
        assert headers["ce_type"] == f"io.flagstream.{envelope.type}.v{envelope.schema_version}"
        assert headers["ce_subject"] == envelope.stream
        assert headers["content-type"] == "application/json"
        assert record.key == envelope.partition_key.encode()
    org_records = [r for r in mine if r.key == org.encode()]
    assert len({r.partition for r in org_records}) == 1
    assert [decode(r.value).version for r in org_records] == [1, 2]


async def test_the_relay_wakes_on_notify_not_only_on_the_poll(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    relay = Relay(pg_store, lambda: create_producer(store_settings), topic=store_settings.topic, poll_interval=30.0)
    await relay.start()
    try:
        await wait_drained(relay)
        await asyncio.sleep(0.5)  # now idle, waiting for a notification (the poll is 30 s away)
        key = await defined_flag(pg_store)
        started = asyncio.get_running_loop().time()
        await wait_drained(relay, timeout=5)
        assert asyncio.get_running_loop().time() - started < 5
        assert (await pg_store.list_events(flag=key))[0].sequence not in {
            e.sequence for e in await pg_store.unpublished(1000)
        }
    finally:
        await relay.stop()


class Crash(BaseException):
    """The command service killed between Kafka's acknowledgement and the relay's mark."""


async def test_a_relay_killed_before_marking_leaves_each_event_in_the_log_once(
    store_settings: Settings, pg_store: PostgresEventStore
) -> None:
    drain = make_relay(pg_store, store_settings)  # whatever earlier tests left unpublished
    await drain.start()
    await wait_drained(drain)
    await drain.stop()
    key, org = await defined_flag(pg_store), fresh_org()
    for i in range(5):
        await append(pg_store, RolloutPercentageSet(flag_key=key, level="org", org_id=org, percentage=i * 20))
    already = await topic_size(store_settings)

    class KilledBeforeMarking:
        def __getattr__(self, name: str) -> Any:
            return getattr(pg_store, name)

        async def mark_published(self, sequences: Any) -> None:
            raise Crash

    killed = Relay(KilledBeforeMarking(), lambda: create_producer(store_settings),  # type: ignore[arg-type]
                   topic=store_settings.topic, published=KafkaPublishedLog(store_settings))
    with pytest.raises(Crash):
        await killed.publish_batch()  # Kafka acknowledged all six; none is marked
    await killed._close_producer()
    assert await topic_size(store_settings) == already + 6 and await pg_store.count_unpublished() == 6

    restarted = Relay(pg_store, lambda: create_producer(store_settings), topic=store_settings.topic,
                      published=KafkaPublishedLog(store_settings), poll_interval=1.0)
    await restarted.start()
    try:
        await wait_drained(restarted)
        await append(pg_store, RolloutPercentageSet(flag_key=key, level="org", org_id=org, percentage=100))
        await wait_drained(restarted)
    finally:
        await restarted.stop()
    assert restarted.status()["found_published_total"] == 6 and restarted.status()["published_total"] == 1
    records = await consume_all(store_settings, already + 7)
    ids = [decode(r.value).event_id for r in records]
    assert len(records) == already + 7 and len(set(ids)) == len(ids)  # each event in the log once
    ours = [decode(r.value) for r in records if r.key == org.encode()]
    assert [e.version for e in ours] == list(range(1, 7))
