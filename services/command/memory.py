"""An in-memory `EventStore`: the fake of our own port that unit tests wire in.

It applies the same append rules as the Postgres store (`chain`) and the same
row-level security rules (`Tenancy.reads`, and an append only under its rows' own
tenancy), and the shared contract
tests run against both, so a test passing here means something.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from events import Actor, Envelope, FlagChange
from flagcore import StreamHead
from services.command import chain
from services.command.errors import OutsideTenancy, StoreUnavailable
from services.command.ports import StoredEvent
from services.command.tenancy import writer_for
from services.infra.tenancy import Tenancy
from services.observability import tracing


@dataclass(slots=True)
class _Row:
    envelope: Envelope
    body: bytes
    published: bool = False
    traceparent: str | None = None


@dataclass(eq=False)
class _Log:
    """What every view of one store shares."""

    rows: list[_Row] = field(default_factory=list)
    heads: dict[str, tuple[str | None, StreamHead]] = field(default_factory=dict)  # stream -> (its org, head)
    sequence: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    listeners: list[Callable[[], None]] = field(default_factory=list)
    lease_held: bool = False
    available: bool = True


class InMemoryEventStore:
    def __init__(self, *, reader: Tenancy = Tenancy.SYSTEM) -> None:
        self._log = _Log()
        self._reader = reader

    def reading_as(self, reader: Tenancy) -> Self:
        """A view of the same log (a shallow copy, so a test's subclass stays itself), reading under `reader`."""
        view = copy.copy(self)
        view._reader = reader
        return view

    @property
    def available(self) -> bool:
        return self._log.available

    @available.setter
    def available(self, value: bool) -> None:
        """Set False to simulate an unreachable database."""
        self._log.available = value

    def _check(self) -> None:
        if not self._log.available:
            raise StoreUnavailable("in-memory store switched off")

    def _head(self, tenancy: Tenancy, stream: str) -> StreamHead:
        org_id, head = self._log.heads.get(stream, (None, chain.EMPTY_HEAD))
        return head if tenancy.reads(org_id, stream) else chain.EMPTY_HEAD

    async def stream_head(self, stream: str) -> StreamHead:
        self._check()
        return self._head(self._reader, stream)

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
        writer = writer_for(changes, acting_as=self._reader)
        async with self._log.lock:
            head = self._head(writer, stream)
            chain.check_expected(stream, head, expected_version)
            definition = self._head(writer, chain.definition_of(changes))
            chain.check_flag(changes, definition)
            chain.check_segments(changes, {s: self._head(writer, s) for s in chain.named_segments(changes)})
            if writer.org_id != changes[0].tenant:  # what the policy's WITH CHECK refuses
                raise OutsideTenancy(f"{stream} may not be written under {writer}")
            first = self._log.sequence + 1
            envelopes = chain.seal_changes(
                changes,
                head,
                sequences=range(first, first + len(changes)),
                actor=actor,
                reason=reason,
                occurred_at=occurred_at,
            )
            self._log.sequence += len(changes)
            traceparent = tracing.current_traceparent()
            for envelope in envelopes:
                self._log.rows.append(_Row(envelope, envelope.to_json(), traceparent=traceparent))
            last = envelopes[-1]
            self._log.heads[stream] = (last.org_id, StreamHead(last.version, last.hash, last.new))
        for notify in self._log.listeners:
            notify()
        return envelopes

    async def list_events(
        self, *, org: str | None = None, flag: str | None = None, after: int = 0, limit: int = 100
    ) -> list[StoredEvent]:
        self._check()
        found = [
            StoredEvent(r.envelope.sequence, r.body)
            for r in self._log.rows
            if r.envelope.sequence > after
            and self._reader.reads(r.envelope.org_id, r.envelope.stream)
            and (org is None or r.envelope.org_id == org)
            and (flag is None or r.envelope.flag_key == flag)
        ]
        return found[:limit]

    # the outbox: cross-tenant, as the Postgres store's

    async def unpublished(self, limit: int) -> list[StoredEvent]:
        self._check()
        unpublished = (r for r in self._log.rows if not r.published)
        return [StoredEvent(r.envelope.sequence, r.body, r.traceparent) for r in unpublished][:limit]

    async def mark_published(self, sequences: Sequence[int]) -> None:
        self._check()
        wanted = set(sequences)
        for row in self._log.rows:
            if row.envelope.sequence in wanted:
                row.published = True

    async def count_unpublished(self) -> int:
        self._check()
        return sum(not r.published for r in self._log.rows)

    async def ping(self) -> None:
        self._check()

    async def acquire_relay_lease(self, on_notify: Callable[[], None]) -> _Lease | None:
        self._check()
        if self._log.lease_held:
            return None
        self._log.lease_held = True
        self._log.listeners.append(on_notify)
        return _Lease(self._log, on_notify)


class _Lease:
    def __init__(self, store: _Log, on_notify: Callable[[], None]) -> None:
        self._store = store
        self._on_notify = on_notify
        self._released = False

    @property
    def alive(self) -> bool:
        return not self._released and self._store.available

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._store.lease_held = False
            self._store.listeners.remove(self._on_notify)
