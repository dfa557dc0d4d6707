"""The compiled plans (`flagcore.plans`) against `flagcore.evaluate`: every field of every answer.

Generated logs, many users, every platform, instants inside a plan's span and at its end: for a subject
without a user override of its own, `outcomes[pick(subject)]` must be exactly `evaluate`'s answer and
`enabled(subject)` its value, for as long as the plan says it is good.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events import KillSwitchEngaged, OrgOverrideSet, RolloutPercentageSet, UserOverrideSet
from flagcore import FlagState, Reason, bucket, evaluate, fold
from flagcore.plans import FlagPlan, compile_flag
from tests.support.factories import T0
from tests.support.generated_logs import EXP, KEYS, OPS, ORG, PLATFORMS, REL, USERS, changes, state_of


def _check(state: FlagState, plan: FlagPlan, at: float) -> None:
    tenant = state.tenant(ORG)
    now = datetime.fromtimestamp(at, UTC)
    for user in USERS:
        if user in plan.users:
            continue  # never answered from a plan: the caller evaluates in full
        subject = ORG if user is None else user
        for platform in PLATFORMS:
            expected = evaluate(state.catalog, tenant, plan.flag_key, platform=platform, user_id=user, now=now)
            rule = plan.rule(platform)
            answer = rule.outcomes[rule.pick(subject)]
            if expected.reason is Reason.SPLIT:  # the bucket is the subject's own, not kept in the plan
                assert answer.bucket is None and expected.bucket == bucket(plan.flag_key, subject)
                expected = replace(expected, bucket=None)
            assert answer == expected, (plan.flag_key, user, platform)
            assert rule.enabled(subject) is expected.value
            assert not rule.fixed or len(rule.outcomes) == 1


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
        if plan.until < math.inf:
            _check(state, plan, plan.until - 1e-3)  # still good just before its end
            _check(state, compile_flag(state.catalog, tenant, flag_key, plan.until), plan.until)


def test_an_unknown_flag_compiles_to_evaluates_error_answer_for_everyone() -> None:
    state = fold([])
    plan = compile_flag(state.catalog, state.tenant(ORG), "no.such.flag", T0.timestamp())
    rule = plan.rule("meta")
    assert rule.fixed and rule.outcomes == (evaluate(state.catalog, state.tenant(ORG), "no.such.flag"),)
    assert rule.outcomes[0].reason is Reason.ERROR and rule.enabled("u-1") is False


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
        assert rule.fixed and rule.outcomes[0].killed and rule.enabled("u-2") is False


def test_a_plan_of_a_flag_nobody_sets_is_the_default_for_everyone() -> None:
    state = state_of([])
    plan = compile_flag(state.catalog, state.tenant(ORG), REL, T0.timestamp())
    assert plan.platforms == {} and plan.until == math.inf
    assert plan.default.outcomes == (evaluate(state.catalog, state.tenant(ORG), REL),)
