"""What the notifier needs from the world, as protocols: `bootstrap` plugs the adapters in, tests plug fakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from services.notifier.deliveries import Attempt, DeadLetter, Delivery
from services.notifier.subscriptions import Subscription

__all__ = ["DeliveryLog", "Sender"]


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
        one write."""
        ...


class Sender(Protocol):
    """Makes one attempt; never raises for what the destination or the network did."""

    async def send(self, delivery: Delivery, number: int) -> Attempt: ...
