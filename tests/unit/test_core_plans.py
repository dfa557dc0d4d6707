"""The compiled plans (`flagcore.plans`) against `flagcore.evaluate`: every field of every answer.

Generated logs, many users, every platform, instants inside a plan's span and at its end: for a user
without an override of their own, `outcomes[pick(user)]` must be exactly `evaluate`'s answer and
`enabled(user)` its value, for as long as the plan says it is good; the plan's `enabled` must be
`evaluate(...).value` for every user, at any instant.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events import KillSwitchEngaged, OrgOverrideSet, RolloutPercentageSet, UserOverrideSet
from flagcore import FlagState, Reason, bucket, evaluate, fold
from flagcore.plans import FlagPlan, compile_flag, first_change
from tests.support.factories import T0
from tests.support.generated_logs import EXP, KEYS, OPS, ORG, PLATFORMS, REL, USERS, changes, state_of


def _same(got: object, expected: object) -> bool:
    """Equal and of the same type (True is not 1, 1 is not 1.0): a typed flag's value exactly."""
    return type(got) is type(expected) and got == expected


def _check(state: FlagState, plan: FlagPlan, at: float) -> None:
    tenant = state.tenant(ORG)
    now = datetime.fromtimestamp(at, UTC)
    for user in USERS:
        if user in plan.users:
            continue  # never answered from a rule: `enabled` evaluates in full
        for platform in PLATFORMS:
            expected = evaluate(state.catalog, tenant, plan.flag_key, platform=platform, user_id=user, now=now)
            rule = plan.rule(platform)
            answer = rule.outcomes[rule.pick(user)]
            if expected.bucket is not None:  # a rollout's bucket is the subject's own, not kept in the plan
                assert answer.bucket is None and expected.bucket == bucket(plan.flag_key, user or ORG)
                expected = replace(expected, bucket=None)
            assert answer == expected, (plan.flag_key, user, platform)
            assert _same(rule.enabled(user, platform), expected.value)
            assert not rule.fixed or len(rule.outcomes) == 1


def _check_enabled(state: FlagState, plan: FlagPlan) -> None:
    """`enabled` answers for the real clock: as at `since`, or (a step due since, T0 being past) as now."""
    tenant = state.tenant(ORG)
    since = datetime.fromtimestamp(plan.since, UTC)
    key = plan.flag_key
    settings = [state.catalog.system.get(key), tenant.org.get(key)]
    settings += [s for (_, f), s in (*tenant.platform.items(), *tenant.user.items()) if f == key]
    at = None if first_change(settings, since) < math.inf else since
    for user in USERS:
        for platform in PLATFORMS:
            expected = evaluate(state.catalog, tenant, plan.flag_key, platform=platform, user_id=user, now=at)
            assert _same(plan.enabled(user, platform), expected.value), (plan.flag_key, user, platform)


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=10), st.integers(0, 100))
def test_a_plan_answers_what_evaluate_answers_for_as_long_as_it_says(log: list, offset: int) -> None:
    state = state_of(log)
    tenant = state.tenant(ORG)
    at = (T0 + timedelta(seconds=offset)).timestamp()
    for flag_key in KEYS:
        plan = compile_flag(state.catalog, tenant, flag_key, at)
        assert plan.since == at < plan.until
        assert plan.users == {u for u, f in tenant.user if f == flag_key}
        _check(state, plan, at)
        _check_enabled(state, plan)
        if plan.until < math.inf:
            _check(state, plan, plan.until - 1e-3)  # still good just before its end
            _check(state, compile_flag(state.catalog, tenant, flag_key, plan.until), plan.until)


def test_an_unknown_flag_compiles_to_evaluates_error_answer_for_everyone() -> None:
    state = fold([])
    plan = compile_flag(state.catalog, state.tenant(ORG), "no.such.flag", T0.timestamp())
    rule = plan.rule("meta")
    assert rule.fixed and rule.outcomes == (evaluate(state.catalog, state.tenant(ORG), "no.such.flag"),)
    assert rule.outcomes[0].reason is Reason.ERROR and plan.enabled("u-1", "meta") is False


def test_a_split_experiment_keeps_one_answer_per_arm_and_one_off() -> None:
    state = state_of([
        OrgOverrideSet(flag_key=EXP, org_id=ORG, enabled=True),
        RolloutPercentageSet(flag_key=EXP, level="org", org_id=ORG, percentage=50),
    ])
    rule = compile_flag(state.catalog, state.tenant(ORG), EXP, T0.timestamp()).default
    assert [o.variant for o in rule.outcomes] == ["off", "on", "control", "new"]
    assert {rule.pick(f"u-{i}") for i in range(200)} == {0, 2, 3, 1}  # "on" is an arm too: it shares index 1


def test_the_kill_switch_is_one_fixed_answer_on_every_platform() -> None:
    state = state_of([
        OrgOverrideSet(flag_key=OPS, org_id=ORG, enabled=True),
        UserOverrideSet(flag_key=OPS, org_id=ORG, user_id="u-1", enabled=True),
        KillSwitchEngaged(flag_key=OPS),
    ])
    plan = compile_flag(state.catalog, state.tenant(ORG), OPS, T0.timestamp())
    assert plan.users == {"u-1"}
    for platform in PLATFORMS:
        rule = plan.rule(platform)
        assert rule.fixed and rule.outcomes[0].killed and plan.enabled("u-2", platform) is False
    assert plan.enabled("u-1", None) is False  # a user's own override is evaluated in full, and loses too


def test_a_plan_of_a_flag_nobody_sets_is_the_default_for_everyone() -> None:
    state = state_of([])
    plan = compile_flag(state.catalog, state.tenant(ORG), REL, T0.timestamp())
    assert plan.platforms == {} and plan.until == math.inf
    assert plan.default.outcomes == (evaluate(state.catalog, state.tenant(ORG), REL),)
    assert plan.enabled is plan.default.enabled  # nothing to dispatch: the rule is the whole program
