"""OFREP plans with targeting rules (`services.query.plans`) against `flagcore.evaluate` with the same context,
rendered by `services.query.ofrep`, byte for byte: one flag's answers and the bulk answer with its ETag.

Generated settings at every level and generated rule lists at the system level and for the org, interleaved
(tests/support/generated_rules.py), asked for many users, every platform and contexts that match, split and
miss: the hot path's answer for a context must be the use cases' answer for it, and a plan with no rules in
play must answer as before (no context read).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from flagcore import FlagState, evaluate, evaluate_all
from services.query import ofrep
from services.query.changes_stream import event_streams
from services.query.documents import CompiledCatalog, CompiledOrg
from services.query.plans import OrgPlans
from tests.support.factories import T0
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, USERS, changes, state_of
from tests.support.generated_rules import contexts, rule_sets


def _plans(state: FlagState) -> OrgPlans:
    tenant = state.tenant(ORG)
    org = CompiledOrg(ORG, dict(tenant.org), dict(tenant.platform), dict(tenant.rules))
    return OrgPlans(CompiledCatalog(state.catalog, b""), org)


STREAMS = orjson.loads(event_streams(ORG))  # the bulk answer's change stream (`services.query.changes_stream`)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(changes, max_size=8),
    st.lists(rule_sets(), min_size=1, max_size=6),
    st.permutations(range(14)),
    st.lists(contexts, min_size=1, max_size=3),
    st.integers(0, 100),
)
def test_plans_with_rules_answer_what_the_use_cases_answer_for_each_context(
    settings_log: list, rules_log: list, order: list[int], ctxs: list[dict[str, Any]], offset: int
) -> None:
    both = [*settings_log, *rules_log]
    state = state_of([both[i] for i in order if i < len(both)])  # rules and settings interleaved
    plans = _plans(state)
    at = (T0 + timedelta(seconds=offset)).timestamp()
    now = datetime.fromtimestamp(at, UTC)
    tenant = state.tenant(ORG)
    overridden = {u for u, _ in tenant.user}
    for user in USERS:
        if user in overridden:
            continue  # the hot path leaves a user's own override to the use cases
        for platform in PLATFORMS:
            for context in [*ctxs, None]:
                for key in KEYS:
                    plan = plans.flag(key, at)
                    assert plan is not None and plan.since <= at < plan.until
                    e = evaluate(state.catalog, tenant, key, platform=platform, user_id=user, now=now, context=context)
                    assert plan.answer(platform, user, context).body == ofrep.render(e), (key, user, platform, context)
                results = evaluate_all(state.catalog, tenant, platform=platform, user_id=user, now=now, context=context)
                flags = [orjson.loads(ofrep.render(e)) for e in results]
                expected = ofrep.bulk_answer(orjson.dumps({"flags": flags, "eventStreams": STREAMS}))
                assert plans.bulk(platform, at).answer(user, context) == expected, (user, platform, context)
