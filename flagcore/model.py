"""What the fold produces and the evaluator reads: definitions and settings per level."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import Envelope, FlagKind, ValueType
from events.targeting import Operator
from events.values import BOOLEAN_VARIANTS
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
class Variant:
    """A weighted variant: an experiment arm, or an arm of a level's split (weights sum to 1000)."""

    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class Setting:
    """A level's say on a flag: on/off, a sticky rollout, or both (on for N%), what it serves when on
    (`variant`, or a weighted `split` of variants; neither: the flag's default), and what is scheduled.

    `schedule` holds only steps later than the stream's last event (earlier ones were
    folded in by `transition`), in time order; `in_force(now)` applies those due.
    """

    enabled: bool | None
    rollout_percentage: int | None
    source: EventRef | None = None
    schedule: tuple[ScheduledStep, ...] = ()
    variant: str | None = None
    split: tuple[Variant, ...] | None = None

    @classmethod
    def from_value(cls, value: dict[str, Any], source: EventRef | None = None) -> Setting:
        steps = tuple(ScheduledStep.from_value(s) for s in value.get("schedule") or ())
        split = value.get("split")
        return cls(
            value.get("enabled"),
            value.get("rollout_percentage"),
            source,
            steps,
            value.get("variant"),
            None if split is None else tuple(Variant(v["name"], v["weight"]) for v in split),
        )

    def to_value(self) -> dict[str, Any]:
        """The stream value this setting was read from (`from_value`'s inverse)."""
        value: dict[str, Any] = {"enabled": self.enabled, "rollout_percentage": self.rollout_percentage}
        if self.schedule:
            value["schedule"] = [s.to_value() for s in self.schedule]
        value.update(self.selection())
        return value

    def selection(self) -> dict[str, Any]:
        """The `variant` or `split` key of the stream value (none when the level serves the default)."""
        if self.variant is not None:
            return {"variant": self.variant}
        if self.split is not None:
            return {"split": [{"name": v.name, "weight": v.weight} for v in self.split]}
        return {}

    @property
    def speaks(self) -> bool:
        """Whether the level says anything (a setting with nothing in force is passed over)."""
        return not (
            self.enabled is None and self.rollout_percentage is None and self.variant is None and self.split is None
        )

    def in_force(self, now: datetime) -> Setting:
        """The setting at `now`: the stored values with every step due by `now` applied, in order."""
        enabled, pct = self.enabled, self.rollout_percentage
        for step in self.schedule:
            if step.at > now:
                break
            enabled = enabled if step.enabled is None else step.enabled
            pct = pct if step.rollout_percentage is None else step.rollout_percentage
        return Setting(enabled, pct, self.source, (), self.variant, self.split)

    def next_change(self, now: datetime) -> datetime | None:
        """The first scheduled instant after `now` (None: nothing pending)."""
        return next((s.at for s in self.schedule if s.at > now), None)


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
    value_type: ValueType = ValueType.BOOLEAN
    values: tuple[tuple[str, Any], ...] = ()  # a typed flag's variants (name, value), in name order
    default_variant: str = "on"  # what a level that turns the flag on serves, unless it names a variant
    off_variant: str = "off"  # what the flag serves when off: no level on, archived, killed, outside a rollout

    def value_of(self, variant: str) -> Any:
        """The value a variant serves (a boolean flag's are on/off; an unknown name serves the default's)."""
        if self.value_type is ValueType.BOOLEAN:
            return variant != self.off_variant
        table = dict(self.values)
        return table[variant] if variant in table else table[self.default_variant]

    def known(self, variant: str) -> bool:
        if self.value_type is ValueType.BOOLEAN:
            return variant in BOOLEAN_VARIANTS or any(v.name == variant for v in self.variants)
        return any(name == variant for name, _ in self.values)

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
            **typed_fields(value),
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
        if self.value_type is not ValueType.BOOLEAN:
            value["value_type"] = self.value_type.value
            value["values"] = dict(self.values)
            value["default_variant"] = self.default_variant
            value["off_variant"] = self.off_variant
        return value


def typed_fields(value: dict[str, Any]) -> dict[str, Any]:
    """A definition value's typed part as `Definition` fields (a value without one is a boolean flag's)."""
    kind = value.get("value_type")
    if kind is None or kind == ValueType.BOOLEAN.value:
        return {}
    return {
        "value_type": ValueType(kind),
        "values": tuple(sorted(value["values"].items())),
        "default_variant": value["default_variant"],
        "off_variant": value["off_variant"],
    }


@dataclass(frozen=True, slots=True)
class Condition:
    """`attribute operator values` (see `flagcore.targeting` for what each operator means); a segment
    operator's `attribute` is empty and its values are segment keys."""

    attribute: str
    operator: Operator
    values: tuple[str | int | float | bool, ...] = ()
    case_sensitive: bool = True


@dataclass(frozen=True, slots=True)
class TargetingRule:
    """When every condition holds, serve `variant`, or the subject's arm of `split`."""

    id: str
    conditions: tuple[Condition, ...]
    variant: str | None = None
    split: tuple[Variant, ...] | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    """A level's ordered targeting rules, and the event that set them."""

    rules: tuple[TargetingRule, ...]
    source: EventRef | None = None

    @classmethod
    def from_value(cls, value: dict[str, Any], source: EventRef | None = None) -> Rules:
        """The rules of a `.../rules` stream value (`{"rules": [...]}`, as `transition` writes it)."""
        return cls(tuple(_rule_of(r) for r in value["rules"]), source)


def _rule_of(raw: dict[str, Any]) -> TargetingRule:
    conditions = _conditions_of(raw["conditions"])
    split = raw.get("split")
    arms = None if split is None else tuple(Variant(v["name"], v["weight"]) for v in split)
    return TargetingRule(raw["id"], conditions, raw.get("variant"), arms)


def _conditions_of(raw: list[dict[str, Any]]) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            c.get("attribute") or "",
            Operator(c["operator"]),
            tuple(c.get("values") or ()),
            c.get("case_sensitive", True),
        )
        for c in raw
    )


@dataclass(frozen=True, slots=True)
class Segment:
    """A named set of conditions (all must hold), system-wide (`org_id` None) or one org's.

    Hashed by its key and the event that set it (which fix its content), not by its conditions: a compiled
    rule is cached per segment it names (`flagcore.targeting.compiled`), and a list of thousands of members
    would otherwise be hashed on every evaluation.
    """

    key: str
    org_id: str | None
    name: str
    description: str
    conditions: tuple[Condition, ...]
    archived: bool = False
    source: EventRef | None = None

    def __hash__(self) -> int:
        if self.source is not None:
            return hash((self.key, self.org_id, self.archived, self.source))
        return hash((self.key, self.org_id, self.archived, self.conditions))

    @classmethod
    def from_value(cls, key: str, org_id: str | None, value: dict[str, Any], source: EventRef | None = None) -> Segment:
        """The segment of a `segment/...` stream value (as `transition` writes it)."""
        conditions = _conditions_of(value["conditions"])
        archived = bool(value.get("archived", False))
        return cls(key, org_id, value["name"], value.get("description", ""), conditions, archived, source)


@dataclass(slots=True)
class Catalog:
    """System-wide part of the state: flag definitions and system defaults."""

    definitions: dict[str, Definition] = field(default_factory=dict)
    system: dict[str, Setting] = field(default_factory=dict)
    rules: dict[str, Rules] = field(default_factory=dict)  # flag → the system's targeting rules
    segments: dict[str, Segment] = field(default_factory=dict)  # key → a system-wide segment (archived too)


@dataclass(slots=True)
class TenantRules:
    """One organisation's overrides. `user` may hold only the users a caller asked about."""

    org_id: str
    org: dict[str, Setting] = field(default_factory=dict)
    platform: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (platform, flag)
    user: dict[tuple[str, str], Setting] = field(default_factory=dict)  # (user, flag)
    rules: dict[str, Rules] = field(default_factory=dict)  # flag → the org's targeting rules
    segments: dict[str, Segment] = field(default_factory=dict)  # key → the org's own segment (archived too)
