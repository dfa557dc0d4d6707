"""Who wants to hear about which changes: a subscription, and whether a change matches it."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from events import DestinationKind, FlagKind, Level
from services.notifier.notices import Notice

__all__ = ["Destination", "DestinationKind", "Subscription", "matches"]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where deliveries go. `secret` signs webhook deliveries (a Slack URL is its own secret)."""

    kind: DestinationKind
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind is DestinationKind.WEBHOOK and not self.secret:
            raise ValueError("secret: a webhook destination signs its deliveries (Standard Webhooks `whsec_...`)")


@dataclass(frozen=True, slots=True)
class Subscription:
    """One destination and the changes it wants. An empty filter lets everything through.

    `org_id` None is system-wide: every change, the catalogue's included. An org's subscription
    hears only that org's changes (the catalogue's are for system-wide readers, as in the audit trail).
    `levels` names the levels of settings; a flag's definition events have no level, so a
    subscription that filters on levels does not hear them.
    """

    id: str
    destination: Destination
    org_id: str | None = None
    flag_pattern: str = "*"  # a glob over flag keys: `ai.*`, `*.enabled`
    groups: frozenset[str] = frozenset()
    kinds: frozenset[FlagKind] = frozenset()
    levels: frozenset[Level] = frozenset()
    event_types: frozenset[str] = frozenset()
    paused: bool = False


def matches(subscription: Subscription, notice: Notice) -> bool:
    """Whether `subscription` wants to be told about `notice`."""
    s = subscription
    envelope = notice.envelope
    if s.paused:
        return False
    if s.org_id is not None and envelope.org_id != s.org_id:
        return False
    if not fnmatchcase(notice.flag_key, s.flag_pattern):
        return False
    if s.groups and notice.group not in s.groups:
        return False
    if s.kinds and notice.kind not in s.kinds:
        return False
    if s.levels and notice.level not in s.levels:
        return False
    return not (s.event_types and envelope.type not in s.event_types)
