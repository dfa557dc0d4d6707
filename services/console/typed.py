"""A typed flag's variants as the console's forms carry them, and what a level serves when it is on.

Variants are rows of inputs, `variant_name_<i>` and `variant_value_<i>`: a string flag's value is the text as
typed, an integer's or a float's a number, an object's JSON. Each bad row is refused naming its input, before
anything is sent; the command API checks the rest (limits, default and off variant) and names its field. Pure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from events.values import value_problem
from events.vocabulary import MAX_VARIANTS, ValueType
from services.console.forms import InvalidInput, text

__all__ = ["ROWS_TO_ADD", "Selection", "parse_selection", "parse_value_type", "parse_values", "pretty",
           "selection_fields", "serving", "split_text", "value_label", "value_rows", "value_text"]

ROWS_TO_ADD = 3  # empty variant rows a form offers beyond the flag's own
Selection = dict[str, Any] | None  # {"variant": name|None} or {"split": [...]}; None: leave the level's choice


def parse_value_type(form: Mapping[str, str], name: str = "new_type") -> ValueType:
    try:
        return ValueType(text(form, name) or "boolean")
    except ValueError:
        raise InvalidInput(name, f"must be one of {', '.join(ValueType)}") from None


def parse_values(form: Mapping[str, str], value_type: ValueType) -> dict[str, Any]:
    """The variant rows of a form, name → value of `value_type`; rows left empty are skipped."""
    values: dict[str, Any] = {}
    for i in range(MAX_VARIANTS + ROWS_TO_ADD):
        name, raw = text(form, f"variant_name_{i}"), form.get(f"variant_value_{i}") or ""
        if not name and not raw.strip():
            continue
        if not name:
            raise InvalidInput(f"variant_name_{i}", "name this variant, or empty its value")
        if name in values:
            raise InvalidInput(f"variant_name_{i}", f"variant {name} is named twice")
        values[name] = _value(value_type, raw, name, f"variant_value_{i}")
    if not values:
        raise InvalidInput("variant_name_0", f"a {value_type.value} flag names at least one variant")
    return values


def _value(value_type: ValueType, raw: str, name: str, field: str) -> Any:
    if value_type is ValueType.STRING:
        value: Any = raw
    elif value_type is ValueType.INTEGER:
        if not raw.strip().lstrip("-").isdigit():
            raise InvalidInput(field, f"variant {name}: a whole number, e.g. 3 or -10")
        value = int(raw)
    elif value_type is ValueType.FLOAT:
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(field, f"variant {name}: a number, e.g. 0.5") from None
        if not math.isfinite(value):
            raise InvalidInput(field, f"variant {name}: a finite number")
    else:
        try:
            value = json.loads(raw, parse_constant=_not_json)
        except ValueError as exc:
            raise InvalidInput(field, f"variant {name}: not JSON ({exc})") from None
    problem = value_problem(value_type, value)
    if problem is not None:
        raise InvalidInput(field, f"variant {name}: {problem}")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def value_text(value_type: ValueType | str, value: Any) -> str:
    """What a row's input holds for `value`: a string as it is, anything else as JSON."""
    return value if ValueType(value_type) is ValueType.STRING else json.dumps(value, ensure_ascii=False)


def value_rows(value_type: ValueType | str, values: Mapping[str, Any]) -> dict[str, str]:
    """The form fields that give `values` back (the hidden fields of a confirmation or a redo)."""
    rows: dict[str, str] = {}
    for i, (name, value) in enumerate(values.items()):
        rows |= {f"variant_name_{i}": name, f"variant_value_{i}": value_text(value_type, value)}
    return rows


def value_label(value: Any, *, limit: int = 60) -> str:
    """An answer's value in a table cell: a boolean's on/off, a typed value as compact JSON, cut at `limit`."""
    if type(value) is bool:
        return "on" if value else "off"
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def pretty(value: Any) -> str:
    """A variant's value for reading: JSON, indented when it is an object or array (templates escape it)."""
    return json.dumps(value, ensure_ascii=False, indent=2 if isinstance(value, dict | list) and value else None)


def serving(value: Mapping[str, Any] | None) -> str:
    """What a level chose to serve when on: `variant blue`, `split blue 30% / dark 70%`, or "" (the default)."""
    chosen = value or {}
    if chosen.get("variant") is not None:
        return f"variant {chosen['variant']}"
    if chosen.get("split"):
        return "split " + " / ".join(f"{arm['name']} {arm['weight'] / 10:g}%" for arm in chosen["split"])
    return ""


def split_text(split: list[dict[str, Any]] | None) -> str:
    """`blue=300, dark=700`: weights in thousandths, as a split holds them."""
    return ", ".join(f"{arm['name']}={arm['weight']}" for arm in split or ())


def parse_selection(form: Mapping[str, str]) -> Selection:
    """What a level serves when on: keep (None), the flag's default, one variant, or a split in thousandths."""
    serve = text(form, "serve") or "keep"
    if serve == "keep":
        return None
    if serve == "default":
        return {"variant": None}
    if serve == "variant":
        name = text(form, "variant")
        if not name:
            raise InvalidInput("variant", "choose the variant this level serves")
        return {"variant": name}
    if serve == "split":
        arms: list[dict[str, Any]] = []
        for part in filter(None, (p.strip() for p in text(form, "split").replace("\n", ",").split(","))):
            name, _, weight = (s.strip() for s in part.partition("="))
            if not name or not weight.isdigit():
                raise InvalidInput("split", "write arms as name=weight in thousandths, e.g. blue=300, dark=700")
            arms.append({"name": name, "weight": int(weight)})
        if sum(arm["weight"] for arm in arms) != 1000:
            raise InvalidInput("split", "the weights are thousandths and sum to 1000, e.g. blue=300, dark=700")
        return {"split": arms}
    raise InvalidInput("serve", "choose keep, default, variant or split")


def selection_fields(selection: Selection) -> dict[str, str]:
    """The form fields that give `selection` back."""
    if selection is None:
        return {"serve": "keep"}
    if selection.get("split"):
        return {"serve": "split", "split": split_text(selection["split"])}
    if selection.get("variant") is not None:
        return {"serve": "variant", "variant": str(selection["variant"])}
    return {"serve": "default"}
