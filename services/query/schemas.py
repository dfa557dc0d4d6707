"""The query service's answers as OpenAPI documents them.

The routes return `Response`s with orjson bodies built from precompiled documents:
no model here is built per request; each only describes an answer's shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from events import Platform, ValueType

# A flag's value: its type's (`value_type`): boolean, string, integer, float, or object (a JSON object or array).
TypedValue = bool | int | float | str | dict[str, Any] | list[Any]
VALUE_DESCRIPTION = "The flag's value, of its type: boolean, string, integer, float, or object (JSON object or array)."


class EventOut(BaseModel):
    id: str = Field(description="Id of the event that set the value.")
    stream: str
    version: int = Field(description="Its version in the stream.")
    actor: str
    reason: str
    occurred_at: str = Field(description="RFC 3339, UTC.")


class RolloutOut(BaseModel):
    percentage: int = Field(description="Share of subjects in the rollout, 0–100.")
    bucket: int = Field(description="The subject's sticky bucket, 1–100 (`flagcore.bucket`).")


class EvaluationOut(BaseModel):
    flag_key: str
    value: TypedValue = Field(description=VALUE_DESCRIPTION + " An unknown flag's is false.")
    reason: str = Field(description="OpenFeature reason: STATIC, TARGETING_MATCH, SPLIT, DISABLED, DEFAULT, ERROR.")
    level: str | None = Field(description="user, platform, org or system: the level that decided.")
    error_code: str | None
    variant: str | None = Field(
        description="The variant served: a typed flag's named variant (a split's is sticky, Unleash's hashing); a "
        "boolean flag's experiment arm when on, else `on`/`off`; null on error."
    )
    rule: str | None = Field(
        description="The targeting rule that matched (`reason` TARGETING_MATCH, `level` system or org: whose list); "
        "null when no rule decided."
    )
    explanation: str
    rollout: RolloutOut | None
    event: EventOut | None


class EvaluationsOut(BaseModel):
    org_id: str
    flags: list[EvaluationOut]


class PlatformsOut(BaseModel):
    org_id: str
    enabled: list[Platform]


class StepOut(BaseModel):
    at: str = Field(description="RFC 3339, UTC: in force from this instant on.")
    enabled: bool | None = Field(description="null keeps what is in force.")
    rollout_percentage: int | None = Field(description="null keeps what is in force.")


class VariantOut(BaseModel):
    name: str
    weight: int = Field(description="Share of users in thousandths; the weights sum to 1000.")


class SystemOut(BaseModel):
    enabled: bool | None
    rollout_percentage: int | None
    schedule: list[StepOut] = Field(description="Pending scheduled steps, in time order.")
    variant: str | None = Field(description="The variant the system default serves when on; null: see `split`.")
    split: list[VariantOut] | None = Field(
        description="A weighted split of variants served when on (sticky); null with `variant`: the flag's default."
    )
    version: int
    event: EventOut


class FlagOut(BaseModel):
    key: str
    kind: str = Field(description="release, experiment, ops or permission.")
    description: str
    owner: str | None
    group: str
    archived: bool
    killed: bool = Field(description="An ops flag's kill switch is engaged: off everywhere.")
    variants: list[VariantOut] = Field(description="An experiment's arms (empty otherwise).")
    expires_at: str | None = Field(description="When the flag is due for removal (RFC 3339, UTC).")
    value_type: ValueType = Field(description="What the flag's variants hold.")
    values: dict[str, TypedValue] = Field(
        description="Each variant's value (a boolean flag's implicit ones: `on` true, `off` false)."
    )
    default_variant: str = Field(description="What a level that turns the flag on serves, unless it names one.")
    off_variant: str = Field(description="What the flag serves when off (no level on, outside a rollout, archived).")
    version: int = Field(description="Version of the flag's definition stream.")
    event: EventOut
    system: SystemOut | None


class FlagsOut(BaseModel):
    flags: list[FlagOut]


class ScheduledStepOut(BaseModel):
    flag_key: str
    level: str = Field(description="system, org, platform or user.")
    platform: str | None
    user_id: str | None
    at: str = Field(description="RFC 3339, UTC: the step is in force from this instant on.")
    enabled: bool | None = Field(description="On/off from then on; null keeps what is in force.")
    rollout_percentage: int | None = Field(description="Rollout from then on; null keeps what is in force.")


class SchedulesOut(BaseModel):
    org_id: str
    as_of: str
    steps: list[ScheduledStepOut]


class OverrideCountOut(BaseModel):
    flag_key: str
    orgs: int = Field(description="How many orgs override the flag at any level (org, platform or user).")
    overrides: int = Field(description="How many overrides there are in all.")


class OverrideCountsOut(BaseModel):
    flags: list[OverrideCountOut] = Field(description="Flags with at least one override, in key order.")


class FlagUsageOut(BaseModel):
    flag_key: str
    total: int = Field(description="Evaluations in the whole window.")
    counts: list[int] = Field(description="Evaluations in each minute of `minutes`.")


class UsageOut(BaseModel):
    org_id: str | None = Field(description="The org counted; null: every org.")
    minutes: list[str] = Field(description="The window's minutes (RFC 3339, UTC), oldest first.")
    flags: list[FlagUsageOut] = Field(description="Flags evaluated in the window, most evaluated first.")


class ErrorOut(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. `invalid_request`, `unknown_flag`.")
    detail: str
    field: str | None = Field(description="The offending parameter, when there is one.")


class BootstrapOut(BaseModel):
    """Documents the answer (the route returns the bytes it built)."""

    org_id: str
    topic: str = Field(description="The flag-change topic to follow from `offsets`.")
    offsets: dict[str, int] = Field(description="Partition → the next offset to fold; a partition not named: 0.")
    scopes: dict[str, dict[str, Any]] = Field(
        description='`flagcore.history` snapshot documents: `""` (definitions, system defaults) and the org.'
    )
