"""The ports the command side depends on, so the API and the relay run on any adapter.

`EventStore` is implemented by `eventstore.writes.PostgresEventStore` (production) and
`memory.InMemoryEventStore` (unit tests); `Producer` is the subset of
aiokafka's producer the relay uses, `PublishedLog` (`published_log.KafkaPublishedLog`) what it reads of
the topic's end before sending with a new producer. `KeyStore` (`key_store.PostgresKeyStore`), `SubscriptionStore`
(`subscription_store.PostgresSubscriptionStore`), `SegmentStore`
(`eventstore.segment_store.PostgresSegmentStore`), `AuditTrail`
(`eventstore.audit_reads.PostgresAuditStore`) and `RelayView` (`relay.Relay`) are what the
routes use; `bootstrap` plugs the concrete ones in. The stores that read the audit trail
read under a tenancy (`services.infra.tenancy`); `reading_as` gives the same store with its
reads under another, which is how the routes read as their caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from events import Actor, Envelope, FlagChange, ForeignRecordAcknowledged, SegmentChange, SubscriptionChange
from flagcore import StreamHead
from flagcore.subscriptions import SubscriptionView
from services.auth.keys import NewKey
from services.auth.policy import Role
from services.command.history import Cursor, HistoryFilter
from services.command.segments import SegmentUse, SegmentView
from services.infra.tenancy import Tenancy

OUTBOX_CHANNEL = "flags_outbox"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log: its global position and the exact canonical bytes stored (and, in the outbox,
    the W3C traceparent of the request that appended it, when it was traced)."""

    sequence: int
    body: bytes
    traceparent: str | None = None


class RelayLease(Protocol):
    """Proof that this process is the one relay of its database (held until released)."""

    @property
    def alive(self) -> bool: ...

    async def release(self) -> None: ...


class EventStore(Protocol):
    def reading_as(self, reader: Tenancy) -> EventStore:
        """The same store, its reads (`stream_head`, `list_events`) under `reader`; appends are always
        made under the tenancy that owns them, the relay's outbox reads cross-tenant."""
        ...

    async def stream_head(self, stream: str) -> StreamHead:
        """The stream's last version, hash and value (version 0, value None when empty)."""
        ...

    async def append(
        self,
        changes: Sequence[FlagChange],
        *,
        actor: Actor,
        reason: str,
        expected_version: int | None,
        occurred_at: datetime,
    ) -> list[Envelope]:
        """Append to one stream atomically; `VersionConflict`, `UnknownFlag`, `InvalidTransition`."""
        ...

    async def list_events(
        self, *, org: str | None = None, flag: str | None = None, after: int = 0, limit: int = 100
    ) -> list[StoredEvent]: ...

    async def unpublished(self, limit: int) -> list[StoredEvent]: ...

    async def mark_published(self, sequences: Sequence[int]) -> None: ...

    async def count_unpublished(self) -> int: ...

    async def ping(self) -> None:
        """Return when the store answers; raise `StoreUnavailable` otherwise."""
        ...

    async def acquire_relay_lease(self, on_notify: Callable[[], None]) -> RelayLease | None:
        """Become the relay (None if another process is) and call `on_notify` on each append."""
        ...


class Producer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


class PublishedLog(Protocol):
    """The end of the topic as it is: what the relay checks before it sends again with a new producer."""

    async def recent_event_ids(self, per_partition: int) -> set[str]:
        """The event ids (`ce_id`) of the last `per_partition` records of each partition."""
        ...


class RelayView(Protocol):
    """What the API shows of the relay: its backlog and state."""

    async def lag(self) -> int: ...

    def status(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as listed: everything but the secret's hash."""

    key_id: str
    name: str
    role: Role
    org_id: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyStore(Protocol):
    """API keys: each change is a row and its event (stream `key/<id>`), written together."""

    async def create(
        self,
        new_key: NewKey,
        *,
        name: str,
        role: Role,
        org_id: str | None,
        expires_at: datetime | None,
        actor: Actor,
        reason: str,
        now: datetime,
    ) -> tuple[KeyInfo, Envelope]: ...

    async def revoke(
        self, key_id: str, *, actor: Actor, reason: str, now: datetime
    ) -> tuple[KeyInfo, Envelope | None]: ...

    async def set_expiry(
        self, key_id: str, expires_at: datetime | None, *, actor: Actor, reason: str, now: datetime
    ) -> tuple[KeyInfo, Envelope | None]: ...

    async def get(self, key_id: str) -> KeyInfo | None: ...

    async def list(self, *, org_id: str | None) -> list[KeyInfo]: ...


class SubscriptionStore(Protocol):
    """Notification subscriptions: events in the event store, listed by folding them (`flagcore.subscriptions`)."""

    async def append(
        self, change: SubscriptionChange, *, expected_version: int | None, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        """Append one change to its stream; `VersionConflict`, `InvalidTransition`."""
        ...

    async def list(self, *, org_id: str | None) -> list[SubscriptionView]:
        """The live subscriptions of one org, or the system-wide ones (None)."""
        ...

    async def get(self, org_id: str | None, subscription_id: str) -> SubscriptionView | None: ...


class SegmentStore(Protocol):
    """Segments: events in the event store, read from their streams' heads (`eventstore.segment_store`)."""

    def reading_as(self, reader: Tenancy) -> SegmentStore:
        """The same store, its reads (and an archive's check of which flags use the segment) under `reader`."""
        ...

    async def append(
        self, change: SegmentChange, *, expected_version: int | None, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        """Append one change to its stream; `VersionConflict`, `InvalidTransition`, `SegmentInUse`."""
        ...

    async def get(self, org_id: str | None, key: str) -> SegmentView | None: ...

    async def of_scope(self, org_id: str | None) -> list[SegmentView]: ...

    async def uses(self, org_id: str | None, key: str) -> list[SegmentUse]:
        """The flags whose targeting rules name the segment (as the rules' level resolves it)."""
        ...


StoredValue = tuple[int, dict[str, Any] | None]  # (version, the stream's value after it)


class AuditTrail(Protocol):
    """The history pages over the event store, and stream values as of an instant or a version (rollback)."""

    def reading_as(self, reader: Tenancy) -> AuditTrail: ...

    async def horizon(self) -> int: ...

    async def page(
        self, wanted: HistoryFilter, *, after: Cursor | None, limit: int, horizon: int | None = None
    ) -> list[tuple[Cursor, bytes]]: ...

    async def org_known(self, org: str) -> bool: ...

    async def override_streams(self, org: str, flag: str | None) -> list[str]: ...

    async def value_as_of(self, stream: str, at: datetime) -> StoredValue: ...

    async def value_at_version(self, stream: str, version: int) -> StoredValue | None: ...


class LogAcknowledgements(Protocol):
    """Foreign records on the log acknowledged as known (`events.log_records`)."""

    async def acknowledge(
        self, change: ForeignRecordAcknowledged, *, actor: Actor, reason: str, now: datetime
    ) -> Envelope:
        """Append the acknowledgement; `VersionConflict` when the record is acknowledged already."""
        ...
