"""OFREP plans (`services.query.plans`) against `flagcore.evaluate` rendered by `services.query.ofrep`, byte for byte.

Generated logs of changes at every level (rollouts, schedules, kill switches, archival, experiments with arms),
asked for many users and every platform at instants around the scheduled steps: a plan must give the very bytes
the use cases give, for as long as it says it is good, and a plan made at its end must give the new ones.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from events import KillSwitchEngaged, Level, OrgOverrideSet, PlatformOverrideSet, RolloutPercentageSet
from flagcore import FlagState, evaluate, evaluate_all
from services.query import ofrep
from services.query.documents import CompiledCatalog, CompiledOrg
from services.query.plans import MAX_BULK_ANSWERS, OrgPlans, Plans, bulk_body
from tests.support.factories import T0
from tests.support.generated_logs import KEYS, OPS, ORG, PLATFORMS, REL, USERS, changes, state_of

STREAMS = [{"type": "sse", "endpoint": {"requestUri": f"/ofrep/v1/changes?org={ORG}"}}]  # the org's change stream


def _plans(state: FlagState) -> OrgPlans:
    tenant = state.tenant(ORG)
    return OrgPlans(CompiledCatalog(state.catalog, b""), CompiledOrg(ORG, dict(tenant.org), dict(tenant.platform)))


def _expected(state: FlagState, flag_key: str, platform: str | None, user: str | None, at: float) -> bytes:
    now = datetime.fromtimestamp(at, UTC)
    return ofrep.render(evaluate(state.catalog, state.tenant(ORG), flag_key, platform=platform, user_id=user, now=now))


def _check_flag(state: FlagState, plans: OrgPlans, flag_key: str, at: float) -> None:
    plan = plans.flag(flag_key, at)
    assert plan is not None and plan.since <= at < plan.until
    overridden = {u for u, f in state.tenant(ORG).user if f == flag_key}
    for user in USERS:
        if user in overridden:
            continue  # the hot path leaves a user's own override to the use cases
        for platform in PLATFORMS:
            answer = plan.answer(platform, user)
            assert (answer.status, answer.etag) == (200, None)
            assert answer.body == _expected(state, flag_key, platform, user, at), (flag_key, user, platform)


@settings(max_examples=250, deadline=None)
@given(st.lists(changes, max_size=10), st.integers(0, 100))
def test_a_plan_answers_what_the_use_cases_answer_until_it_says_it_ends(log: list, offset: int) -> None:
    state = state_of(log)
    plans = _plans(state)
    at = (T0 + timedelta(seconds=offset)).timestamp()
    for flag_key in KEYS:
        _check_flag(state, plans, flag_key, at)
        plan = plans.flag(flag_key, at)
        assert plan is not None
        if plan.until < math.inf:
            last = plan.until - 1e-3  # still good just before its end: the same plan, flagcore's answers then
            assert plans.flag(flag_key, last) is plan
            _check_flag(state, plans, flag_key, last)
            _check_flag(state, plans, flag_key, plan.until)  # at the step: a plan made again, the step applied
            assert plans.flag(flag_key, plan.until) is not plan


@settings(max_examples=150, deadline=None)
@given(st.lists(changes, max_size=10), st.integers(0, 100))
def test_the_bulk_plan_answers_the_use_cases_bulk_answer_with_its_etag(log: list, offset: int) -> None:
    state = state_of(log)
    plans = _plans(state)
    at = (T0 + timedelta(seconds=offset)).timestamp()
    now = datetime.fromtimestamp(at, UTC)
    tenant = state.tenant(ORG)
    users_with_overrides = {u for u, _ in tenant.user}
    for user in USERS:
        if user in users_with_overrides:
            continue
        for platform in PLATFORMS:
            results = evaluate_all(state.catalog, tenant, platform=platform, user_id=user, now=now)
            flags = [orjson.loads(ofrep.render(e)) for e in results]
            expected = ofrep.bulk_answer(orjson.dumps({"flags": flags, "eventStreams": STREAMS}))
            assert plans.bulk(platform, at).answer(user) == expected
    assert plans.keys == tuple(sorted(state.catalog.definitions))


def test_rendered_answers_compose_into_the_bulk_bytes() -> None:
    state = state_of([OrgOverrideSet(flag_key=REL, org_id=ORG, enabled=True)])
    results = evaluate_all(state.catalog, state.tenant(ORG), user_id="u-9", now=T0)
    flags = [ofrep._success(e) for e in results]
    whole = orjson.dumps({"flags": flags, "eventStreams": STREAMS})  # what the use cases serialise
    assert bulk_body((ofrep.render(e) for e in results), ORG) == whole
    assert bulk_body([], ORG) == orjson.dumps({"flags": [], "eventStreams": STREAMS})
    assert bulk_body([]) == orjson.dumps({"flags": []})


def test_a_kill_switch_answers_disabled_for_everyone_even_over_overrides() -> None:
    state = state_of(
        [
            PlatformOverrideSet(flag_key=OPS, org_id=ORG, platform="meta", enabled=True),
            RolloutPercentageSet(flag_key=OPS, level=Level.ORG, org_id=ORG, percentage=50),
            KillSwitchEngaged(flag_key=OPS),
        ]
    )
    plans = _plans(state)
    at = T0.timestamp()
    for platform in PLATFORMS:
        body = orjson.loads(plans.flag(OPS, at).answer(platform, "u-5").body)  # type: ignore[union-attr]
        assert (body["value"], body["reason"], body["metadata"]["killSwitch"]) == (False, "DISABLED", True)
    _check_flag(state, plans, OPS, at)


def test_unknown_and_malformed_keys_have_no_plan() -> None:
    plans = _plans(state_of([]))
    assert plans.flag("no.such.flag", T0.timestamp()) is None
    assert plans.flag("Not A Key", T0.timestamp()) is None


def test_the_bulk_answers_kept_per_outcome_are_bounded() -> None:
    state = state_of([RolloutPercentageSet(flag_key=key, level=Level.ORG, org_id=ORG, percentage=50) for key in KEYS])
    bulk = _plans(state).bulk(None, T0.timestamp())
    for i in range(MAX_BULK_ANSWERS * 3):
        bulk.answer(f"user-{i}")
    assert len(bulk._answers) <= MAX_BULK_ANSWERS


def test_plans_are_made_again_for_other_documents() -> None:
    state = state_of([])
    tenant = state.tenant(ORG)
    catalog = CompiledCatalog(state.catalog, b"")
    org = CompiledOrg(ORG, dict(tenant.org), dict(tenant.platform))
    plans = Plans(service=None, max_orgs=2)  # type: ignore[arg-type]  # the service is only what it belongs to
    first = plans.of(catalog, org)
    assert plans.of(catalog, org) is first
    assert plans.of(CompiledCatalog(state.catalog, b""), org) is not first  # a catalogue stored again
    assert plans.of(catalog, CompiledOrg(ORG, {}, {})) is not plans.of(catalog, org)


def test_the_bulk_answers_kept_by_a_worker_are_bounded_across_orgs() -> None:
    state = state_of([RolloutPercentageSet(flag_key=key, level=Level.SYSTEM, percentage=50) for key in KEYS])
    catalog = CompiledCatalog(state.catalog, b"")
    plans = Plans(service=None, max_kept_bulk=20)  # type: ignore[arg-type]
    at = T0.timestamp()
    for i in range(20):
        org = CompiledOrg(f"org-{i}", {}, {})
        bulk = plans.of(catalog, org).bulk(None, at)
        for j in range(30):  # three splits: at most 8 different answers per org
            results = evaluate_all(state.catalog, state.tenant(org.org_id), user_id=f"u-{j}", now=T0)
            streams = [{"type": "sse", "endpoint": {"requestUri": f"/ofrep/v1/changes?org={org.org_id}"}}]
            flags = [ofrep._success(e) for e in results]
            expected = ofrep.bulk_answer(orjson.dumps({"flags": flags, "eventStreams": streams}))
            assert bulk.answer(f"u-{j}") == expected
        assert plans._kept[0] <= 20 + 8  # let go once past the budget, when the next org is asked for
    assert len(plans._orgs) < 20
