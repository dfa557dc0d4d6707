"""Targeting rules in `flagcore.evaluate`: what every operator means, where rules sit among the levels,
and the answer naming the rule."""

from __future__ import annotations

from typing import Any

import pytest

from events import (
    FlagArchived,
    Level,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideSet,
    SystemDefaultSet,
    TargetingRulesSet,
    UserOverrideSet,
)
from flagcore import FlagState, Reason, Variant, evaluate
from flagcore.variants import select_variant
from tests.support.generated_logs import EXP, ORG, REL, THEME, state_of


def _set(flag: str, *rules: dict[str, Any], org_id: str | None = ORG) -> TargetingRulesSet:
    level = Level.SYSTEM if org_id is None else Level.ORG
    return TargetingRulesSet.model_validate({"flag_key": flag, "level": level, "org_id": org_id, "rules": rules})


def _rule(rule_id: str, *conditions: dict[str, Any], variant: str = "on", **outcome: Any) -> dict[str, Any]:
    return {"id": rule_id, "conditions": list(conditions), **(outcome or {"variant": variant})}


def _c(attribute: str, operator: str, *values: Any, case_sensitive: bool = True) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "values": list(values), "case_sensitive": case_sensitive}


def _eval(state: FlagState, flag: str = REL, **kwargs: Any) -> Any:
    return evaluate(state.catalog, state.tenant(ORG), flag, **kwargs)


CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    (_c("email", "equals", "a@acme.com"), {"email": "a@acme.com"}, True),
    (_c("email", "equals", "a@acme.com"), {"email": "A@acme.com"}, False),
    (_c("email", "equals", "a@acme.com", case_sensitive=False), {"email": "A@ACME.com"}, True),
    (_c("email", "not_equals", "a@acme.com"), {"email": "b@acme.com"}, True),
    (_c("email", "not_equals", "a@acme.com"), {}, False),  # absent fails the negated operators too
    (_c("plan", "in", "pro", "enterprise"), {"plan": "enterprise"}, True),
    (_c("plan", "in", "pro", "enterprise"), {"plan": "Enterprise"}, False),
    (_c("plan", "in", "pro", "enterprise", case_sensitive=False), {"plan": "Enterprise"}, True),
    (_c("plan", "not_in", "free"), {"plan": "pro"}, True),
    (_c("plan", "not_in", "free"), {"plan": "free"}, False),
    (_c("plan", "not_in", "free"), {"plan": None}, False),  # null is absent
    (_c("seats", "equals", 10), {"seats": 10.0}, True),  # a number equals the same number
    (_c("seats", "equals", 1), {"seats": True}, False),  # true is not 1
    (_c("beta", "equals", True), {"beta": True}, True),
    (_c("seats", "equals", "10"), {"seats": 10}, False),  # a string is not a number
    (_c("email", "ends_with", "@acme.com"), {"email": "x@acme.com"}, True),
    (_c("email", "ends_with", "@ACME.com", case_sensitive=False), {"email": "x@acme.COM"}, True),
    (_c("email", "starts_with", "admin"), {"email": "admin@x.io"}, True),
    (_c("email", "contains", "acme"), {"email": "x@acme.com"}, True),
    (_c("email", "contains", "acme"), {"email": 42}, False),
    (_c("email", "matches", r"^[a-z]+@acme\.com$"), {"email": "bob@acme.com"}, True),
    (_c("email", "matches", r"^[a-z]+@acme\.com$"), {"email": "Bob@acme.com"}, False),
    (_c("email", "matches", r"^[a-z]+@acme\.com$", case_sensitive=False), {"email": "Bob@acme.com"}, True),
    (_c("email", "matches", "acme"), {"email": "x@acme.com"}, True),  # a search: anchor for a whole match
    (_c("email", "matches", "(a+)+$"), {"email": "a" * 5000 + "!"}, False),  # linear time, no backtracking
    (_c("email", "matches", "a"), {"email": "\ud800a"}, False),  # not UTF-8: no match, no exception
    (_c("age", "lt", 18), {"age": 17}, True),
    (_c("age", "lte", 18), {"age": 18.0}, True),
    (_c("age", "gt", 18), {"age": 18}, False),
    (_c("age", "gte", 18.5), {"age": 19}, True),
    (_c("age", "gt", 18), {"age": "19"}, False),  # a string is not compared as a number
    (_c("age", "gt", 0), {"age": True}, False),
    (_c("app_version", "semver_gte", "2.1.0"), {"app_version": "2.10.0"}, True),  # not string order
    (_c("app_version", "semver_lt", "2.1.0"), {"app_version": "2.1.0-rc.1"}, True),  # a pre-release is lower
    (_c("app_version", "semver_eq", "2.1.0"), {"app_version": "2.1.0"}, True),
    (_c("app_version", "semver_gt", "2.1.0"), {"app_version": "2.1"}, False),  # not a version: no match
    (_c("app_version", "semver_lte", "2.1.0"), {"app_version": "1.9.9"}, True),
    (_c("signup", "before", "2026-01-01T00:00:00+00:00"), {"signup": "2025-12-31T23:59:59Z"}, True),
    (_c("signup", "before", "2026-01-01T00:00:00+00:00"), {"signup": "2026-01-01T01:00:00+02:00"}, True),
    (_c("signup", "after", "2026-01-01T00:00:00+00:00"), {"signup": "2026-01-01T00:00:01"}, True),  # UTC
    (_c("signup", "after", "2026-01-01T00:00:00+00:00"), {"signup": 1767225601}, True),  # epoch seconds
    (_c("signup", "after", "2026-01-01T00:00:00+00:00"), {"signup": "soon"}, False),
    (_c("ip", "in_cidr", "10.0.0.0/8", "2001:db8::/32"), {"ip": "10.1.2.3"}, True),
    (_c("ip", "in_cidr", "10.0.0.0/8", "2001:db8::/32"), {"ip": "2001:db8::1"}, True),
    (_c("ip", "in_cidr", "10.0.0.0/8"), {"ip": "192.168.0.1"}, False),
    (_c("ip", "in_cidr", "10.0.0.0/8"), {"ip": "not-an-ip"}, False),
    (_c("country", "exists"), {"country": "FR"}, True),
    (_c("country", "exists"), {"country": None}, False),
    (_c("country", "not_exists"), {}, True),
    (_c("org", "equals", ORG), {}, True),  # org, platform and targeting_key come from the call
    (_c("org", "equals", "evil"), {"org": "evil"}, False),  # and a context cannot claim another
    (_c("targeting_key", "equals", "u-1"), {}, True),
    (_c("platform", "equals", "meta"), {}, True),
]


@pytest.mark.parametrize(("condition", "context", "matches"), CASES)
def test_each_operator_means_what_the_docs_say(
    condition: dict[str, Any], context: dict[str, Any], matches: bool
) -> None:
    state = state_of([_set(REL, _rule("r", condition))])
    got = _eval(state, context=context, user_id="u-1", platform="meta")
    assert (got.reason is Reason.TARGETING_MATCH) is matches
    assert got.value is matches  # no level speaks: no match is the built-in default, off


def test_conditions_are_anded_and_the_first_matching_rule_wins() -> None:
    state = state_of([
        _set(THEME,
             _rule("both", _c("plan", "equals", "pro"), _c("country", "equals", "FR"), variant="green"),
             _rule("pro", _c("plan", "equals", "pro"), variant="red"),
             _rule("any-pro", _c("plan", "equals", "pro"), variant="blue")),
    ])
    assert _eval(state, THEME, context={"plan": "pro", "country": "FR"}).rule == "both"
    pro = _eval(state, THEME, context={"plan": "pro", "country": "DE"})
    assert (pro.rule, pro.variant, pro.value, pro.level) == ("pro", "red", "#f00", Level.ORG)
    assert _eval(state, THEME, context={"plan": "free"}).reason is Reason.DEFAULT


def test_rules_sit_inside_their_level_under_the_more_specific_overrides() -> None:
    pro = _rule("pro", _c("plan", "equals", "pro"))
    free = _rule("free", _c("plan", "equals", "free"), variant="off")
    base = [SystemDefaultSet(flag_key=REL, enabled=False), _set(REL, pro, org_id=None)]
    state = state_of(base)
    got = _eval(state, context={"plan": "pro"})
    assert (got.value, got.level, got.rule) == (True, Level.SYSTEM, "pro")  # system rules before system default
    state = state_of([*base, OrgOverrideSet(flag_key=REL, org_id=ORG, enabled=False)])
    assert _eval(state, context={"plan": "pro"}).rule is None  # the org's own setting beats the system's rules
    state = state_of([*base, OrgOverrideSet(flag_key=REL, org_id=ORG, enabled=True), _set(REL, free)])
    got = _eval(state, context={"plan": "free"})
    assert (got.value, got.level, got.rule) == (False, Level.ORG, "free")  # the org's rules before its setting
    state = state_of([
        *base, _set(REL, free),
        PlatformOverrideSet(flag_key=REL, org_id=ORG, platform="meta", enabled=True),
        UserOverrideSet(flag_key=REL, org_id=ORG, user_id="u-1", enabled=True),
    ])
    assert _eval(state, context={"plan": "free"}, platform="meta").rule is None  # a platform override wins
    assert _eval(state, context={"plan": "free"}, user_id="u-1").rule is None  # and a user's
    assert _eval(state, context={"plan": "free"}, user_id="u-2").rule == "free"


def test_clearing_an_org_override_keeps_its_rules_and_an_empty_list_removes_them() -> None:
    rules = _set(REL, _rule("pro", _c("plan", "equals", "pro")))
    state = state_of([OrgOverrideSet(flag_key=REL, org_id=ORG, enabled=False), rules,
                      OrgOverrideCleared(flag_key=REL, org_id=ORG)])
    assert _eval(state, context={"plan": "pro"}).rule == "pro"
    state = state_of([rules, _set(REL)])
    assert _eval(state, context={"plan": "pro"}).reason is Reason.DEFAULT and not state.tenant(ORG).rules


def test_a_rule_split_gives_each_subject_its_sticky_arm_and_names_the_rule() -> None:
    split = [{"name": "green", "weight": 500}, {"name": "red", "weight": 500}]
    state = state_of([_set(THEME, _rule("half", _c("plan", "exists"), split=split))])
    arms = (Variant("green", 500), Variant("red", 500))
    for user in (f"u-{i}" for i in range(50)):
        got = _eval(state, THEME, user_id=user, context={"plan": "x"})
        expected = select_variant(THEME, user, arms)
        assert expected is not None
        assert (got.variant, got.reason, got.rule) == (expected.name, Reason.TARGETING_MATCH, "half")


def test_an_unknown_variant_serves_the_default_and_archival_and_the_kill_switch_still_win() -> None:
    state = state_of([_set(THEME, _rule("r", _c("plan", "exists"), variant="gone"))])
    assert _eval(state, THEME, context={"plan": "x"}).variant == "blue"
    state = state_of([_set(REL, _rule("r", _c("plan", "exists"))), FlagArchived(flag_key=REL)])
    assert _eval(state, context={"plan": "x"}).reason is Reason.DISABLED


def test_the_explanation_names_the_rule_and_its_level() -> None:
    state = state_of([_set(EXP, _rule("pro", _c("plan", "equals", "pro"), variant="control"), org_id=None)])
    got = _eval(state, EXP, context={"plan": "pro"})
    assert got.explain() == "exp.checkout.enabled is on: system level, rule 'pro' matched, set by alice ('test')"


def test_without_rules_the_context_changes_nothing() -> None:
    state = state_of([OrgOverrideSet(flag_key=REL, org_id=ORG, enabled=True)])
    assert _eval(state, context={"plan": "pro"}) == _eval(state)
