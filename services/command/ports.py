"""The ports the command side depends on, so the API and the relay run on any adapter.

`EventStore` is implemented by `store.PostgresEventStore` (production) and
`memory.InMemoryEventStore` (unit tests); `Producer` is the subset of
aiokafka's producer the relay uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from events import Actor, Envelope, FlagChange
from flagcore import StreamHead

OUTBOX_CHANNEL = "flags_outbox"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log: its global position and the exact canonical bytes stored."""

    sequence: int
    body: bytes


class RelayLease(Protocol):
    """Proof that this process is the one relay of its database (held until released)."""

    @property
    def alive(self) -> bool: ...

    async def release(self) -> None: ...


class EventStore(Protocol):
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
