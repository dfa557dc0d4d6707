"""What the fold produces and the evaluator reads: definitions and settings per level."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import Envelope, FlagKind


@dataclass(frozen=True, slots=True)
class EventRef:
    """The event that set a value: what every answer points back to."""

    event_id: str
    stream: str
    version: int
    actor: str
    reason: str
    occurred_at: datetime

    @classmethod
    def of(cls, envelope: Envelope) -> EventRef:
        return cls(
            event_id=str(envelope.event_id),
            stream=envelope.stream,
            version=envelope.version,
            actor=envelope.actor.name,
            reason=envelope.reason,
            occurred_at=envelope.occurred_at,
        )


@dataclass(frozen=True, slots=True)
class Setting:
    """A level's say on a flag: on/off, a sticky rollout, or both (on for N%)."""

    enabled: bool | None
    rollout_percentage: int | None
    source: EventRef | None = None

    @classmethod
    def from_value(cls, value: dict[str, Any], source: EventRef | None = None) -> Setting:
        return cls(value.get("enabled"), value.get("rollout_percentage"), source)

    def to_value(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "rollout_percentage": self.rollout_percentage}


@dataclass(frozen=True, slots=True)
class Definition:
    key: str
    kind: FlagKind
    description: str
    owner: str | None
    group: str
    archived: bool = False
    source: EventRef | None = None

    @classmethod
    def from_value(cls, key: str, value: dict[str, Any], source: EventRef | None = None) -> Definition:
        return cls(
            key=key,
            kind=FlagKind(value["kind"]),
            description=value["description"],
            owner=value.get("owner"),
            group=value["group"],
            archived=bool(value.get("archived", False)),
            source=source,
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "description": self.description,
            "owner": self.owner,
            "group": self.group,
            "archived": self.archived,
        }


@dataclass(slots=True)
class Catalog:
    """System-wide part of the state: flag definitions and system defaults."""

    definitions: dict[str, Definition] = field(default_factory=dict)
    system: dict[str, Setting] = field(default_factory=dict)


@dataclass(slots=True)
class TenantRules:
    """One organisation's overrides. `user` may hold only the users a caller asked about."""

    org_id: str
    org: dict[str, Setting] = field(default_factory=dict)
    platform: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (platform, flag)
    user: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (user, flag)
