"""The SDK with an evaluation context: every getter and every detail against `flagcore.evaluate(..., context=...)`.

Generated logs of settings and targeting rules at both levels (tests/support/generated_rules.py), contexts that
make rules hold and fail: `FlagClient.evaluate` gives exactly the core's answer (the rollout bucket included),
the value getters its value, `Resolution.rule` the rule that matched; and without a context the same as the
core without one (rules on the org, platform and user still apply).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events import FlagDefined, OrgOverrideSet, TargetingRulesSet, ValueType
from flagcore import ErrorCode, Reason, evaluate, fold
from flagsdk import FlagClient
from tests.support.factories import LogBuilder
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, USERS, changes, state_of
from tests.support.generated_rules import contexts, rule_sets

SOME_USERS = [*USERS[:6], "u-1"]
DEFAULTS: dict[ValueType, Any] = {
    ValueType.BOOLEAN: False, ValueType.STRING: "default", ValueType.INTEGER: -1, ValueType.FLOAT: -1.5,
    ValueType.OBJECT: {"default": True},
}  # fmt: skip


def value_of(client: FlagClient, key: str, kind: ValueType, **call: Any) -> Any:
    """The hot-path getter of `kind`."""
    if kind is ValueType.BOOLEAN:
        return client.is_enabled(key, **call)
    getter = {
        ValueType.STRING: client.get_string, ValueType.INTEGER: client.get_integer,
        ValueType.FLOAT: client.get_float, ValueType.OBJECT: client.get_object,
    }[kind]  # fmt: skip
    return getter(key, DEFAULTS[kind], **call)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(changes, max_size=6),
    st.lists(rule_sets(), min_size=1, max_size=5),
    st.permutations(range(11)),
    st.lists(contexts, min_size=1, max_size=3),
)
def test_the_sdk_answers_what_flagcore_evaluate_answers_for_every_context(
    settings_log: list, rules_log: list, order: list[int], ctxs: list[dict[str, Any]]
) -> None:
    both = [*settings_log, *rules_log]
    state = state_of([both[i] for i in order if i < len(both)])
    client = FlagClient.from_state(state, org_id=ORG)
    tenant = state.tenant(ORG)
    for key in KEYS:
        own = state.catalog.definitions[key].value_type
        for user in SOME_USERS:
            for platform in PLATFORMS:
                bare = evaluate(state.catalog, tenant, key, platform=platform, user_id=user)
                assert client.evaluate(key, platform=platform, user=user).evaluation == bare
                assert value_of(client, key, own, platform=platform, user=user) == bare.value
                for context in ctxs:
                    e = evaluate(state.catalog, tenant, key, platform=platform, user_id=user, context=context)
                    call = {"platform": platform, "user": user, "context": context}
                    r = client.evaluate(key, **call)
                    assert r.evaluation == e, (key, user, platform, context)
                    assert (r.value, r.reason, r.variant, r.level, r.rule) == (e.value, e.reason, e.variant, e.level,
                                                                               e.rule)  # fmt: skip
                    got = value_of(client, key, own, **call)
                    assert got == e.value and type(got) is type(e.value)
                    details = client.resolve(key, own, DEFAULTS[own], **call)
                    assert (details.value, details.reason, details.rule) == (e.value, e.reason, e.rule)


@settings(max_examples=60, deadline=None)
@given(st.lists(rule_sets(), min_size=1, max_size=4), contexts)
def test_a_getter_of_another_type_gives_its_default_whatever_the_context(rules_log: list, context: dict) -> None:
    state = state_of(rules_log)
    client = FlagClient.from_state(state, org_id=ORG)
    for key in KEYS:
        own = state.catalog.definitions[key].value_type
        for kind, default in DEFAULTS.items():
            if kind is own:
                continue
            assert value_of(client, key, kind, user="u-1", context=context) == default
            r = client.resolve(key, kind, default, user="u-1", context=context)
            assert (r.value, r.reason, r.error_code) == (default, Reason.ERROR, ErrorCode.TYPE_MISMATCH)


RULES = TargetingRulesSet.model_validate({
    "flag_key": "checkout.theme", "level": "org", "org_id": ORG,
    "rules": [
        {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
         "variant": "red"},
        {"id": "new-app", "conditions": [
            {"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]},
            {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]},
        ], "variant": "green"},
    ],
})  # fmt: skip


def themed() -> FlagClient:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key="checkout.theme", group="checkout", value_type=ValueType.STRING,
                    values={"blue": "#00f", "red": "#f00", "green": "#0f0"}, default_variant="blue",
                    off_variant="blue"),
        OrgOverrideSet(flag_key="checkout.theme", org_id=ORG, enabled=True),
        RULES,
    ])  # fmt: skip
    return FlagClient.from_state(fold(log.events), org_id=ORG)


def test_a_matching_rule_decides_and_is_named() -> None:
    client = themed()
    staff = client.get_string_details("checkout.theme", "", user="u-1", context={"email": "ana@acme.com"})
    assert (staff.value, staff.reason, staff.rule, staff.variant) == ("#f00", Reason.TARGETING_MATCH, "staff", "red")
    assert "rule 'staff' matched" in staff.evaluation.explain()
    pro = {"plan": "pro", "app_version": "2.3.0", "email": "bo@globex.io"}
    assert client.get_string("checkout.theme", "", user="u-2", context=pro) == "#0f0"
    assert client.evaluate("checkout.theme", user="u-2", context=pro).rule == "new-app"


def test_no_rule_holds_and_the_level_below_answers() -> None:
    client = themed()
    for context in (None, {}, {"plan": "pro", "app_version": "1.9.9"}, {"email": "ana@acme.com.evil"}):
        r = client.get_string_details("checkout.theme", "", user="u-3", context=context)
        assert (r.value, r.rule, r.reason) == ("#00f", None, Reason.TARGETING_MATCH)  # the org's own setting
        assert r.level is not None and r.level.value == "org"


def test_odd_attribute_values_never_raise_and_match_nothing() -> None:
    client = themed()
    for odd in ([1, 2], {"a": 1}, float("nan"), True, "\ud800", 10**400, object()):
        context = {"email": odd, "plan": odd, "app_version": odd}
        assert client.get_string("checkout.theme", "", user="u-4", context=context) == "#00f"
        assert client.evaluate("checkout.theme", user="u-4", context=context).rule is None


def test_a_context_cannot_move_the_call_to_another_org_platform_or_user() -> None:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key="ai.insights.enabled", group="ai"),
        TargetingRulesSet.model_validate({"flag_key": "ai.insights.enabled", "level": "system", "rules": [
            {"id": "globex", "conditions": [{"attribute": "org", "operator": "equals", "values": ["globex"]}],
             "variant": "on"},
            {"id": "vip", "conditions": [{"attribute": "targeting_key", "operator": "equals", "values": ["u-vip"]}],
             "variant": "on"},
        ]}),
    ])  # fmt: skip
    client = FlagClient.from_state(fold(log.events), org_id=ORG)
    claims = {"org": "globex", "targeting_key": "u-vip", "platform": "meta"}
    assert client.is_enabled("ai.insights.enabled", user="u-1", context=claims) is False
    assert client.is_enabled("ai.insights.enabled", user="u-vip", context=claims) is True
    assert client.is_enabled("ai.insights.enabled", user="u-vip") is True  # rules on the call's own, no context
    assert client.evaluate("ai.insights.enabled", user="u-vip").rule == "vip"
