"""`Projector` against fakes of its own ports: exactly-once bookkeeping, dead letters, invalidation."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from events import FlagDefined, seal, to_record
from flaglog import DeadLetter, TopicPartition
from services.projector.cache_targets import CacheTarget
from services.projector.heads import Head
from services.projector.projection import InfrastructureError, Projector
from services.projector.tenant_plan import TenantPlan
from tests.support.eventlog import EventLog
from tests.support.records import Rec, records

TP = TopicPartition("flags.changes", 0)


class FakeTransaction:
    def __init__(self, store: FakeStore, state: dict[str, Any]) -> None:
        self.store = store
        self.state = state

    async def lock_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.state["offsets"].get(tp, 0) for tp in partitions}

    async def nothing_projected(self) -> bool:
        return not any(self.state["offsets"].values())

    async def definitions(self, flag_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {k: self.state["flags"][k] for k in flag_keys if k in self.state["flags"]}

    async def heads(self, wanted: Mapping[str | None, Iterable[str]]) -> dict[str, Head]:
        streams = [s for group in wanted.values() for s in group]
        self.store.head_reads += len(streams)
        return {s: self.state["heads"][s] for s in streams if s in self.state["heads"]}

    async def write(self, plans: Sequence[TenantPlan]) -> None:
        for plan in plans:
            if self.store.fail_write is not None and self.store.fail_write(plan):
                raise asyncpg.DataError("value out of range")
            self.state["heads"].update(plan.heads)
            for key, d in plan.definitions.items():
                self.state["flags"][key] = {
                    "kind": d.kind, "description": d.description, "owner": d.owner, "group": d.grp,
                    "archived": d.archived,
                }  # fmt: skip
            for key, row in plan.overrides.items():
                full = (plan.org_id, *key)
                if row is None:
                    self.state["overrides"].pop(full, None)
                else:
                    self.state["overrides"][full] = row
            self.state["history"].extend(h.event_id for h in plan.history)

    async def advance(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, n in offsets.items():
            self.state["offsets"][tp] = max(n, self.state["offsets"].get(tp, 0))
        self.store.log.append("advance")


class FakeStore:
    """In-memory tables with all-or-nothing batches."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"offsets": {}, "heads": {}, "overrides": {}, "history": [], "flags": {}}
        self.log: list[str] = []
        self.head_reads = 0
        self.fail_write: Any = None
        self.down = False

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[FakeTransaction]:
        if self.down:
            raise ConnectionRefusedError("postgres is down")
        draft = copy.deepcopy(self.state)
        yield FakeTransaction(self, draft)
        self.state = draft
        self.log.append("commit")


class FakeDeadLetters:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.sent: list[DeadLetter] = []

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.sent.extend(letters)
        self.store.log.append("dead letters")


class FakeInvalidator:
    def __init__(self, store: FakeStore, *, up: bool = True) -> None:
        self.store = store
        self.up = up
        self.calls: list[list[CacheTarget]] = []

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        self.calls.append(list(targets))
        self.store.log.append("invalidate")
        return self.up


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
