"""Targeting rules on the wire: ordered rules of AND-ed conditions on context attributes, and their limits.

A condition may also test membership of segments (`in_segment` / `not_in_segment`, the values being segment
keys, no attribute): named, reusable sets of conditions defined apart (`events.segments`). A segment's own
conditions are plain ones (no segment in a segment), and its lists may be longer (`MAX_SEGMENT_VALUES`).

The shapes and every write-time check live here, so nothing the evaluator cannot run reaches the log:
a regex RE2 refuses (or longer than the limit), a version `semver` cannot parse, an instant without a
zone, a CIDR `ipaddress` refuses, a wrong number of values for the operator. What each operator means
is `flagcore.targeting`'s; docs/flag-semantics.md states both.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

import re2
import semver
from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.vocabulary import VARIANT_NAME_PATTERN

MAX_RULES = 50  # rules per flag and level (the system's list, or one org's)
MAX_CONDITIONS = 20  # conditions per rule
MAX_VALUES = 500  # values of an `in` / `not_in` / `in_cidr` list
MAX_REGEX_LENGTH = 256  # characters of a `matches` pattern
MAX_VALUE_LENGTH = 1_000  # characters of one string value
ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
RULE_ID_PATTERN = VARIANT_NAME_PATTERN
SEGMENT_KEY_PATTERN = VARIANT_NAME_PATTERN  # e.g. `beta-testers`, `enterprise.eu`
MAX_SEGMENT_REFERENCES = 10  # segment keys of one `in_segment` / `not_in_segment` condition
MAX_SEGMENT_CONDITIONS = 20  # conditions of one segment (all must hold)
MAX_SEGMENT_VALUES = 10_000  # values of one `in` / `not_in` / `in_cidr` list of a segment (a list of members)
# Attributes a call supplies itself rather than the context: the user (OpenFeature's targeting key), the org
# asked about and the platform; a context entry of the same name is ignored.
RESERVED_ATTRIBUTES = ("targeting_key", "org", "platform")

__all__ = [
    "MAX_CONDITIONS",
    "MAX_REGEX_LENGTH",
    "MAX_RULES",
    "MAX_SEGMENT_CONDITIONS",
    "MAX_SEGMENT_REFERENCES",
    "MAX_SEGMENT_VALUES",
    "MAX_VALUES",
    "RESERVED_ATTRIBUTES",
    "RULE_ID_PATTERN",
    "SEGMENT_KEY_PATTERN",
    "SEGMENT_OPERATORS",
    "Condition",
    "Operator",
    "SegmentCondition",
    "regex_options",
]

Scalar = str | int | float | bool


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    CONTAINS = "contains"
    MATCHES = "matches"  # RE2 search (anchor with ^ and $ for a whole match)
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    SEMVER_EQ = "semver_eq"
    SEMVER_LT = "semver_lt"
    SEMVER_LTE = "semver_lte"
    SEMVER_GT = "semver_gt"
    SEMVER_GTE = "semver_gte"
    BEFORE = "before"
    AFTER = "after"
    IN_CIDR = "in_cidr"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    IN_SEGMENT = "in_segment"  # in any of the segments named (values: segment keys; no attribute)
    NOT_IN_SEGMENT = "not_in_segment"  # in none of them


TEXT = frozenset({Operator.STARTS_WITH, Operator.ENDS_WITH, Operator.CONTAINS})
EQUALITY = frozenset({Operator.EQUALS, Operator.NOT_EQUALS, Operator.IN, Operator.NOT_IN})
NUMERIC = frozenset({Operator.LT, Operator.LTE, Operator.GT, Operator.GTE})
SEMVER = frozenset(
    {Operator.SEMVER_EQ, Operator.SEMVER_LT, Operator.SEMVER_LTE, Operator.SEMVER_GT, Operator.SEMVER_GTE}
)
INSTANT = frozenset({Operator.BEFORE, Operator.AFTER})
LISTS = frozenset({Operator.IN, Operator.NOT_IN, Operator.IN_CIDR})
PRESENCE = frozenset({Operator.EXISTS, Operator.NOT_EXISTS})
SEGMENT_OPERATORS = frozenset({Operator.IN_SEGMENT, Operator.NOT_IN_SEGMENT})
_SEGMENT_KEY_RE = re.compile(SEGMENT_KEY_PATTERN)


def regex_options() -> re2.Options:
    """RE2's options for a rule's pattern: errors raised, not also logged to stderr."""
    options = re2.Options()
    options.log_errors = False
    return options


class Condition(BaseModel):
    """`attribute operator values`: true or false for one evaluation context; `in_segment [keys]` (no attribute):
    whether the context is in any of those segments."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    LIST_LIMIT: ClassVar[int] = MAX_VALUES
    attribute: str | None = Field(
        default=None,
        pattern=ATTRIBUTE_PATTERN,
        description="Context attribute, e.g. `email`, `org`; none for `in_segment` / `not_in_segment`.",
    )
    operator: Operator
    values: tuple[Scalar, ...] = Field(
        default=(),
        max_length=MAX_VALUES,
        description="One value; a list for in / not_in / in_cidr; segment keys for the segment operators; "
        "none to test presence.",
    )
    case_sensitive: bool = Field(default=True, description="For equality and text operators on strings.")

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> Condition:
        op, values = self.operator, self.values
        if op in SEGMENT_OPERATORS:
            return self._names_segments()
        if self.attribute is None:
            raise ValueError(f"attribute: {op.value} tests an attribute of the context")
        if op in PRESENCE:
            if values:
                raise ValueError(f"values: {op.value} takes no values")
            return self
        if op in LISTS:
            if not values:
                raise ValueError(f"values: {op.value} takes 1 to {self.LIST_LIMIT} values")
        elif len(values) != 1:
            raise ValueError(f"values: {op.value} takes exactly one value")
        for value in values:
            problem = _value_problem(op, value)
            if problem is not None:
                raise ValueError(f"values: {problem}")
        return self

    def _names_segments(self) -> Condition:
        op, values = self.operator, self.values
        if self.attribute is not None:
            raise ValueError(f"attribute: {op.value} names segments, not an attribute: leave it out")
        if not 1 <= len(values) <= MAX_SEGMENT_REFERENCES:
            raise ValueError(f"values: {op.value} names 1 to {MAX_SEGMENT_REFERENCES} segment keys")
        for value in values:
            if type(value) is not str or _SEGMENT_KEY_RE.fullmatch(value) is None:
                raise ValueError(f"values: not a segment key: {value!r} (letters, digits, `.`, `_`, `-`)")
        if len(set(values)) != len(values):
            raise ValueError("values: segment keys must be distinct")
        return self


class SegmentCondition(Condition):
    """A segment's condition: a plain one (a segment names no other segment), with lists of up to
    `MAX_SEGMENT_VALUES` values (a segment is often a list of members)."""

    LIST_LIMIT: ClassVar[int] = MAX_SEGMENT_VALUES
    values: tuple[Scalar, ...] = Field(
        default=(),
        max_length=MAX_SEGMENT_VALUES,
        description=f"One value; a list (up to {MAX_SEGMENT_VALUES}) for in / not_in / in_cidr; none to test presence.",
    )

    @model_validator(mode="after")
    def _no_segment_in_a_segment(self) -> SegmentCondition:
        if self.operator in SEGMENT_OPERATORS:
            raise ValueError(f"operator: a segment's conditions name no segment ({self.operator.value})")
        return self


def _value_problem(op: Operator, value: Scalar) -> str | None:
    """Why `value` cannot be a value of `op` (None: it can)."""
    if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
        return f"a value is at most {MAX_VALUE_LENGTH} characters"
    if op in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{op.value} compares with a finite number, not {value!r}"
        return None
    if op in EQUALITY:
        return None if type(value) is not float or math.isfinite(value) else "a number is finite"
    if type(value) is not str:
        return f"{op.value} takes strings, not {value!r}"
    if op is Operator.MATCHES:
        if len(value) > MAX_REGEX_LENGTH:
            return f"a pattern is at most {MAX_REGEX_LENGTH} characters"
        try:
            re2.compile(value, regex_options())
        except UnicodeEncodeError:
            return f"not a pattern RE2 accepts (not UTF-8): {value!r}"
        except re2.error as exc:
            detail = exc.args[0] if exc.args else exc
            detail = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
            return f"not a pattern RE2 accepts ({detail}): {value!r}"
    elif op in SEMVER:
        try:
            semver.Version.parse(value)
        except ValueError:
            return f"not a semantic version: {value!r}"
    elif op in INSTANT:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            return f"not an ISO 8601 instant: {value!r}"
        if instant.tzinfo is None:
            return f"an instant names its UTC offset: {value!r}"
    elif op is Operator.IN_CIDR:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            return f"not a network: {exc}"
    return None
