"""Fakes of the projector's ports (`services.projector.projection`): the store, the dead-letter sink, the invalidator.

`FakeStore` holds the read models as plain dicts in `state` and applies a batch all or
nothing; tests/contract/test_projector_store.py runs it and `PostgresStore` through one
contract. Its history is a list, not a table keyed by event id, so a test sees an event
written twice. `NoDeadLetters` and `NullInvalidator` serve tests whose logs are all sound.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from flaglog import DeadLetter, TopicPartition
from services.projector.cache_targets import CacheTarget
from services.projector.heads import Head
from services.projector.rows import stored_definition
from services.projector.tenant_plan import TenantPlan


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
        """Read tenant by tenant, as RLS lets Postgres: a stream asked for under another org is not found."""
        asked = [(org, stream) for org, streams in wanted.items() for stream in streams]
        self.store.head_reads += len(asked)
        stored = self.state["heads"]
        return {stream: stored[org, stream] for org, stream in asked if (org, stream) in stored}

    async def write(self, plans: Sequence[TenantPlan]) -> None:
        for plan in plans:
            if self.store.fail_write is not None and self.store.fail_write(plan):
                raise asyncpg.DataError("value out of range")
            self.state["heads"].update(((plan.org_id, stream), head) for stream, head in plan.heads.items())
            for key, d in plan.definitions.items():
                self.state["flags"][key] = stored_definition(d._asdict())  # what a `flags` row reads back as
            for key, setting in plan.system.items():
                if setting is None:
                    self.state["system"].pop(key, None)
                else:
                    self.state["system"][key] = setting
            for key, row in plan.overrides.items():
                full = (plan.org_id, *key)
                if row is None:
                    self.state["overrides"].pop(full, None)
                else:
                    self.state["overrides"][full] = row
            for stream, rules in plan.rules.items():
                if rules is None:
                    self.state["rules"].pop(stream, None)
                else:
                    self.state["rules"][stream] = (plan.org_id, rules)
            self.state["history"].extend(h.event_id for h in plan.history)

    async def advance(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, n in offsets.items():
            self.state["offsets"][tp] = max(n, self.state["offsets"].get(tp, 0))
        self.store.log.append("advance")


class FakeStore:
    """In-memory tables with all-or-nothing batches."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {
            "offsets": {}, "heads": {}, "overrides": {}, "history": [], "flags": {}, "system": {}, "rules": {},
        }  # fmt: skip
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

    async def stored_offsets(self, topic: str) -> dict[int, int]:
        return {tp.partition: n for tp, n in self.state["offsets"].items() if tp.topic == topic and n > 0}


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


class NoDeadLetters:
    """For logs with nothing to dead-letter: a dead letter fails the test."""

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


class NullInvalidator:
    """Redis is up and every invalidation reaches it."""

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        return True
