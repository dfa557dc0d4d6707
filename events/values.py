"""Typed flag values: which JSON value a variant of each `ValueType` may hold, and the limits.

The one check of a typed flag's variants, applied by the event models (so nothing invalid reaches
the log) and named field by field, so that the command API can say which field is wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from events.vocabulary import (
    MAX_OBJECT_VALUE_BYTES,
    MAX_STRING_VALUE,
    MAX_VARIANTS,
    VARIANT_NAME_PATTERN,
    ValueType,
)

BOOLEAN_VARIANTS: dict[str, bool] = {"on": True, "off": False}  # a boolean flag's implicit variants
MIN_INTEGER, MAX_INTEGER = -(2**63), 2**63 - 1  # what every JSON encoder on the read side (orjson) writes

__all__ = ["BOOLEAN_VARIANTS", "TypedValueError", "check_typed", "value_problem"]


class TypedValueError(ValueError):
    """A typed flag's variants are not valid; `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def value_problem(value_type: ValueType, value: Any) -> str | None:
    """Why `value` cannot be a variant's value of `value_type` (None: it can)."""
    match value_type:
        case ValueType.BOOLEAN:
            ok = type(value) is bool
        case ValueType.STRING:
            if type(value) is str and len(value) > MAX_STRING_VALUE:
                return f"a string value is at most {MAX_STRING_VALUE} characters"
            ok = type(value) is str
        case ValueType.INTEGER:
            if type(value) is int and not MIN_INTEGER <= value <= MAX_INTEGER:
                return "an integer value is a signed 64-bit integer"
            ok = type(value) is int
        case ValueType.FLOAT:
            if type(value) is float and not math.isfinite(value):
                return "a float value is finite"
            ok = type(value) is float
        case ValueType.OBJECT:
            if not isinstance(value, dict | list):
                return "an object value is a JSON object or array"
            try:
                size = len(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
            except (TypeError, ValueError) as exc:
                return f"not JSON: {exc}"
            if size > MAX_OBJECT_VALUE_BYTES:
                return f"an object value is at most {MAX_OBJECT_VALUE_BYTES} bytes of JSON, not {size}"
            if _wide_integer(value):
                return "an object value's integers are signed 64-bit integers"
            ok = True
    article = "an" if value_type in (ValueType.INTEGER, ValueType.OBJECT) else "a"
    return None if ok else f"not {article} {value_type.value} value: {value!r}"[:200]


def _wide_integer(value: Any) -> bool:
    """Whether a JSON value holds an integer outside 64 bits (the read side's JSON encoder refuses those)."""
    if type(value) is int:
        return not MIN_INTEGER <= value <= MAX_INTEGER
    if isinstance(value, dict):
        return any(_wide_integer(v) for v in value.values())
    if isinstance(value, list):
        return any(_wide_integer(v) for v in value)
    return False


def check_typed(
    value_type: ValueType, values: Mapping[str, Any], default_variant: str | None, off_variant: str | None
) -> None:
    """A boolean flag names no variants (its are on/off); any other type names 1–50, a default and an off."""
    if value_type is ValueType.BOOLEAN:
        for name, given in (
            ("values", values or None),
            ("default_variant", default_variant),
            ("off_variant", off_variant),
        ):
            if given is not None:
                raise TypedValueError(name, "a boolean flag has the implicit variants on/off only")
        return
    if not values:
        raise TypedValueError("values", f"a {value_type.value} flag names its variants and their values")
    if len(values) > MAX_VARIANTS:
        raise TypedValueError("values", f"at most {MAX_VARIANTS} variants")
    for name, value in values.items():
        if re.fullmatch(VARIANT_NAME_PATTERN, name) is None:
            raise TypedValueError(f"values.{name}", f"a variant name matches {VARIANT_NAME_PATTERN}")
        problem = value_problem(value_type, value)
        if problem is not None:
            raise TypedValueError(f"values.{name}", problem)
    for field, chosen in (("default_variant", default_variant), ("off_variant", off_variant)):
        if chosen is None:
            raise TypedValueError(field, f"a {value_type.value} flag names its {field.replace('_', ' ')}")
        if chosen not in values:
            raise TypedValueError(field, f"unknown variant {chosen!r} (known: {', '.join(sorted(values))})")
