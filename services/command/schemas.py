"""The HTTP bodies: pydantic models whose constraints and descriptions drive validation and /docs.

Constraints mirror the event schemas (`events.changes`), so anything these
accept can be recorded. Strict booleans and integers: `"true"` or `50.5` is a
422, not silently coerced. Unknown fields are refused (`extra="forbid"`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from events import FlagKind, ValueType
from events.fields import FlagKey
from events.fields import Reason as EventReason
from events.targeting import (
    ATTRIBUTE_PATTERN,
    MAX_CONDITIONS,
    MAX_REGEX_LENGTH,
    MAX_RULES,
    MAX_VALUE_LENGTH,
    MAX_VALUES,
    RULE_ID_PATTERN,
    Operator,
)
from events.vocabulary import (
    MAX_OBJECT_VALUE_BYTES,
    MAX_STRING_VALUE,
    MAX_VARIANTS,
    VARIANT_NAME_PATTERN,
    VARIANT_WEIGHT_TOTAL,
)


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

VariantName = Annotated[str, StringConstraints(pattern=VARIANT_NAME_PATTERN)]
TypedVariants = Annotated[
    dict[VariantName, JsonValue],
    Field(
        min_length=1,
        max_length=MAX_VARIANTS,
        json_schema_extra={"additionalProperties": False},
        description=(
            f"A typed flag's variants: name → value of the flag's `type`, 1–{MAX_VARIANTS} of them. A string is at"
            f" most {MAX_STRING_VALUE} characters; an integer within the signed 64-bit range; a float finite (an"
            f" integer is taken as a float); an object a JSON object or array of at most {MAX_OBJECT_VALUE_BYTES}"
            " bytes of canonical JSON. No NUL characters or lone surrogates."
        ),
    ),
]
_ARMS: TypeAdapter[list[VariantIn]] = TypeAdapter(Variants)
_TYPED: TypeAdapter[dict[str, Any]] = TypeAdapter(TypedVariants)


def _arms_or_typed(value: Any) -> list[VariantIn] | dict[str, Any]:
    """An array is a boolean experiment's arms, an object a typed flag's variants (flagd's shape)."""
    if isinstance(value, dict):
        return _TYPED.validate_python(value)
    if isinstance(value, list):
        return _ARMS.validate_python(value)
    raise ValueError("an array of experiment arms, or an object of typed variants (name → value)")


AnyVariants = Annotated[
    Variants | TypedVariants,
    PlainValidator(_arms_or_typed, json_schema_input_type=Variants | TypedVariants),
    Field(
        description=(
            "A boolean flag's experiment arms (an array, experiment flags only), or a typed flag's variants (an"
            " object: name → value of `type`). A boolean flag's variants are the implicit `on` and `off`."
        )
    ),
]
ValueTypeField = Annotated[
    ValueType,
    Field(description="What the flag serves: `boolean` (on/off, the default) or the variants' values' type."),
]
ChosenVariant = Annotated[str, Field(pattern=VARIANT_NAME_PATTERN, description="A variant the flag names.")]


def _split_total(arms: list[VariantIn]) -> list[VariantIn]:
    """A split's weights are thousandths summing to exactly 1000, over distinct variants (as the event's)."""
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError("names must be distinct")
    total = sum(a.weight for a in arms)
    if total != VARIANT_WEIGHT_TOTAL:
        raise ValueError(f"weights must sum to {VARIANT_WEIGHT_TOTAL}, not {total}")
    return arms


Split = Annotated[
    list[VariantIn],
    Field(
        min_length=1,
        max_length=MAX_VARIANTS,
        description=(
            f"A weighted split of the flag's variants: 1–{MAX_VARIANTS} distinct names, weights in thousandths"
            f" (0–{VARIANT_WEIGHT_TOTAL}) summing to exactly {VARIANT_WEIGHT_TOTAL}; each subject keeps its variant"
            " (Unleash's sticky variant hash)."
        ),
    ),
    AfterValidator(_split_total),
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
    """A boolean flag by default; a typed flag names its `type`, `variants`, `default_variant` and `off_variant`."""

    key: FlagKey
    group: Group
    kind: FlagKind = Field(default=FlagKind.RELEASE, description="Fowler's toggle category.")
    description: Description = ""
    owner: Owner | None = None
    type: ValueTypeField = ValueType.BOOLEAN
    variants: AnyVariants = []
    default_variant: ChosenVariant | None = Field(
        default=None, description="What a level that turns a typed flag on serves (typed flags only, required)."
    )
    off_variant: ChosenVariant | None = Field(
        default=None, description="What a typed flag serves when off (typed flags only, required)."
    )
    expires_at: Instant | None = Field(default=None, description="When the flag is due for removal.")


UPDATABLE = ("kind", "description", "owner", "group", "variants", "default_variant", "off_variant", "expires_at")


class UpdateFlagRequest(WriteRequest):
    """Absent fields are left alone; `owner: null` removes the owner, `expires_at: null` the expiry."""

    kind: FlagKind | None = Field(default=None, description="Fowler's toggle category.")
    description: Description | None = None
    owner: Owner | None = None
    group: Group | None = None
    # The typed fields refuse null (`_not_null`), so the document does not offer it (SkipJsonSchema).
    variants: AnyVariants | SkipJsonSchema[None] = Field(
        default=None,
        description="The full new set: a boolean flag's arms (`[]` removes them), or a typed flag's variants.",
    )
    type: ValueType | SkipJsonSchema[None] = Field(
        default=None, description="The flag's type, unchanged: a type is fixed when the flag is defined (else 422)."
    )
    default_variant: ChosenVariant | SkipJsonSchema[None] = Field(
        default=None, description="A typed flag's new default variant."
    )
    off_variant: ChosenVariant | SkipJsonSchema[None] = Field(
        default=None, description="A typed flag's new off variant."
    )
    expires_at: Instant | None = None

    @field_validator(
        "kind", "description", "group", "type", "variants", "default_variant", "off_variant", mode="before"
    )
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


SETTABLE = ("enabled", "rollout_percentage", "variant", "split")


class SettingRequest(WriteRequest):
    """Absent fields are left alone; `null` clears (`enabled: null` clears the override: only the fields given
    with it are set again). What the level serves when on is one `variant`, a weighted `split`, or (both null)
    the flag's default variant."""

    enabled: StrictBool | None = Field(default=None, description="On/off; null clears (not at system level).")
    rollout_percentage: RolloutPercentage | None = Field(
        default=None, description="Sticky percentage rollout, 0–100; null removes it."
    )
    variant: ChosenVariant | None = Field(
        default=None, description="Serve this variant when on (not with `split`); null serves the default variant."
    )
    split: Split | None = Field(default=None, description="Serve a weighted split when on; null: the default variant.")

    @model_validator(mode="after")
    def _something_to_set(self) -> SettingRequest:
        if not self.model_fields_set & set(SETTABLE):
            raise ValueError(f"nothing to set: give at least one of {', '.join(SETTABLE)}")
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


# --- targeting rules ---------------------------------------------------------------


def _scalar(value: Any) -> str | bool | int | float:
    """A condition's value: a JSON string (at most the limit), number (finite) or boolean, nothing else."""
    if type(value) is bool:
        return value  # type: ignore[no-any-return]
    if type(value) is int:
        if not -(2**63) <= value <= 2**63 - 1:
            raise ValueError("an integer value is within the signed 64-bit range")
        return value  # type: ignore[no-any-return]
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError("a number is finite")
        return value
    if type(value) is str:
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(f"a value is at most {MAX_VALUE_LENGTH} characters")
        return value
    raise ValueError("a value is a string, a number or a boolean")


ConditionValue = Annotated[
    str | bool | int | float,
    PlainValidator(
        _scalar,
        json_schema_input_type=Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]
        | bool
        | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
        | float,
    ),
]


class ConditionIn(_Body):
    """`attribute operator values`, e.g. `email ends_with ["@acme.com"]`."""

    attribute: str = Field(
        max_length=64,
        pattern=ATTRIBUTE_PATTERN,
        description="A context attribute (`email`, `plan`, `country`, `app_version`, `ip`, any custom name) or"
        " the call's own `targeting_key`, `org`, `platform`.",
    )
    operator: Operator = Field(description="What is asked of the attribute (docs/flag-semantics.md#targeting-rules).")
    values: list[ConditionValue] = Field(
        default=[],
        max_length=MAX_VALUES,
        description=(
            f"None for exists / not_exists; 1–{MAX_VALUES} for in / not_in / in_cidr; exactly one for every other"
            " operator. A number (finite) for lt / lte / gt / gte; a string for the text, regex, semver, instant and"
            f" CIDR operators: an RE2 pattern of at most {MAX_REGEX_LENGTH} characters (matches), a semantic version"
            " (semver_*), an ISO 8601 instant naming its UTC offset (before / after), a network with its host bits"
            f" unset (in_cidr). A string is at most {MAX_VALUE_LENGTH} characters."
        ),
    )
    case_sensitive: StrictBool = Field(
        default=True, description="False: equality and text operators casefolded, `matches` case-insensitive."
    )


class RuleIn(_Body):
    """When every condition holds, serve `variant`, or the subject's arm of `split` (exactly one of the two)."""

    id: str = Field(max_length=64, pattern=RULE_ID_PATTERN, description="Names the rule in answers; unique in its list")
    conditions: list[ConditionIn] = Field(
        min_length=1, max_length=MAX_CONDITIONS, description=f"1–{MAX_CONDITIONS} conditions, all of which must hold."
    )
    variant: ChosenVariant | None = Field(default=None, description="A variant the flag names (not with `split`).")
    split: Split | None = Field(default=None, description="A weighted split of the flag's variants (not with variant).")


class RulesRequest(WriteRequest):
    """The level's full new list of targeting rules, tried in order (`[]`: none)."""

    rules: list[RuleIn] = Field(
        max_length=MAX_RULES,
        description=f"0–{MAX_RULES} rules, ids unique; the whole request is also bounded by FLAGS_MAX_BODY_BYTES.",
    )


class ClearRulesRequest(WriteRequest):
    pass


class RulesOut(BaseModel):
    stream: str = Field(description="The level's rules stream, e.g. `org/acme/flag/checkout.theme/rules`.")
    version: int = Field(description="The stream's version (0: never set); give it as `expected_version`.")
    rules: list[dict[str, Any]] = Field(description="The rules in force, in order, as recorded (`[]`: none).")


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
