"""Fakes of the projector's ports (`services.projector.projection`): the store, the dead-letter sink, the invalidator.

`FakeStore` holds the read models as plain dicts in `state` and applies a batch all or
nothing. `NoDeadLetters` and `NullInvalidator` serve tests whose logs are all sound.
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


class NoDeadLetters:
    """For logs with nothing to dead-letter: a dead letter fails the test."""

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


class NullInvalidator:
    """Redis is up and every invalidation reaches it."""

    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool:
        return True
