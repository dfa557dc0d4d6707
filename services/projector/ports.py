"""What the projector's use case (`projection`) and its consumer (`app`) need, as protocols.

`store.PostgresStore` is the store (and the stored offsets), `adapters.KafkaDeadLetters` the dead-letter sink,
`adapters.RedisInvalidator` the invalidator; `bootstrap` plugs them in, tests plug fakes
(tests/support/projector_fakes.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from flaglog import DeadLetter, TopicPartition
from services.projector.cache_targets import CacheTarget
from services.projector.heads import Head
from services.projector.tenant_plan import TenantPlan

__all__ = ["DeadLetterSink", "Invalidator", "Store", "StoredOffsets", "Transaction"]


class Transaction(Protocol):
    """One batch's unit of work on the store; nothing is kept unless it completes."""

    async def lock_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def nothing_projected(self) -> bool: ...
    async def definitions(self, flag_keys: Iterable[str]) -> dict[str, dict[str, Any]]: ...
    async def heads(self, wanted: Mapping[str | None, Iterable[str]]) -> dict[str, Head]: ...
    async def write(self, plans: Sequence[TenantPlan]) -> None: ...
    async def advance(self, offsets: Mapping[TopicPartition, int]) -> None: ...


class Store(Protocol):
    def batch(self) -> AbstractAsyncContextManager[Transaction]: ...


class DeadLetterSink(Protocol):
    async def publish(self, letters: Sequence[DeadLetter]) -> None: ...


class Invalidator(Protocol):
    async def invalidate(self, targets: Sequence[CacheTarget]) -> bool: ...


class StoredOffsets(Protocol):
    """The next offset of each partition, as committed with the read models (where a consumer resumes)."""

    async def stored_offsets(self, topic: str) -> dict[int, int]: ...
