"""What the notifier's tests share: logs with bulk changes, subscriptions, and an in-memory delivery log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson

from events import (
    Actor,
    AnyChange,
    DestinationKind,
    Envelope,
    FlagDefined,
    FlagKind,
    Level,
    SubscriptionCreated,
    subscription_stream,
)
from services.infra.sealing import Sealer
from services.notifier.deliveries import Attempt, DeadLetter
from services.notifier.ports import DeliveryLogError, PendingDeadLetter
from services.notifier.subscriptions import Subscription
from tests.support.factories import ALICE, LogBuilder


def seal_bulk(log: LogBuilder, changes: Iterable[AnyChange], *, reason: str, actor: Actor = ALICE) -> list[Envelope]:
    """Seal `changes` as one command does: one actor, one reason, one instant."""
    start = log.clock
    sealed = []
    for change in changes:
        log.clock = start
        envelope = log.append(change, reason=reason, actor=actor)
        assert envelope is not None, change
        sealed.append(envelope)
    log.clock = start + timedelta(seconds=1)
    return sealed


def defined(key: str, *, kind: FlagKind = FlagKind.RELEASE, group: str = "core") -> FlagDefined:
    return FlagDefined(flag_key=key, kind=kind, group=group)


def subscribed(
    sealer: Sealer,
    subscription_id: str,
    url: str,
    *,
    org_id: str | None = None,
    kind: DestinationKind = DestinationKind.WEBHOOK,
    secret: str | None = None,
    flag_pattern: str = "*",
    kinds: tuple[FlagKind, ...] = (),
    levels: tuple[Level, ...] = (),
    event_types: tuple[str, ...] = (),
) -> SubscriptionCreated:
    """A `SubscriptionCreated` as the command service writes it: the URL and secret sealed to its stream."""
    stream = subscription_stream(org_id, subscription_id)
    return SubscriptionCreated(
        subscription_id=subscription_id, org_id=org_id, name=subscription_id, destination=kind, target=url,
        sealed=sealer.seal(orjson.dumps({"url": url, "secret": secret}), bound_to=stream),
        flag_pattern=flag_pattern, kinds=kinds, levels=levels, event_types=event_types,
    )  # fmt: skip


class MemoryDeliveryLog:
    """The delivery log in memory (the `DeliveryLog` and `DeliveryReads` ports), keeping what Postgres keeps.

    A dead letter's id is its place in `dead`, from 1; `down` makes every read refuse, as a database away."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.outcomes: dict[tuple[str, UUID], str] = {}
        self.dead: list[DeadLetter] = []
        self.retried: set[int] = set()
        self.down = False

    async def settled(self, subscription: Subscription, event_ids: Sequence[UUID]) -> set[UUID]:
        return {e for e in event_ids if (subscription.id, e) in self.outcomes}

    async def record_attempt(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    async def record_outcome(self, attempt: Attempt, dead: DeadLetter | None) -> None:
        self.attempts.append(attempt)
        delivery = attempt.delivery
        for event_id in delivery.event_ids:
            key = (delivery.subscription.id, event_id)
            if delivery.retry_of is not None:
                self.outcomes.pop(key, None)
            self.outcomes.setdefault(key, "dead" if dead else "delivered")
        if delivery.retry_of is not None:
            self.retried.add(delivery.retry_of)
        if dead is not None:
            self.dead.append(dead)

    async def ping(self) -> None:
        if self.down:
            raise DeliveryLogError("PostgreSQL unavailable: ConnectionRefusedError")

    async def latest_attempts(self, org_id: str | None, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        await self.ping()
        mine = [a for a in self.of(subscription_id) if a.delivery.subscription.org_id == org_id]
        return [{"attempt": a.number, "status": a.status.value, "http_status": a.http_status, "error": a.error,
                 "event_ids": [str(e) for e in a.delivery.event_ids]} for a in reversed(mine)][:limit]  # fmt: skip

    async def dead_letters(self, org_id: str | None, subscription_id: str, limit: int) -> list[dict[str, Any]]:
        await self.ping()
        return [{"id": i, "reason": d.reason, "attempts": d.attempts, "retried": i in self.retried}
                for i, d in reversed(self._dead_of(org_id, subscription_id))][:limit]  # fmt: skip

    async def pending_dead_letters(self, org_id: str | None, subscription_id: str) -> list[PendingDeadLetter]:
        await self.ping()
        return [PendingDeadLetter(i, d.delivery.event_ids, d.delivery.body)
                for i, d in self._dead_of(org_id, subscription_id) if i not in self.retried]  # fmt: skip

    def _dead_of(self, org_id: str | None, subscription_id: str) -> list[tuple[int, DeadLetter]]:
        s = [(i, d) for i, d in enumerate(self.dead, 1) if d.delivery.subscription.id == subscription_id]
        return [(i, d) for i, d in s if d.delivery.subscription.org_id == org_id]

    def of(self, subscription_id: str) -> list[Attempt]:
        return [a for a in self.attempts if a.delivery.subscription.id == subscription_id]
