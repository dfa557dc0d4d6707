"""The fold of subscription events: the live subscriptions, as the command API lists them and the
notifier delivers to them. Pure: the callers read the events (from the store or the topic) and pass them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events import DestinationKind, Envelope, FlagKind, Level, SubscriptionChange
from flagcore.state import StreamHead
from flagcore.transitions import subscription_transition

__all__ = ["SubscriptionBook", "SubscriptionView"]


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """One live subscription: what it hears and where it delivers (the secrets still sealed)."""

    id: str
    org_id: str | None
    stream: str
    version: int
    name: str
    destination: DestinationKind
    target: str
    sealed: str
    flag_pattern: str
    groups: frozenset[str]
    kinds: frozenset[FlagKind]
    levels: frozenset[Level]
    event_types: frozenset[str]
    paused: bool
    created_at: datetime
    changed_at: datetime

    @classmethod
    def of(cls, change: SubscriptionChange, head: StreamHead, created_at: datetime, at: datetime) -> SubscriptionView:
        v: dict[str, Any] = head.value or {}
        return cls(
            id=change.subscription_id,
            org_id=change.org_id,
            stream=change.stream,
            version=head.version,
            name=v["name"],
            destination=DestinationKind(v["destination"]),
            target=v["target"],
            sealed=v["sealed"],
            flag_pattern=v["flag_pattern"],
            groups=frozenset(v["groups"]),
            kinds=frozenset(FlagKind(k) for k in v["kinds"]),
            levels=frozenset(Level(lv) for lv in v["levels"]),
            event_types=frozenset(v["event_types"]),
            paused=v["paused"],
            created_at=created_at,
            changed_at=at,
        )


class SubscriptionBook:
    """Subscription events in log order → the live subscriptions. Each stream version applies once,
    so a replay (or an at-least-once duplicate) changes nothing; other events are ignored."""

    def __init__(self) -> None:
        self.heads: dict[str, StreamHead] = {}
        self._created: dict[str, datetime] = {}
        self.live: dict[str, SubscriptionView] = {}  # by stream

    def apply(self, envelope: Envelope) -> bool:
        """Fold `envelope`; True when it changed a subscription. Raises `InvalidTransition` for an impossible one."""
        change = envelope.data
        if not isinstance(change, SubscriptionChange):
            return False
        head = self.heads.get(envelope.stream)
        if head is not None and envelope.version <= head.version:
            return False
        value = subscription_transition(head.value if head else None, change)
        head = StreamHead(envelope.version, envelope.hash, value)
        self.heads[envelope.stream] = head
        created = self._created.setdefault(envelope.stream, envelope.occurred_at)
        if value is None or value.get("deleted"):
            self.live.pop(envelope.stream, None)
        else:
            self.live[envelope.stream] = SubscriptionView.of(change, head, created, envelope.occurred_at)
        return True

    def extend(self, envelopes: Iterable[Envelope]) -> SubscriptionBook:
        for envelope in envelopes:
            self.apply(envelope)
        return self

    def of_org(self, org_id: str | None) -> list[SubscriptionView]:
        """One org's subscriptions (None: the system-wide ones), oldest first."""
        found = [s for s in self.live.values() if s.org_id == org_id]
        return sorted(found, key=lambda s: (s.created_at, s.id))
