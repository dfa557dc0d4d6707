"""An in-memory `EventStore`: the fake of our own port that unit tests wire in.

It applies the same append rules as the Postgres store (`chain`), and the
shared contract tests run against both, so a test passing here means something.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from events import Actor, Envelope, FlagChange
from flagcore import StreamHead
from services.command import chain
from services.command.errors import StoreUnavailable
from services.command.ports import StoredEvent


@dataclass(slots=True)
class _Row:
    envelope: Envelope
    body: bytes
    published: bool = False


class InMemoryEventStore:
    def __init__(self) -> None:
        self._rows: list[_Row] = []
        self._heads: dict[str, StreamHead] = {}
        self._sequence = 0
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._lease_held = False
        self.available = True  # set False to simulate an unreachable database

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("in-memory store switched off")

    async def stream_head(self, stream: str) -> StreamHead:
        self._check()
        return self._heads.get(stream, chain.EMPTY_HEAD)

    async def append(
        self,
        changes: Sequence[FlagChange],
        *,
        actor: Actor,
        reason: str,
        expected_version: int | None,
        occurred_at: datetime,
    ) -> list[Envelope]:
        self._check()
        stream = chain.target_stream(changes)
        async with self._lock:
            head = self._heads.get(stream, chain.EMPTY_HEAD)
            chain.check_expected(stream, head, expected_version)
            definition = self._heads.get(chain.definition_of(changes), chain.EMPTY_HEAD)
            chain.check_flag(changes, definition)
            first = self._sequence + 1
            envelopes = chain.seal_changes(
                changes,
                head,
                sequences=range(first, first + len(changes)),
                actor=actor,
                reason=reason,
                occurred_at=occurred_at,
            )
            self._sequence += len(changes)
            for envelope in envelopes:
                self._rows.append(_Row(envelope, envelope.to_json()))
            last = envelopes[-1]
            self._heads[stream] = StreamHead(last.version, last.hash, last.new)
        for notify in self._listeners:
            notify()
        return envelopes

    async def list_events(
        self, *, org: str | None = None, flag: str | None = None, after: int = 0, limit: int = 100
    ) -> list[StoredEvent]:
        self._check()
        found = [
            StoredEvent(r.envelope.sequence, r.body)
            for r in self._rows
            if r.envelope.sequence > after
            and (org is None or r.envelope.org_id == org)
            and (flag is None or r.envelope.flag_key == flag)
        ]
        return found[:limit]

    async def unpublished(self, limit: int) -> list[StoredEvent]:
        self._check()
        return [StoredEvent(r.envelope.sequence, r.body) for r in self._rows if not r.published][:limit]

    async def mark_published(self, sequences: Sequence[int]) -> None:
        self._check()
        wanted = set(sequences)
        for row in self._rows:
            if row.envelope.sequence in wanted:
                row.published = True

    async def count_unpublished(self) -> int:
        self._check()
        return sum(not r.published for r in self._rows)

    async def ping(self) -> None:
        self._check()

    async def acquire_relay_lease(self, on_notify: Callable[[], None]) -> _Lease | None:
        self._check()
        if self._lease_held:
            return None
        self._lease_held = True
        self._listeners.append(on_notify)
        return _Lease(self, on_notify)


class _Lease:
    def __init__(self, store: InMemoryEventStore, on_notify: Callable[[], None]) -> None:
        self._store = store
        self._on_notify = on_notify
        self._released = False

    @property
    def alive(self) -> bool:
        return not self._released and self._store.available

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._store._lease_held = False
            self._store._listeners.remove(self._on_notify)
