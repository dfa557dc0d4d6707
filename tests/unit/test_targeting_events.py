"""`TargetingRulesSet` on the wire: its stream, its round trip, and every limit and value check at write time."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from events import Scope, TargetingRulesSet
from events.targeting import MAX_CONDITIONS, MAX_REGEX_LENGTH, MAX_RULES, MAX_VALUES
from flagcore import transition


def _rules(*rules: dict[str, Any], level: str = "org", org_id: str | None = "acme") -> TargetingRulesSet:
    return TargetingRulesSet.model_validate(
        {"flag_key": "checkout.v2", "level": level, "org_id": org_id, "rules": list(rules)}
    )


def _rule(*conditions: dict[str, Any], rule_id: str = "r1", **outcome: Any) -> dict[str, Any]:
    return {"id": rule_id, "conditions": list(conditions), **(outcome or {"variant": "on"})}


def _cond(attribute: str, operator: str, *values: Any, **extra: Any) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "values": list(values), **extra}


def _problem(change: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        _rules(change)
    return str(caught.value)


def test_rules_live_in_their_own_stream_per_level_keyed_by_the_org() -> None:
    org = _rules(_rule(_cond("email", "ends_with", "@acme.com")))
    system = _rules(_rule(_cond("plan", "equals", "enterprise")), level="system", org_id=None)
    assert org.stream == "org/acme/flag/checkout.v2/rules" and org.partition_key == "acme"
    assert system.stream == "flag/checkout.v2/system/rules" and system.tenant is None
    assert org.scope == Scope.org("acme")


def test_a_rule_list_round_trips_through_the_codec_and_folds_to_its_value() -> None:
    change = _rules(
        _rule(_cond("country", "in", "FR", "DE", case_sensitive=False), variant="on"),
        _rule(_cond("app_version", "semver_gte", "2.1.0"), rule_id="r2", split=[{"name": "on", "weight": 1000}]),
    )
    assert TargetingRulesSet.model_validate_json(change.model_dump_json()) == change
    value = transition(None, change)
    assert value is not None and [r["id"] for r in value["rules"]] == ["r1", "r2"]
    assert transition(value, _rules()) is None  # the empty list: the level has no rules


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        (_cond("email", "matches", "(a"), "RE2"),
        (_cond("email", "matches", r"(a)\1"), "RE2"),  # a backreference: not linear time, refused
        (_cond("email", "matches", "\ud800"), "RE2"),
        (_cond("email", "matches", "a" * (MAX_REGEX_LENGTH + 1)), f"at most {MAX_REGEX_LENGTH}"),
        (_cond("app_version", "semver_gt", "2.1"), "semantic version"),
        (_cond("signup", "before", "2026-01-01T00:00:00"), "UTC offset"),
        (_cond("signup", "after", "yesterday"), "ISO 8601"),
        (_cond("ip", "in_cidr", "10.0.0.1/8"), "network"),
        (_cond("age", "gt", "18"), "finite number"),
        (_cond("age", "lt", True), "finite number"),
        (_cond("email", "equals"), "exactly one value"),
        (_cond("email", "equals", "a", "b"), "exactly one value"),
        (_cond("email", "in"), "1 to"),
        (_cond("email", "exists", "x"), "no values"),
        (_cond("email", "starts_with", 3), "strings"),
        (_cond("bad attr", "exists"), "attribute"),
        (_cond("email", "resembles", "x"), "operator"),
        (_cond("plan", "in", *[f"p{i}" for i in range(MAX_VALUES + 1)]), "values"),
    ],
)
def test_a_condition_the_evaluator_could_not_run_is_refused_naming_the_field(
    condition: dict[str, Any], needle: str
) -> None:
    assert needle in _problem(_rule(condition))


def test_a_rule_serves_exactly_one_variant_or_a_sound_split() -> None:
    cond = _cond("plan", "exists")
    assert "exactly one" in _problem({"id": "r", "conditions": [cond]})
    assert "exactly one" in _problem({"id": "r", "conditions": [cond], "variant": "on", "split": []})
    assert "sum to 1000" in _problem(_rule(cond, split=[{"name": "a", "weight": 10}]))
    assert "conditions" in _problem({"id": "r", "conditions": [], "variant": "on"})


def test_the_limits_are_enforced() -> None:
    cond = _cond("plan", "exists")
    with pytest.raises(ValidationError, match="rules"):
        _rules(*[_rule(cond, rule_id=f"r{i}") for i in range(MAX_RULES + 1)])
    _rules(*[_rule(cond, rule_id=f"r{i}") for i in range(MAX_RULES)])
    with pytest.raises(ValidationError, match="conditions"):
        _rules(_rule(*[cond] * (MAX_CONDITIONS + 1)))
    with pytest.raises(ValidationError, match="ids must be distinct"):
        _rules(_rule(cond), _rule(cond))


def test_rules_belong_to_the_system_or_one_org_only() -> None:
    with pytest.raises(ValidationError, match="org_id"):
        _rules(level="org", org_id=None)
    with pytest.raises(ValidationError, match="level"):
        TargetingRulesSet.model_validate({"flag_key": "f", "level": "user", "org_id": "acme", "rules": []})
