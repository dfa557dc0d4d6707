"""The facts the log records: one immutable, past-tense model per kind of change.

Each change knows its scope, hence its stream and Kafka key. `SCHEMA_VERSION` is
the version written today; older versions are lifted by `events.upcasting`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.scope import SYSTEM_PARTITION_KEY, Scope, definition_stream
from events.vocabulary import FlagKey, FlagKind, KeyRole, Level, OrgId, Percentage, Platform, UserId


class Change(BaseModel):
    """Base of every event body: it names its stream, its tenant and its Kafka key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA_VERSION: ClassVar[int] = 1

    @property
    def stream(self) -> str:
        raise NotImplementedError

    @property
    def tenant(self) -> str | None:
        """The organisation the change belongs to; None for system-wide changes."""
        raise NotImplementedError

    @property
    def partition_key(self) -> str:
        tenant = self.tenant
        return SYSTEM_PARTITION_KEY if tenant is None else tenant


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


class FlagDefined(FlagChange):
    """A new flag exists. v1 had no kind, owner or group (see upcasting)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    type: Literal["FlagDefined"] = "FlagDefined"
    kind: FlagKind = FlagKind.RELEASE
    description: str = Field(default="", max_length=1000)
    owner: str | None = Field(default=None, max_length=200)
    group: str = Field(min_length=1, max_length=64)


class FlagUpdated(FlagChange):
    """A flag's descriptive attributes changed (the full new set is carried)."""

    type: Literal["FlagUpdated"] = "FlagUpdated"
    kind: FlagKind
    description: str = Field(max_length=1000)
    owner: str | None = Field(default=None, max_length=200)
    group: str = Field(min_length=1, max_length=64)


class FlagArchived(FlagChange):
    """The flag is retired: it evaluates off everywhere and takes no new settings."""

    type: Literal["FlagArchived"] = "FlagArchived"


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
    | SystemDefaultSet
    | OrgOverrideSet
    | OrgOverrideCleared
    | PlatformOverrideSet
    | PlatformOverrideCleared
    | UserOverrideSet
    | UserOverrideCleared
    | RolloutPercentageSet
    | ApiKeyCreated
    | ApiKeyRevoked
    | ApiKeyExpirySet,
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
        ApiKeyCreated,
        ApiKeyRevoked,
        ApiKeyExpirySet,
    )
}
