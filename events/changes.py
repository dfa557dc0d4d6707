"""The facts the log records: one immutable, past-tense model per kind of change.

Each change knows its scope, hence its stream and Kafka key. `SCHEMA_VERSION` is
the version written today; older versions are lifted by `events.upcasting`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.scope import Scope, definition_stream
from events.vocabulary import FlagKey, FlagKind, Level, OrgId, Percentage, Platform, UserId


class Change(BaseModel):
    """Base of every event body."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA_VERSION: ClassVar[int] = 1

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
    def partition_key(self) -> str:
        scope = self.scope
        return Scope.system().partition_key if scope is None else scope.partition_key


# --- flag definitions -------------------------------------------------------


class FlagDefined(Change):
    """A new flag exists. v1 had no kind, owner or group (see upcasting)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    type: Literal["FlagDefined"] = "FlagDefined"
    kind: FlagKind = FlagKind.RELEASE
    description: str = Field(default="", max_length=1000)
    owner: str | None = Field(default=None, max_length=200)
    group: str = Field(min_length=1, max_length=64)


class FlagUpdated(Change):
    """A flag's descriptive attributes changed (the full new set is carried)."""

    type: Literal["FlagUpdated"] = "FlagUpdated"
    kind: FlagKind
    description: str = Field(max_length=1000)
    owner: str | None = Field(default=None, max_length=200)
    group: str = Field(min_length=1, max_length=64)


class FlagArchived(Change):
    """The flag is retired: it evaluates off everywhere and takes no new settings."""

    type: Literal["FlagArchived"] = "FlagArchived"


# --- settings at a level ----------------------------------------------------


class SystemDefaultSet(Change):
    type: Literal["SystemDefaultSet"] = "SystemDefaultSet"
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.system()


class OrgOverrideSet(Change):
    type: Literal["OrgOverrideSet"] = "OrgOverrideSet"
    org_id: OrgId
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.org(self.org_id)


class OrgOverrideCleared(Change):
    type: Literal["OrgOverrideCleared"] = "OrgOverrideCleared"
    org_id: OrgId

    @property
    def scope(self) -> Scope:
        return Scope.org(self.org_id)


class PlatformOverrideSet(Change):
    type: Literal["PlatformOverrideSet"] = "PlatformOverrideSet"
    org_id: OrgId
    platform: Platform
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.for_platform(self.org_id, self.platform)


class PlatformOverrideCleared(Change):
    type: Literal["PlatformOverrideCleared"] = "PlatformOverrideCleared"
    org_id: OrgId
    platform: Platform

    @property
    def scope(self) -> Scope:
        return Scope.for_platform(self.org_id, self.platform)


class UserOverrideSet(Change):
    type: Literal["UserOverrideSet"] = "UserOverrideSet"
    org_id: OrgId
    user_id: UserId
    enabled: bool

    @property
    def scope(self) -> Scope:
        return Scope.user(self.org_id, self.user_id)


class UserOverrideCleared(Change):
    type: Literal["UserOverrideCleared"] = "UserOverrideCleared"
    org_id: OrgId
    user_id: UserId

    @property
    def scope(self) -> Scope:
        return Scope.user(self.org_id, self.user_id)


class RolloutPercentageSet(Change):
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


AnyChange = Annotated[
    FlagDefined
    | FlagUpdated
    | FlagArchived
    | SystemDefaultSet
    | OrgOverrideSet
    | OrgOverrideCleared
    | PlatformOverrideSet
    | PlatformOverrideCleared
    | UserOverrideSet
    | UserOverrideCleared
    | RolloutPercentageSet,
    Field(discriminator="type"),
]

CHANGE_TYPES: dict[str, type[Change]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        FlagDefined,
        FlagUpdated,
        FlagArchived,
        SystemDefaultSet,
        OrgOverrideSet,
        OrgOverrideCleared,
        PlatformOverrideSet,
        PlatformOverrideCleared,
        UserOverrideSet,
        UserOverrideCleared,
        RolloutPercentageSet,
    )
}
