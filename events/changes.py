"""The facts the log records: one immutable, past-tense model per kind of change.

Each change knows its scope, hence its stream and Kafka key. `SCHEMA_VERSION` is
the version written today; older versions are lifted by `events.upcasting`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from events.base import Change
from events.fields import FlagKey, OrgId, Percentage, UserId
from events.log_records import ForeignRecordAcknowledged
from events.scope import Scope, definition_stream
from events.segments import SegmentArchived, SegmentChange, SegmentChanged, SegmentDefined, segment_stream
from events.subscriptions import (
    SubscriptionChange,
    SubscriptionChanged,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
    subscription_stream,
)
from events.targeting import MAX_CONDITIONS, MAX_RULES, RULE_ID_PATTERN, Condition
from events.values import check_typed
from events.vocabulary import (
    MAX_VARIANTS,
    VARIANT_NAME_PATTERN,
    VARIANT_WEIGHT_TOTAL,
    FlagKind,
    KeyRole,
    Level,
    Platform,
    ValueType,
)


class FlagChange(Change):
    """A change to a flag: its definition (no scope) or its setting at one scope."""

    flag_key: FlagKey

    @property
    def scope(self) -> Scope | None:
        """The setting scope, or None for definition events."""
        return None

    @property
    def stream(self) -> str:
        scope = self.scope
        return definition_stream(self.flag_key) if scope is None else scope.stream(self.flag_key)

    @property
    def tenant(self) -> str | None:
        scope = self.scope
        return None if scope is None else scope.org_id


# --- flag definitions -------------------------------------------------------


class Variant(BaseModel):
    """One arm of an experiment: a name and its share of users, in thousandths (Unleash's unit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=VARIANT_NAME_PATTERN, description="Variant name, e.g. `control`.")
    weight: int = Field(ge=0, le=VARIANT_WEIGHT_TOTAL, description="Share of users in thousandths (0–1000).")


class _Described(FlagChange):
    """The attributes a definition carries in full on every define and update."""

    kind: FlagKind = FlagKind.RELEASE
    description: str = Field(default="", max_length=1000)
    owner: str | None = Field(default=None, max_length=200)
    group: str = Field(min_length=1, max_length=64)
    variants: tuple[Variant, ...] = Field(default=(), description="Experiment arms; weights sum to 1000.")
    expires_at: AwareDatetime | None = Field(default=None, description="When the flag is due for removal.")
    value_type: ValueType = Field(default=ValueType.BOOLEAN, description="What the flag's variants hold.")
    values: dict[str, JsonValue] = Field(
        default_factory=dict, description="A typed flag's variants: name → value of `value_type` (none for boolean)."
    )
    default_variant: str | None = Field(default=None, description="What a level that turns the flag on serves.")
    off_variant: str | None = Field(default=None, description="What the flag serves when off.")

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else in_utc(value, "expires_at")

    @model_validator(mode="after")
    def _variants_are_an_experiment(self) -> _Described:
        check_variants(self.kind, self.variants)
        check_typed(self.value_type, self.values, self.default_variant, self.off_variant)
        if self.variants and self.value_type is not ValueType.BOOLEAN:
            raise ValueError("variants: a typed flag splits its users with a split at a level, not experiment arms")
        return self


def in_utc(value: datetime, name: str) -> datetime:
    """Instants travel in UTC, so their canonical JSON (and hash) has one form."""
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{name} is out of range once converted to UTC") from exc


def check_variants(kind: FlagKind, variants: tuple[Variant, ...]) -> None:
    """Variants belong to experiment flags, have distinct names, and split exactly 1000 thousandths."""
    if not variants:
        return
    if kind is not FlagKind.EXPERIMENT:
        raise ValueError(f"variants: only an experiment flag has variants (kind is {kind.value})")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError("variants: names must be distinct")
    total = sum(v.weight for v in variants)
    if total != VARIANT_WEIGHT_TOTAL:
        raise ValueError(f"variants: weights must sum to {VARIANT_WEIGHT_TOTAL}, not {total}")


class FlagDefined(_Described):
    """A new flag exists. v1 had no kind, owner or group; v2 no variants or expiry; v3 no value type."""

    SCHEMA_VERSION: ClassVar[int] = 4
    type: Literal["FlagDefined"] = "FlagDefined"


class FlagUpdated(_Described):
    """A flag's descriptive attributes changed (the full new set is carried). v1 had no variants or expiry;
    v2 no value type (see upcasting)."""

    SCHEMA_VERSION: ClassVar[int] = 3
    type: Literal["FlagUpdated"] = "FlagUpdated"
    kind: FlagKind


class FlagArchived(FlagChange):
    """The flag is retired: it evaluates off everywhere and takes no new settings."""

    type: Literal["FlagArchived"] = "FlagArchived"


class KillSwitchEngaged(FlagChange):
    """An ops flag was switched off everywhere at once: it wins over every level until released."""

    type: Literal["KillSwitchEngaged"] = "KillSwitchEngaged"


class KillSwitchReleased(FlagChange):
    """The kill switch is off again: the levels decide as before."""

    type: Literal["KillSwitchReleased"] = "KillSwitchReleased"


# --- settings at a level ----------------------------------------------------


class SystemDefaultSet(FlagChange):
    type: Literal["SystemDefaultSet"] = "SystemDefaultSet"
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.system()


class OrgOverrideSet(FlagChange):
    type: Literal["OrgOverrideSet"] = "OrgOverrideSet"
    org_id: OrgId
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.org(self.org_id)


class OrgOverrideCleared(FlagChange):
    type: Literal["OrgOverrideCleared"] = "OrgOverrideCleared"
    org_id: OrgId

    @property
    def scope(self) -> Scope:
        return Scope.org(self.org_id)


class PlatformOverrideSet(FlagChange):
    type: Literal["PlatformOverrideSet"] = "PlatformOverrideSet"
    org_id: OrgId
    platform: Platform
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.for_platform(self.org_id, self.platform)


class PlatformOverrideCleared(FlagChange):
    type: Literal["PlatformOverrideCleared"] = "PlatformOverrideCleared"
    org_id: OrgId
    platform: Platform

    @property
    def scope(self) -> Scope:
        return Scope.for_platform(self.org_id, self.platform)


class UserOverrideSet(FlagChange):
    type: Literal["UserOverrideSet"] = "UserOverrideSet"
    org_id: OrgId
    user_id: UserId
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.user(self.org_id, self.user_id)


class UserOverrideCleared(FlagChange):
    type: Literal["UserOverrideCleared"] = "UserOverrideCleared"
    org_id: OrgId
    user_id: UserId

    @property
    def scope(self) -> Scope:
        return Scope.user(self.org_id, self.user_id)


class RolloutPercentageSet(FlagChange):
    """A sticky percentage at one level; `percentage=None` removes the rollout."""

    type: Literal["RolloutPercentageSet"] = "RolloutPercentageSet"
    level: Level
    org_id: OrgId | None = None
    platform: Platform | None = None
    user_id: UserId | None = None
    percentage: Percentage | None

    @model_validator(mode="after")
    def _scope_is_consistent(self) -> RolloutPercentageSet:
        Scope(self.level, self.org_id, self.platform, self.user_id)
        return self

    @property
    def scope(self) -> Scope:
        return Scope(self.level, self.org_id, self.platform, self.user_id)


class VariantSelected(FlagChange):
    """What a level serves when it is on: one variant, a weighted split of variants, or (both None) the default.

    A split is Unleash's sticky variant assignment (`flagcore.variants`), weights in thousandths summing
    to 1000. A rollout percentage at the same level still decides who is on at all.
    """

    type: Literal["VariantSelected"] = "VariantSelected"
    level: Level
    org_id: OrgId | None = None
    platform: Platform | None = None
    user_id: UserId | None = None
    variant: str | None = Field(default=None, pattern=VARIANT_NAME_PATTERN, description="The variant served.")
    split: tuple[Variant, ...] | None = Field(default=None, description="Variants and weights (sum 1000).")

    @model_validator(mode="after")
    def _one_choice(self) -> VariantSelected:
        Scope(self.level, self.org_id, self.platform, self.user_id)
        if self.variant is not None and self.split is not None:
            raise ValueError("a level serves one variant or a split, not both")
        if self.split is not None:
            check_split(self.split)
        return self

    @property
    def scope(self) -> Scope:
        return Scope(self.level, self.org_id, self.platform, self.user_id)


def check_split(split: tuple[Variant, ...]) -> None:
    """A split names 1–50 distinct variants whose weights sum to 1000 thousandths."""
    if not split or len(split) > MAX_VARIANTS:
        raise ValueError(f"split: 1 to {MAX_VARIANTS} variants")
    names = [v.name for v in split]
    if len(set(names)) != len(names):
        raise ValueError("split: names must be distinct")
    total = sum(v.weight for v in split)
    if total != VARIANT_WEIGHT_TOTAL:
        raise ValueError(f"split: weights must sum to {VARIANT_WEIGHT_TOTAL}, not {total}")


class TargetingRule(BaseModel):
    """When every condition holds (AND), serve `variant`, or the subject's arm of `split` (as a level's split)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(pattern=RULE_ID_PATTERN, description="Names the rule in answers; unique in its list.")
    conditions: tuple[Condition, ...] = Field(min_length=1, max_length=MAX_CONDITIONS, description="All must hold.")
    variant: str | None = Field(default=None, pattern=VARIANT_NAME_PATTERN, description="The variant served.")
    split: tuple[Variant, ...] | None = Field(default=None, description="Variants and weights (sum 1000).")

    @model_validator(mode="after")
    def _one_outcome(self) -> TargetingRule:
        if (self.variant is None) == (self.split is None):
            raise ValueError("a rule serves a variant or a split (exactly one)")
        if self.split is not None:
            check_split(self.split)
        return self


class TargetingRulesSet(FlagChange):
    """The flag's ordered targeting rules at the system level or for one org (the full new list; empty: none).

    Its own stream per level (`.../rules`), apart from the level's on/off setting: clearing an org's
    override keeps its rules, and a rule change is one event a reader can diff.
    """

    type: Literal["TargetingRulesSet"] = "TargetingRulesSet"
    level: Literal[Level.SYSTEM, Level.ORG]
    org_id: OrgId | None = None
    rules: tuple[TargetingRule, ...] = Field(max_length=MAX_RULES, description=f"Tried in order (0–{MAX_RULES}).")

    @model_validator(mode="after")
    def _consistent(self) -> TargetingRulesSet:
        Scope(self.level, self.org_id)
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rules: ids must be distinct")
        return self

    @property
    def scope(self) -> Scope:
        return Scope(self.level, self.org_id)

    @property
    def stream(self) -> str:
        return rules_stream(self.scope, self.flag_key)


def rules_stream(scope: Scope, flag_key: str) -> str:
    """The stream of a flag's targeting rules at one level: the level's setting stream plus `/rules`."""
    return f"{scope.stream(flag_key)}/rules"


def selection_value(change: VariantSelected) -> dict[str, Any]:
    """The keys a level's stream value holds for this selection (none for the default)."""
    if change.variant is not None:
        return {"variant": change.variant}
    if change.split is not None:
        return {"split": [{"name": v.name, "weight": v.weight} for v in change.split]}
    return {}


class _ScheduledAtScope(FlagChange):
    """A change to the schedule of one scope's setting (any level)."""

    level: Level
    org_id: OrgId | None = None
    platform: Platform | None = None
    user_id: UserId | None = None
    effective_at: AwareDatetime = Field(description="The instant the step takes effect (UTC).")

    @field_validator("effective_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return in_utc(value, "effective_at")

    @model_validator(mode="after")
    def _scope_is_consistent(self) -> _ScheduledAtScope:
        Scope(self.level, self.org_id, self.platform, self.user_id)
        return self

    @property
    def scope(self) -> Scope:
        return Scope(self.level, self.org_id, self.platform, self.user_id)


class SettingScheduled(_ScheduledAtScope):
    """From `effective_at` on, the setting takes these values; a field left None keeps what is in force then.

    Replaces any step already scheduled at the same instant.
    """

    type: Literal["SettingScheduled"] = "SettingScheduled"
    enabled: bool | None = None
    rollout_percentage: Percentage | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> SettingScheduled:
        if self.enabled is None and self.rollout_percentage is None:
            raise ValueError("a scheduled step sets enabled and/or rollout_percentage")
        return self


class ScheduledSettingCancelled(_ScheduledAtScope):
    """The step scheduled at `effective_at` will not happen."""

    type: Literal["ScheduledSettingCancelled"] = "ScheduledSettingCancelled"


# --- API keys -------------------------------------------------------------------


class KeyChange(Change):
    """A change to an API key. The secret never travels: only the command store holds its hash."""

    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    org_id: OrgId | None = Field(description="The key's org scope; None for a system-wide key.")

    @property
    def stream(self) -> str:
        return key_stream(self.key_id)

    @property
    def tenant(self) -> str | None:
        return self.org_id


class ApiKeyCreated(KeyChange):
    type: Literal["ApiKeyCreated"] = "ApiKeyCreated"
    name: str = Field(min_length=1, max_length=100)
    role: KeyRole
    expires_at: AwareDatetime | None = None


class ApiKeyRevoked(KeyChange):
    type: Literal["ApiKeyRevoked"] = "ApiKeyRevoked"


class ApiKeyExpirySet(KeyChange):
    type: Literal["ApiKeyExpirySet"] = "ApiKeyExpirySet"
    expires_at: AwareDatetime | None


def key_stream(key_id: str) -> str:
    return f"key/{key_id}"


AnyChange = Annotated[
    FlagDefined
    | FlagUpdated
    | FlagArchived
    | KillSwitchEngaged
    | KillSwitchReleased
    | SettingScheduled
    | ScheduledSettingCancelled
    | SystemDefaultSet
    | OrgOverrideSet
    | OrgOverrideCleared
    | PlatformOverrideSet
    | PlatformOverrideCleared
    | UserOverrideSet
    | UserOverrideCleared
    | RolloutPercentageSet
    | VariantSelected
    | TargetingRulesSet
    | ApiKeyCreated
    | ApiKeyRevoked
    | ApiKeyExpirySet
    | SubscriptionCreated
    | SubscriptionChanged
    | SubscriptionPaused
    | SubscriptionResumed
    | SubscriptionDeleted
    | ForeignRecordAcknowledged
    | SegmentDefined
    | SegmentChanged
    | SegmentArchived,
    Field(discriminator="type"),
]

CHANGE_TYPES: dict[str, type[Change]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        FlagDefined,
        FlagUpdated,
        FlagArchived,
        KillSwitchEngaged,
        KillSwitchReleased,
        SettingScheduled,
        ScheduledSettingCancelled,
        SystemDefaultSet,
        OrgOverrideSet,
        OrgOverrideCleared,
        PlatformOverrideSet,
        PlatformOverrideCleared,
        UserOverrideSet,
        UserOverrideCleared,
        RolloutPercentageSet,
        VariantSelected,
        TargetingRulesSet,
        ApiKeyCreated,
        ApiKeyRevoked,
        ApiKeyExpirySet,
        SubscriptionCreated,
        SubscriptionChanged,
        SubscriptionPaused,
        SubscriptionResumed,
        SubscriptionDeleted,
        ForeignRecordAcknowledged,
        SegmentDefined,
        SegmentChanged,
        SegmentArchived,
    )
}

__all__ = [
    "CHANGE_TYPES", "AnyChange", "ApiKeyCreated", "ApiKeyExpirySet", "ApiKeyRevoked", "Change", "FlagArchived",
    "FlagChange", "FlagDefined", "FlagUpdated", "KeyChange", "KillSwitchEngaged", "KillSwitchReleased",
    "OrgOverrideCleared", "OrgOverrideSet", "PlatformOverrideCleared", "PlatformOverrideSet",
    "RolloutPercentageSet", "ScheduledSettingCancelled", "SegmentArchived", "SegmentChange", "SegmentChanged",
    "SegmentDefined", "SettingScheduled", "SubscriptionChange",
    "SubscriptionChanged", "SubscriptionCreated", "SubscriptionDeleted", "SubscriptionPaused",
    "SubscriptionResumed", "SystemDefaultSet", "TargetingRule", "TargetingRulesSet", "UserOverrideCleared",
    "UserOverrideSet", "Variant",
    "check_variants", "in_utc", "key_stream", "rules_stream", "segment_stream", "subscription_stream",
]  # fmt: skip
