"""Write-time checks of a typed flag's variants and of what a level serves, each refusal naming the field.

`events.values` holds the rule of what the log may record; this adds what the command API refuses on top of
it, so that every reader can hold what is written (an integer fits in 64 bits; no NUL or lone surrogate, which
PostgreSQL cannot store; no NaN inside an object), and says the request's field names (`values.blue` is
`variants.blue`). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from events import ValueType, Variant
from events.values import TypedValueError, check_typed
from flagcore.model import Definition
from services.command.errors import InvalidCommand

__all__ = ["checked_selection", "checked_values", "unstorable"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what OpenFeature's typed SDKs (Go, Java, .NET) hold


def checked_values(
    value_type: ValueType,
    values: Mapping[str, Any],
    default_variant: str | None,
    off_variant: str | None,
    *,
    arms_given: bool = False,
) -> dict[str, Any]:
    """A flag's variants as they are recorded (a float flag's integers become floats), or `InvalidCommand`.

    A boolean flag names none: its variants are the implicit `on`/`off` (and an experiment's arms); a typed
    flag names its variants as an object, never as an array of arms (`arms_given`).
    """
    if value_type is ValueType.BOOLEAN and values:
        wrong = next((name for name, v in values.items() if type(v) is not bool), None)
        if wrong is not None:
            given = f"{values[wrong]!r}"[:100]
            raise _refused(f"variants.{wrong}", f"a boolean flag's variants are on/off: not a boolean value: {given}")
        raise _refused("variants", "a boolean flag has the implicit variants on/off; experiment arms are an array")
    if value_type is not ValueType.BOOLEAN and arms_given:
        raise _refused("variants", f"a {value_type.value} flag names its variants as an object: name → value")
    recorded = {name: _recorded(value_type, name, value) for name, value in values.items()}
    try:
        check_typed(value_type, recorded, default_variant, off_variant)
    except TypedValueError as exc:
        field = "variants" + exc.field.removeprefix("values") if exc.field.startswith("values") else exc.field
        raise _refused(field, exc.message) from exc
    return recorded


def checked_selection(
    definition: Definition, variant: str | None, split: Sequence[Variant] | None, *, at: str = ""
) -> None:
    """A level (or a targeting rule: `at` is its field path, `rules.2.`) serves one variant or a split, of
    variants the flag names (a boolean: on, off, its arms)."""
    if variant is not None and split is not None:
        raise _refused(f"{at}split", "a level serves one variant or a split, not both")
    chosen = [(f"{at}variant", variant)] if variant is not None else []
    chosen += [(f"{at}split.{i}.name", arm.name) for i, arm in enumerate(split or ())]
    for field, name in chosen:
        if not definition.known(name):
            raise _refused(field, f"unknown variant {name!r} (known: {', '.join(_names(definition))})")


def _names(definition: Definition) -> list[str]:
    if definition.value_type is ValueType.BOOLEAN:
        return sorted({"on", "off"} | {v.name for v in definition.variants})
    return [name for name, _ in definition.values]


def _recorded(value_type: ValueType, name: str, value: Any) -> Any:
    field = f"variants.{name}"
    if value_type is ValueType.FLOAT and type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise _refused(field, "out of range for a float value") from None
    if value_type is ValueType.INTEGER and type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        raise _refused(field, "an integer value is within the signed 64-bit range")
    problem = unstorable(value)
    if problem is not None:
        raise _refused(field, problem)
    return value


def unstorable(value: Any) -> str | None:
    """What no reader could store or parse back: NUL or a lone surrogate in a string or key (neither is UTF-8
    that PostgreSQL holds), a number that is not finite (not JSON)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters"
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return "must be valid Unicode text (no lone surrogates)"
        if isinstance(item, float) and not math.isfinite(item):
            return "numbers are finite"
        if isinstance(item, dict):
            pending += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            pending += item
    return None


def _refused(field: str, message: str) -> InvalidCommand:
    return InvalidCommand(f"{field}: {message}", field=field)
