"""The checks that make a sound event a dead letter: values must be what the fold computes and fit the tables.

`decode_record` runs `checked_value` on every setting event; a definition's value
is computed (and checked by `definition_value`) when it is planned, from the
stored definition. Each failure is a `DecodeError` whose reason the dead letter keeps.
"""

from __future__ import annotations

from typing import Any

from events import DecodeError, Envelope, FlagKind, Scope
from flagcore import InvalidTransition, parse_instant, transition

MAX_INT4 = 2**31 - 1
MAX_INT8 = 2**63 - 1
KIND_VALUES = frozenset(k.value for k in FlagKind)


def checked_value(envelope: Envelope, scope: Scope | None) -> dict[str, Any] | None:
    """A setting's new value, after checking it agrees with the change and fits the tables.

    A definition's value is computed when planning, from the stored definition, as the
    fold does: its envelope may carry an older schema's value shape (see upcasting).
    """
    if envelope.version > MAX_INT4 or envelope.sequence > MAX_INT8:
        raise DecodeError("version or sequence out of range")
    if scope is None:
        return None
    try:
        value = transition(envelope.previous, envelope.data, at=envelope.occurred_at)
    except InvalidTransition as exc:
        raise DecodeError(f"invalid transition: {exc}") from exc
    if value != envelope.new:
        raise DecodeError("`new` differs from transition(previous, data)")
    if value is not None:
        check_setting(value)
    return value


def definition_value(current: dict[str, Any] | None, envelope: Envelope) -> dict[str, Any]:
    """The definition after `envelope`, from the current one; `DecodeError` when it cannot apply."""
    try:
        value = transition(current, envelope.data)
    except InvalidTransition as exc:
        raise DecodeError(f"invalid transition: {exc}") from exc
    check_definition(value)
    assert value is not None
    return value


def check_definition(value: dict[str, Any] | None) -> None:
    ok = (
        value is not None
        and value.get("kind") in KIND_VALUES
        and isinstance(value.get("description"), str)
        and isinstance(value.get("owner"), str | None)
        and isinstance(value.get("group"), str)
        and bool(value.get("group"))
        and isinstance(value.get("archived", False), bool)
        and isinstance(value.get("killed", False), bool)
        and isinstance(value.get("variants", []), list)
        and isinstance(value.get("values", {}), dict)
    )
    if not ok:
        raise DecodeError(f"definition value is malformed: {value!r}")


def check_setting(value: dict[str, Any]) -> None:
    steps = value.get("schedule") or []
    ok = _setting_ok(value) and isinstance(steps, list) and all(_step_ok(s) for s in steps)
    ok = ok and isinstance(value.get("variant"), str | None) and isinstance(value.get("split", []), list)
    if not ok:
        raise DecodeError(f"setting value is malformed: {value!r}")


def _setting_ok(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    enabled = value.get("enabled")
    pct = value.get("rollout_percentage")
    return isinstance(enabled, bool | None) and (pct is None or (type(pct) is int and 0 <= pct <= 100))


def _step_ok(step: Any) -> bool:
    if not (_setting_ok(step) and isinstance(step.get("at"), str)):
        return False
    try:
        parse_instant(step["at"])
    except ValueError:
        return False
    return True
