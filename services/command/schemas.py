"""The HTTP bodies: pydantic models whose constraints and descriptions drive validation and /docs.

Constraints mirror the event schemas (`events.changes`), so anything these
accept can be recorded. Strict booleans and integers: `"true"` or `50.5` is a
422, not silently coerced. Unknown fields are refused (`extra="forbid"`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from events import FlagKind
from events.vocabulary import FlagKey
from events.vocabulary import Reason as EventReason


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: the projector would fail on it downstream.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)
Reason = Annotated[EventReason, NoNul]

ActorName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    NoNul,
    Field(description="Who makes the change; defaults to `anonymous` until access control lands."),
]
Group = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    NoNul,
    Field(description="The flag's group, e.g. `platform`."),
]
Description = Annotated[str, NoNul, Field(max_length=1000, description="What the flag controls.")]
Owner = Annotated[str, NoNul, Field(min_length=1, max_length=200, description="Team or person responsible.")]
RolloutPercentage = Annotated[StrictInt, Field(ge=0, le=100, description="Share of subjects, 0–100.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteRequest(_Body):
    """What every write carries."""

    reason: Reason
    expected_version: StrictInt | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Refuse the change (409) unless the stream is at this version; 0 = empty stream.",
    )


class DefineFlagRequest(WriteRequest):
    key: FlagKey
    group: Group
    kind: FlagKind = Field(default=FlagKind.RELEASE, description="Fowler's toggle category.")
    description: Description = ""
    owner: Owner | None = None


class UpdateFlagRequest(WriteRequest):
    """Absent fields are left alone; `owner: null` removes the owner."""

    kind: FlagKind | None = Field(default=None, description="Fowler's toggle category.")
    description: Description | None = None
    owner: Owner | None = None
    group: Group | None = None

    @field_validator("kind", "description", "group", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateFlagRequest:
        if not self.model_fields_set & {"kind", "description", "owner", "group"}:
            raise ValueError("nothing to update: give at least one of kind, description, owner, group")
        return self


class ArchiveFlagRequest(WriteRequest):
    pass


class SettingRequest(WriteRequest):
    """Absent fields are left alone; `null` clears (`enabled: null` removes the override's value)."""

    enabled: StrictBool | None = Field(default=None, description="On/off; null clears (not at system level).")
    rollout_percentage: RolloutPercentage | None = Field(
        default=None, description="Sticky percentage rollout, 0–100; null removes it."
    )

    @model_validator(mode="after")
    def _something_to_set(self) -> SettingRequest:
        if not self.model_fields_set & {"enabled", "rollout_percentage"}:
            raise ValueError("nothing to set: give enabled and/or rollout_percentage")
        return self


class ClearRequest(WriteRequest):
    pass


# --- answers ---------------------------------------------------------------------


class EventSummary(BaseModel):
    event_id: str
    type: str
    stream: str
    version: int
    sequence: int
    previous: dict[str, Any] | None
    new: dict[str, Any] | None


class ChangeResult(BaseModel):
    changed: bool = Field(description="False when the request matched the current value: nothing written.")
    stream: str
    version: int = Field(description="The stream's version after the request.")
    events: list[EventSummary]


class StreamValue(BaseModel):
    stream: str
    version: int = Field(description="0 when the stream is empty.")
    value: dict[str, Any] | None


class ErrorBody(BaseModel):
    """Every failure, whatever the status; some codes add keys (see the architecture doc)."""

    model_config = ConfigDict(extra="allow")
    error: str
    detail: str
    field: str | None = None
