"""`Projector` against fakes of its own ports: exactly-once bookkeeping, dead letters, invalidation."""

from __future__ import annotations

import uuid

import pytest

from events import FlagDefined, seal, to_record
from flaglog import TopicPartition
from services.projector.cache_targets import CacheTarget
from services.projector.projection import InfrastructureError, Projector
from tests.support.eventlog import EventLog
from tests.support.projector_fakes import FakeDeadLetters, FakeInvalidator, FakeStore
from tests.support.records import Rec, records

TP = TopicPartition("flags.changes", 0)


def make() -> tuple[Projector, FakeStore, FakeDeadLetters, FakeInvalidator]:
    store = FakeStore()
    letters = FakeDeadLetters(store)
    invalidator = FakeInvalidator(store)
    return Projector(store, letters, invalidator, retry_backoff=0), store, letters, invalidator


def sample() -> tuple[EventLog, list[Rec]]:
    log = EventLog()
    log.org("o1", "a.b", True)
    log.user("o1", "u1", "a.b", True)
    log.org("o2", "a.b", False)
    log.org("o1", "a.b", False)
    return log, records(log)


async def test_a_batch_applies_once_even_when_delivered_again() -> None:
    projector, store, _, _ = make()
    _, recs = sample()
    first = await projector.apply(recs)
    assert (first.applied, first.skipped_offsets) == (4, 0)
    assert store.state["offsets"] == {TP: 4}
    again = await projector.apply(recs)  # a redelivery after a crash before the Kafka commit
    assert (again.applied, again.skipped_offsets) == (0, 4)
    assert len(store.state["history"]) == 4
    assert store.state["overrides"][("o1", "org", "", "", "a.b")].enabled is False


async def test_an_event_published_twice_at_new_offsets_is_a_duplicate() -> None:
    projector, store, _, _ = make()
    _, recs = sample()
    await projector.apply(recs)
    republished = [Rec(r.topic, r.partition, r.offset + 4, r.key, r.value, r.headers) for r in recs[:2]]
    result = await projector.apply(republished)
    assert (result.applied, result.duplicates) == (0, 2)
    assert store.state["offsets"] == {TP: 6}


async def test_dead_letters_are_acknowledged_before_the_commit_and_the_rest_applies() -> None:
    projector, store, letters, _ = make()
    _, recs = sample()
    bad = Rec(TP.topic, 0, 0, b"o1", b"{oops", recs[0].headers)
    shifted = [Rec(r.topic, 0, r.offset + 1, r.key, r.value, r.headers) for r in recs]
    result = await projector.apply([bad, *shifted])
    assert result.dead_letters == 1 and result.applied == 4
    assert letters.sent[0].offset == 0 and "not JSON" in letters.sent[0].reason
    assert store.log[:3] == ["dead letters", "advance", "commit"]
    assert store.state["offsets"] == {TP: 5}


async def test_invalidation_follows_the_commit_and_names_what_changed() -> None:
    projector, store, _, invalidator = make()
    _, recs = sample()
    await projector.apply(recs)
    assert store.log[-2:] == ["commit", "invalidate"]
    assert invalidator.calls == [[CacheTarget("org", "o1"), CacheTarget("org", "o2"), CacheTarget("user", "o1", "u1")]]
    await projector.apply(recs)  # nothing new: nothing to invalidate
    assert len(invalidator.calls) == 1


async def test_redis_being_down_does_not_undo_the_projection() -> None:
    projector, store, _, _ = make()
    projector._invalidator = FakeInvalidator(store, up=False)  # type: ignore[assignment]
    _, recs = sample()
    result = await projector.handle(recs)
    assert result.applied == 4 and result.invalidated is False
    assert store.state["offsets"] == {TP: 4}


async def test_postgres_being_down_raises_for_redelivery() -> None:
    projector, store, _, _ = make()
    store.down = True
    _, recs = sample()
    with pytest.raises(InfrastructureError):
        await projector.handle(recs)
    store.down = False
    assert (await projector.handle(recs)).applied == 4


async def test_a_record_postgres_rejects_is_isolated_and_dead_lettered() -> None:
    projector, store, letters, _ = make()
    _, recs = sample()
    store.fail_write = lambda plan: plan.org_id == "o2"
    result = await projector.handle(recs)
    assert result.applied == 3 and result.dead_letters == 1
    assert letters.sent[0].offset == 2 and "rejected by Postgres" in letters.sent[0].reason
    assert store.state["offsets"] == {TP: 4}


async def test_heads_are_read_only_when_the_cache_cannot_know_them() -> None:
    projector, store, _, _ = make()
    _, recs = sample()
    await projector.apply(recs[:2])
    await projector.apply(recs[2:])
    assert store.head_reads == 0  # started on an empty database, every head is in the cache
    fresh_process, _, _, _ = make()
    fresh_process._store = store  # type: ignore[assignment]  # a restart on a used database
    log2 = EventLog()
    log2.org("o3", "a.b", True)
    await fresh_process.apply(records(log2, start=4))
    assert store.head_reads == 1


async def test_a_definition_that_cannot_apply_goes_to_the_dead_letters() -> None:
    projector, store, letters, _ = make()
    log = EventLog()
    first = log.define("a.b")
    await projector.apply(records(log))
    again = seal(  # a second FlagDefined on the same stream (a broken producer)
        event_id=uuid.uuid4(),
        sequence=2,
        version=2,
        occurred_at=first.occurred_at,
        actor=first.actor,
        reason="again",
        previous=first.new,
        new=first.new,
        data=FlagDefined(flag_key="a.b", group="other"),
        prev_hash=first.hash,
    )
    record = to_record(again)
    result = await projector.apply([Rec(TP.topic, 0, 1, record.key, record.value, tuple(record.headers))])
    assert (result.applied, result.dead_letters) == (0, 1)
    assert "already defined" in letters.sent[0].reason
    assert store.state["flags"]["a.b"]["group"] == "test" and store.state["offsets"] == {TP: 2}
