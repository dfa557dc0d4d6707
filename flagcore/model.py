"""What the fold produces and the evaluator reads: definitions and settings per level."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import Envelope, FlagKind
from flagcore.instants import format_instant, parse_instant


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
class ScheduledStep:
    """From `at` on, the setting takes these values; None keeps what is in force."""

    at: datetime
    enabled: bool | None = None
    rollout_percentage: int | None = None

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> ScheduledStep:
        return cls(parse_instant(value["at"]), value.get("enabled"), value.get("rollout_percentage"))

    def to_value(self) -> dict[str, Any]:
        return {"at": format_instant(self.at), "enabled": self.enabled, "rollout_percentage": self.rollout_percentage}


@dataclass(frozen=True, slots=True)
class Setting:
    """A level's say on a flag: on/off, a sticky rollout, or both (on for N%), and what is scheduled.

    `schedule` holds only steps later than the stream's last event (earlier ones were
    folded in by `transition`), in time order; `in_force(now)` applies those due.
    """

    enabled: bool | None
    rollout_percentage: int | None
    source: EventRef | None = None
    schedule: tuple[ScheduledStep, ...] = ()

    @classmethod
    def from_value(cls, value: dict[str, Any], source: EventRef | None = None) -> Setting:
        steps = tuple(ScheduledStep.from_value(s) for s in value.get("schedule") or ())
        return cls(value.get("enabled"), value.get("rollout_percentage"), source, steps)

    def to_value(self) -> dict[str, Any]:
        """The stream value this setting was read from (`from_value`'s inverse)."""
        value: dict[str, Any] = {"enabled": self.enabled, "rollout_percentage": self.rollout_percentage}
        if self.schedule:
            value["schedule"] = [s.to_value() for s in self.schedule]
        return value

    def in_force(self, now: datetime) -> Setting:
        """The setting at `now`: the stored values with every step due by `now` applied, in order."""
        enabled, pct = self.enabled, self.rollout_percentage
        for step in self.schedule:
            if step.at > now:
                break
            enabled = enabled if step.enabled is None else step.enabled
            pct = pct if step.rollout_percentage is None else step.rollout_percentage
        return Setting(enabled, pct, self.source)

    def next_change(self, now: datetime) -> datetime | None:
        """The first scheduled instant after `now` (None: nothing pending)."""
        return next((s.at for s in self.schedule if s.at > now), None)


@dataclass(frozen=True, slots=True)
class Variant:
    """An experiment arm and its weight in thousandths (the weights sum to 1000)."""

    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class Definition:
    key: str
    kind: FlagKind
    description: str
    owner: str | None
    group: str
    archived: bool = False
    source: EventRef | None = None
    killed: bool = False  # an ops flag's kill switch: off everywhere, whatever the levels say
    variants: tuple[Variant, ...] = ()
    expires_at: datetime | None = None

    @classmethod
    def from_value(cls, key: str, value: dict[str, Any], source: EventRef | None = None) -> Definition:
        expires = value.get("expires_at")
        return cls(
            key=key,
            kind=FlagKind(value["kind"]),
            description=value["description"],
            owner=value.get("owner"),
            group=value["group"],
            archived=bool(value.get("archived", False)),
            source=source,
            killed=bool(value.get("killed", False)),
            variants=tuple(Variant(v["name"], v["weight"]) for v in value.get("variants") or ()),
            expires_at=None if expires is None else parse_instant(expires),
        )

    def to_value(self) -> dict[str, Any]:
        """The stream value this definition was read from (`from_value`'s inverse)."""
        value: dict[str, Any] = {
            "kind": self.kind.value,
            "description": self.description,
            "owner": self.owner,
            "group": self.group,
            "archived": self.archived,
        }
        if self.killed:
            value["killed"] = True
        if self.variants:
            value["variants"] = [{"name": v.name, "weight": v.weight} for v in self.variants]
        if self.expires_at is not None:
            value["expires_at"] = format_instant(self.expires_at)
        return value


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
