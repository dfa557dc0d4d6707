"""What the notifier needs from the world, as protocols: `bootstrap` plugs the adapters in, tests plug fakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from services.notifier.deliveries import Attempt, DeadLetter, Delivery
from services.notifier.subscriptions import Subscription

__all__ = ["DeliveryLog", "DeliveryLogError", "DeliveryObserver", "DeliveryReads", "PendingDeadLetter", "Sender"]


class DeliveryLogError(Exception):
    """The delivery log could not be read or written (the database is away, or refused)."""


class DeliveryLog(Protocol):
    """Where every attempt and every outcome is recorded, durably, before the topic offset moves past it."""

    async def settled(self, subscription: Subscription, event_ids: Sequence[UUID]) -> set[UUID]:
        """Which of `event_ids` already have an outcome (delivered or dead) for this subscription."""
        ...

    async def record_attempt(self, attempt: Attempt) -> None:
        """An attempt that will be retried."""
        ...

    async def record_outcome(self, attempt: Attempt, dead: DeadLetter | None) -> None:
        """The last attempt, the outcome of each of its events, and the dead letter if it was given up on:
        one write. For a retried dead letter (`Delivery.retry_of`), the new outcome replaces the old one
        and the dead letter is marked retried, in the same write."""
        ...


@dataclass(frozen=True, slots=True)
class PendingDeadLetter:
    """A dead letter not yet retried: what "retry now" sends again."""

    id: int
    event_ids: tuple[UUID, ...]
    body: bytes = field(repr=False)


class DeliveryReads(Protocol):
    """The delivery log as operators read it (the notifier's HTTP API), within the subscription's org."""

    async def ping(self) -> None:
        """Raises `DeliveryLogError` when the database is out of reach."""
        ...

    async def latest_attempts(self, org_id: str | None, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest attempts first."""
        ...

    async def dead_letters(self, org_id: str | None, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest first, retried or not."""
        ...

    async def pending_dead_letters(self, org_id: str | None, subscription_id: str) -> list[PendingDeadLetter]:
        """The dead letters not yet retried, oldest first."""
        ...


class DeliveryObserver(Protocol):
    """Told of every attempt and outcome as it is recorded (the notifier's metrics)."""

    def attempted(self, attempt: Attempt) -> None: ...

    def settled(self, delivery: Delivery, dead: bool) -> None: ...


class Sender(Protocol):
    """Makes one attempt; never raises for what the destination or the network did."""

    async def send(self, delivery: Delivery, number: int) -> Attempt: ...
