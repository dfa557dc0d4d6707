"""The HTTP bodies: pydantic models whose constraints and descriptions drive validation and /docs.

Constraints mirror the event schemas (`events.changes`), so anything these
accept can be recorded. Strict booleans and integers: `"true"` or `50.5` is a
422, not silently coerced. Unknown fields are refused (`extra="forbid"`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
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
from events.fields import FlagKey
from events.fields import Reason as EventReason
from events.vocabulary import VARIANT_NAME_PATTERN, VARIANT_WEIGHT_TOTAL


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
def _utc(value: datetime) -> datetime:
    """In UTC, so every later step (events, hashes, Postgres) sees one form; refused if UTC cannot hold it."""
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range once converted to UTC") from exc


Instant = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    Field(description="RFC 3339 with a UTC offset, e.g. `2026-12-01T09:00:00Z`."),
]


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=VARIANT_NAME_PATTERN, description="Variant name, e.g. `control`.")
    weight: StrictInt = Field(ge=0, le=VARIANT_WEIGHT_TOTAL, description="Share of users (see `variants`).")


def _normalised(variants: list[VariantIn]) -> list[VariantIn]:
    """Weights sum to 1000 (Unleash's thousandths) or to 100 (percentages, scaled to thousandths)."""
    total = sum(v.weight for v in variants)
    if variants and total not in (100, VARIANT_WEIGHT_TOTAL):
        raise ValueError(f"weights must sum to {VARIANT_WEIGHT_TOTAL} (or to 100, as percentages), not {total}")
    scale = VARIANT_WEIGHT_TOTAL // total if variants else 1
    return [VariantIn(name=v.name, weight=v.weight * scale) for v in variants]


Variants = Annotated[
    list[VariantIn],
    AfterValidator(_normalised),
    Field(max_length=20, description="Experiment arms (experiment flags only), weights summing to 1000 or 100."),
]


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
    variants: Variants = []
    expires_at: Instant | None = Field(default=None, description="When the flag is due for removal.")


UPDATABLE = ("kind", "description", "owner", "group", "variants", "expires_at")


class UpdateFlagRequest(WriteRequest):
    """Absent fields are left alone; `owner: null` removes the owner, `expires_at: null` the expiry."""

    kind: FlagKind | None = Field(default=None, description="Fowler's toggle category.")
    description: Description | None = None
    owner: Owner | None = None
    group: Group | None = None
    variants: Variants | None = Field(default=None, description="The full new set of arms; `[]` removes them.")
    expires_at: Instant | None = None

    @field_validator("kind", "description", "group", "variants", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit the field to leave it unchanged")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateFlagRequest:
        if not self.model_fields_set & set(UPDATABLE):
            raise ValueError(f"nothing to update: give at least one of {', '.join(UPDATABLE)}")
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


class ScheduleRequest(WriteRequest):
    """A step: from `effective_at` on, these values; a field left out keeps what is in force then."""

    effective_at: Instant
    enabled: StrictBool | None = Field(default=None, description="On/off from then on.")
    rollout_percentage: RolloutPercentage | None = Field(default=None, description="Rollout from then on, 0–100.")

    @model_validator(mode="after")
    def _something_to_schedule(self) -> ScheduleRequest:
        if self.enabled is None and self.rollout_percentage is None:
            raise ValueError("nothing to schedule: give enabled and/or rollout_percentage")
        return self


class CancelScheduleRequest(WriteRequest):
    effective_at: Instant = Field(description="The instant of the step to cancel.")


class KillSwitchRequest(WriteRequest):
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


class StaleFlagOut(BaseModel):
    key: str
    kind: str
    owner: str | None
    reason: str = Field(description="`expired`, or `unchanged` (fully on or off, untouched for `days` days).")
    last_changed_at: str | None
    expires_at: str | None
    value: bool | None = Field(description="What everyone gets (None: an expired flag still split).")


class StaleFlagsOut(BaseModel):
    days: int
    as_of: str
    flags: list[StaleFlagOut]


class ErrorBody(BaseModel):
    """Every failure, whatever the status; some codes add keys (see the architecture doc)."""

    model_config = ConfigDict(extra="allow")
    error: str
    detail: str
    field: str | None = None
