"""Commands: orders to change a flag, as immutable data validated at the edge.

A field left at `UNSET` was absent from the request and is left alone; a field
set to `None` was present as `null` and clears. That difference is the whole
PATCH/PUT contract, so it is kept explicit instead of collapsing into `None`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal

from events import Actor, FlagKind, Scope, ValueType, Variant, definition_stream
from events.changes import rules_stream


class _Unset(Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
Unset = Literal[_Unset.UNSET]


ANONYMOUS = Actor(id="anonymous", name="anonymous")


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    """What every write carries: the flag, why, who, and optionally the version it saw."""

    flag_key: str
    reason: str
    actor: Actor = ANONYMOUS
    expected_version: int | None = None

    @property
    def stream(self) -> str:
        return definition_stream(self.flag_key)

    @property
    def targets_definition(self) -> bool:
        return True


@dataclass(frozen=True, kw_only=True, slots=True)
class DefineFlag(Command):
    """A boolean flag (with experiment arms in `variants`), or a typed one: `values` names its variants."""

    group: str
    kind: FlagKind = FlagKind.RELEASE
    description: str = ""
    owner: str | None = None
    variants: tuple[Variant, ...] = ()
    expires_at: datetime | None = None
    value_type: ValueType = ValueType.BOOLEAN
    values: Mapping[str, Any] = field(default_factory=dict)
    default_variant: str | None = None
    off_variant: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateFlag(Command):
    """The attributes given change; a typed flag's `values` is its full new set of variants."""

    kind: FlagKind | Unset = UNSET
    description: str | Unset = UNSET
    owner: str | Unset | None = UNSET
    group: str | Unset = UNSET
    variants: tuple[Variant, ...] | Unset = UNSET
    expires_at: datetime | Unset | None = UNSET
    value_type: ValueType | Unset = UNSET  # never changes: given, it must be the flag's
    values: Mapping[str, Any] | Unset = UNSET
    default_variant: str | Unset = UNSET
    off_variant: str | Unset = UNSET


@dataclass(frozen=True, kw_only=True, slots=True)
class ArchiveFlag(Command):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class EngageKillSwitch(Command):
    """Switch an ops flag off everywhere at once."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReleaseKillSwitch(Command):
    """Let the levels decide an ops flag again."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _AtScope(Command):
    scope: Scope

    @property
    def stream(self) -> str:
        return self.scope.stream(self.flag_key)

    @property
    def targets_definition(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class SetSetting(_AtScope):
    """Set the on/off value, the rollout and/or what the level serves when on (one `variant` or a weighted
    `split`; None serves the flag's default variant) at one scope (system default or override)."""

    enabled: bool | Unset | None = UNSET
    rollout_percentage: int | Unset | None = UNSET
    variant: str | Unset | None = UNSET
    split: tuple[Variant, ...] | Unset | None = UNSET


@dataclass(frozen=True, kw_only=True, slots=True)
class ClearOverride(_AtScope):
    """Remove an org, platform or user override entirely (value and rollout)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSetting(_AtScope):
    """From `effective_at` on, set the on/off value and/or the rollout at one scope (None: keep)."""

    effective_at: datetime
    enabled: bool | None = None
    rollout_percentage: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelScheduledSetting(_AtScope):
    """Drop the step scheduled at `effective_at` at one scope."""

    effective_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class SetRules(_AtScope):
    """Replace the flag's ordered targeting rules at the system level or for one org (empty: none).

    `rules` is the request's list as plain JSON data; `services.command.rules` checks it against the event
    model and the flag's variants, naming the field of the first refusal (`rules.2.conditions.0.values`).
    """

    rules: tuple[Mapping[str, Any], ...] = ()

    @property
    def stream(self) -> str:
        return rules_stream(self.scope, self.flag_key)


AnyCommand = (
    DefineFlag
    | UpdateFlag
    | ArchiveFlag
    | EngageKillSwitch
    | ReleaseKillSwitch
    | SetSetting
    | ClearOverride
    | ScheduleSetting
    | CancelScheduledSetting
    | SetRules
)
