"""Compiled targeting rules (`flagcore.plans`) against `flagcore.evaluate`: every field of every answer.

Generated logs of settings and rule lists at both levels, contexts that make rules hold and fail:
for a user without an override of their own, a rule's `answer` is `evaluate`'s with that context (but
the rollout bucket, which the plan leaves None) and its `enabled` is `evaluate(...).value` without one;
the plan's `answer` and `enabled` are `evaluate`'s for every user, at the real clock.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events import Level, TargetingRulesSet
from flagcore import FlagState, Reason, evaluate
from flagcore.plans import FlagPlan, compile_flag, first_change
from flagcore.targeting import attributes
from tests.support.factories import T0
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, REL, USERS, changes, state_of
from tests.support.generated_rules import contexts, rule_sets

SOME_USERS = USERS[:8]


def _same(got: Any, expected: Any) -> bool:
    return type(got) is type(expected) and got == expected


def _at_rules(state: FlagState, plan: FlagPlan, at: float, ctxs: list[dict[str, Any]]) -> None:
    tenant = state.tenant(ORG)
    now = datetime.fromtimestamp(at, UTC)
    for user in SOME_USERS:
        if user in plan.users:
            continue
        for platform in PLATFORMS:
            rule = plan.rule(platform)
            for context in ctxs:
                expected = evaluate(
                    state.catalog, tenant, plan.flag_key, platform=platform, user_id=user, now=now, context=context
                )
                got = rule.answer(user, attributes(context, ORG, platform, user))
                assert got == replace(expected, bucket=None), (plan.flag_key, user, platform, context)
                assert _same(got.value, expected.value)
            bare = evaluate(state.catalog, tenant, plan.flag_key, platform=platform, user_id=user, now=now)
            assert _same(rule.enabled(user, platform), bare.value)


def _at_clock(state: FlagState, plan: FlagPlan, ctxs: list[dict[str, Any]]) -> None:
    """The plan's own `answer` and `enabled` hold at the real clock (past every generated schedule)."""
    tenant = state.tenant(ORG)
    key = plan.flag_key
    settings = [state.catalog.system.get(key), tenant.org.get(key)]
    settings += [s for (_, f), s in (*tenant.platform.items(), *tenant.user.items()) if f == key]
    at = None if first_change(settings, datetime.fromtimestamp(plan.since, UTC)) < math.inf else plan.since
    now = None if at is None else datetime.fromtimestamp(at, UTC)
    for user in SOME_USERS:
        for platform in PLATFORMS:
            for context in ctxs:
                expected = evaluate(
                    state.catalog, tenant, key, platform=platform, user_id=user, now=now, context=context
                )
                assert plan.answer(user, platform, context) == replace(expected, bucket=None)
            expected = evaluate(state.catalog, tenant, key, platform=platform, user_id=user, now=now)
            assert _same(plan.enabled(user, platform), expected.value)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(changes, max_size=8),
    st.lists(rule_sets(), min_size=1, max_size=6),
    st.permutations(range(14)),
    st.lists(contexts, min_size=1, max_size=3),
    st.integers(0, 100),
)
def test_compiled_rules_answer_what_evaluate_answers(
    settings_log: list, rules_log: list, order: list[int], ctxs: list[dict[str, Any]], offset: int
) -> None:
    both = [*settings_log, *rules_log]
    state = state_of([both[i] for i in order if i < len(both)])  # rules and settings interleaved
    tenant = state.tenant(ORG)
    at = (T0 + timedelta(seconds=offset)).timestamp()
    for flag_key in KEYS:
        plan = compile_flag(state.catalog, tenant, flag_key, at)
        _at_rules(state, plan, at, ctxs)
        _at_clock(state, plan, ctxs)
        if plan.until < math.inf:
            _at_rules(state, plan, plan.until - 1e-3, ctxs)


def test_the_generated_rules_do_match_split_and_miss() -> None:
    """The property above is not vacuous: its strategies reach matches (variant and split) and misses."""
    seen: set[tuple[Reason, bool]] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(rule_sets(), contexts)
    def probe(change: TargetingRulesSet, context: dict[str, Any]) -> None:
        state = state_of([change])
        got = evaluate(state.catalog, state.tenant(ORG), change.flag_key, user_id="u-1", context=context)
        split = got.rule is not None and next(r for r in change.rules if r.id == got.rule).split is not None
        seen.add((got.reason, split))

    probe()
    assert {(Reason.TARGETING_MATCH, False), (Reason.TARGETING_MATCH, True), (Reason.DEFAULT, False)} <= seen


def test_a_rule_compiles_once_per_plan_and_answers_without_evaluate() -> None:
    rules = TargetingRulesSet.model_validate({
        "flag_key": REL, "level": Level.ORG, "org_id": ORG,
        "rules": [{"id": "acme", "conditions": [
            {"attribute": "email", "operator": "matches", "values": [r"@acme\.com$"]},
            {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]},
            {"attribute": "ip", "operator": "in_cidr", "values": ["10.0.0.0/8"]},
        ], "variant": "on"}],
    })  # fmt: skip
    state = state_of([rules])
    plan = compile_flag(state.catalog, state.tenant(ORG), REL, T0.timestamp())
    (target,) = plan.default.targets
    hit = {"email": "x@acme.com", "app_version": "2.3.1", "ip": "10.9.8.7"}
    assert target.holds(attributes(hit, ORG, None, "u-1"))
    assert plan.answer("u-1", None, hit).rule == "acme" and plan.enabled("u-1", None) is False
    assert plan.answer("u-1", None, {**hit, "app_version": "1.9.0"}).reason is Reason.DEFAULT
