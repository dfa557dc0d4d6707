"""Write-time checks of a flag's targeting rules, each refusal naming the field (`rules.2.conditions.0.values.1`).

`events.targeting` and `events.changes.TargetingRule` hold what the log may record (the operators, their values,
the limits); this builds those models from a request's list and says where the first refusal is, in the
request's own field names, and adds what only the command side knows: the variants the flag names (a rule
serving `pink` of a flag without it is refused) and what no reader could store (NUL, a lone surrogate). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from events import TargetingRule
from events.targeting import LISTS, MAX_RULES, PRESENCE, Condition, Operator
from flagcore.model import Definition
from services.command.errors import InvalidCommand
from services.command.typed import INT64_MAX, INT64_MIN, checked_selection, unstorable

__all__ = ["checked_rules"]

M = TypeVar("M", bound=BaseModel)

_OUT_OF_RANGE = "an integer value is within the signed 64-bit range"  # what every reader holds (and compares)
_NAMED = re.compile(r"^([a-z_]+): ")  # a model-level refusal that names its field ("values: ...")


def checked_rules(definition: Definition, rules: Sequence[Mapping[str, Any]]) -> tuple[TargetingRule, ...]:
    """The rules as the event records them, or `InvalidCommand` naming the first field refused."""
    if len(rules) > MAX_RULES:
        raise _refused("rules", f"at most {MAX_RULES} rules per flag and level, not {len(rules)}")
    first_with: dict[str, int] = {}
    checked: list[TargetingRule] = []
    for i, raw in enumerate(rules):
        at = f"rules.{i}"
        rule_id = raw.get("id")
        if isinstance(rule_id, str):
            if rule_id in first_with:
                other = f"rules.{first_with[rule_id]}"
                raise _refused(f"{at}.id", f"rule id {rule_id!r} is also {other}'s: ids are unique in the list")
            first_with[rule_id] = i
        conditions = raw.get("conditions")
        if isinstance(conditions, list | tuple):
            raw = {**raw, "conditions": [_condition(f"{at}.conditions.{j}", c) for j, c in enumerate(conditions)]}
        rule = _built(at, TargetingRule, raw)
        checked_selection(definition, rule.variant, rule.split, at=f"{at}.")
        checked.append(rule)
    return tuple(checked)


def _condition(at: str, raw: Any) -> Condition:
    values = raw.get("values") if isinstance(raw, Mapping) else None
    for k, value in enumerate(values if isinstance(values, list | tuple) else ()):
        problem = unstorable(value) if type(value) is not int or INT64_MIN <= value <= INT64_MAX else _OUT_OF_RANGE
        if problem is not None:
            raise _refused(f"{at}.values.{k}", problem)
    try:
        return Condition.model_validate(raw)
    except ValidationError as exc:
        field, message = _located(at, exc)
        if field == f"{at}.values":
            field = _culprit(at, raw) or field
        raise _refused(field, message) from exc


def _culprit(at: str, raw: Mapping[str, Any]) -> str | None:
    """Which one value of a condition is refused, when the count is right and one value is wrong."""
    try:
        op = Operator(str(raw.get("operator")))
    except ValueError:
        return None
    values = raw.get("values") or ()
    if op in PRESENCE or not values or (op not in LISTS and len(values) != 1):
        return None  # the count is what is wrong
    for k, value in enumerate(values):
        try:
            Condition(attribute="a", operator=op, values=(value,), case_sensitive=True)
        except ValidationError:
            return f"{at}.values.{k}"
    return None


def _built(at: str, model: type[M], raw: Any) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _refused(*_located(at, exc)) from exc


def _located(at: str, exc: ValidationError) -> tuple[str, str]:
    """The request's path of the first error, and what is wrong there."""
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    loc = [str(part) for part in first["loc"]]
    named = _NAMED.match(message) if not loc else None
    if named is not None:
        loc, message = [named.group(1)], message[named.end() :]
    return ".".join([at, *loc]), message


def _refused(field: str, message: str) -> InvalidCommand:
    return InvalidCommand(f"{field}: {message}", field=field)
