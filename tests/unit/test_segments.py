"""Segments in the pure core: their events, the fold, what `in_segment` / `not_in_segment` mean in
`flagcore.evaluate`, and the compiled plans (`flagcore.plans`) answering exactly what `evaluate` answers."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events import (
    CHANGE_TYPES,
    Level,
    SegmentArchived,
    SegmentChanged,
    SegmentDefined,
    TargetingRulesSet,
    decode,
    from_record,
    to_record,
)
from events.targeting import MAX_SEGMENT_VALUES, MAX_VALUES
from flagcore import FlagState, InvalidTransition, Reason, evaluate, fold, transition
from flagcore.plans import compile_flag
from flagcore.targeting import attributes, references
from tests.support.factories import T0, LogBuilder
from tests.support.generated_logs import KEYS, ORG, PLATFORMS, REL, USERS, changes, definitions, state_of
from tests.support.generated_rules import contexts, rule_sets, segment_changes


def _members(*users: str) -> dict[str, Any]:
    return {"attribute": "targeting_key", "operator": "in", "values": list(users)}


def _segment(key: str, *conditions: dict[str, Any], org_id: str | None = None) -> SegmentDefined:
    return SegmentDefined.model_validate(
        {"segment_key": key, "org_id": org_id, "name": key.title(), "conditions": list(conditions)}
    )


def _rules(*conditions: dict[str, Any], org_id: str | None = ORG, flag: str = REL) -> TargetingRulesSet:
    level = Level.SYSTEM if org_id is None else Level.ORG
    rules = [{"id": "seg", "conditions": list(conditions), "variant": "on"}]
    return TargetingRulesSet.model_validate({"flag_key": flag, "level": level, "org_id": org_id, "rules": rules})


def _in(*keys: str) -> dict[str, Any]:
    return {"operator": "in_segment", "values": list(keys)}


def _not_in(*keys: str) -> dict[str, Any]:
    return {"operator": "not_in_segment", "values": list(keys)}


def _on(state: FlagState, user: str, org: str = ORG, **kwargs: Any) -> bool:
    return bool(evaluate(state.catalog, state.tenant(org), REL, user_id=user, **kwargs).value)


# --- the events -------------------------------------------------------------------------------------


def test_segments_have_their_own_streams_system_wide_or_per_org() -> None:
    system = _segment("beta", _members("u-1"))
    mine = _segment("beta", _members("u-1"), org_id=ORG)
    assert (system.stream, system.tenant, system.partition_key) == ("segment/beta", None, "_system")
    assert (mine.stream, mine.tenant, mine.partition_key) == (f"org/{ORG}/segment/beta", ORG, ORG)
    assert {"SegmentDefined", "SegmentChanged", "SegmentArchived"} <= set(CHANGE_TYPES)


def test_a_segment_event_round_trips_through_the_codec_and_cloudevents() -> None:
    builder = LogBuilder()
    (envelope,) = builder.extend([_segment("beta", _members("u-1", "u-2"), org_id=ORG)])
    assert envelope.flag_key is None and envelope.org_id == ORG
    assert decode(envelope.to_json()) == envelope
    record = to_record(envelope)
    assert dict(record.headers)["ce_type"] == b"io.flagstream.SegmentDefined.v1"
    assert from_record(record.value, record.headers) == envelope
    assert envelope.new == {
        "name": "Beta",
        "description": "",
        "conditions": [{"attribute": "targeting_key", "operator": "in", "values": ["u-1", "u-2"],
                        "case_sensitive": True}],
        "archived": False,
    }  # fmt: skip


def test_a_rule_without_segments_is_recorded_as_before() -> None:
    """Rule conditions gained an optional attribute; a plain condition's stored value keeps its keys."""
    change = _rules({"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]})
    value = transition(None, change)
    plain = {"attribute": "email", "operator": "ends_with", "values": ["@acme.com"], "case_sensitive": True}
    assert value == {"rules": [{"id": "seg", "variant": "on", "conditions": [plain]}]}
    segmented = transition(None, _rules(_in("beta")))
    assert segmented is not None
    named = {"operator": "in_segment", "values": ["beta"], "case_sensitive": True}
    assert segmented["rules"][0]["conditions"] == [named]


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ({"attribute": "email", "operator": "in_segment", "values": ["beta"]}, "attribute"),
        ({"operator": "in_segment", "values": []}, "values"),
        ({"operator": "not_in_segment", "values": ["a b"]}, "values"),
        ({"operator": "in_segment", "values": ["beta", "beta"]}, "values"),
        ({"operator": "in_segment", "values": [f"s{i}" for i in range(11)]}, "values"),
        ({"operator": "in_segment", "values": [3]}, "values"),
        ({"operator": "equals", "values": ["x"]}, "attribute"),
    ],
)
def test_a_segment_condition_is_checked_at_write_time(condition: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError, match=where):
        _rules(condition)


def test_a_segment_names_no_segment_and_holds_longer_lists_than_a_rule() -> None:
    with pytest.raises(ValidationError, match="name no segment"):
        _segment("beta", _in("staff"))
    with pytest.raises(ValidationError):
        SegmentDefined.model_validate({"segment_key": "beta", "name": "B", "conditions": []})
    big = [f"u-{i}" for i in range(MAX_VALUES + 1)]
    with pytest.raises(ValidationError):
        _rules(_members(*big))
    assert len(_segment("beta", _members(*big)).conditions[0].values) == MAX_VALUES + 1
    with pytest.raises(ValidationError, match=str(MAX_SEGMENT_VALUES)):
        _segment("beta", _members(*(f"u-{i}" for i in range(MAX_SEGMENT_VALUES + 1))))


def test_a_segment_is_defined_once_changed_while_live_and_archived_for_good() -> None:
    defined = transition(None, _segment("beta", _members("u-1")))
    with pytest.raises(InvalidTransition, match="already defined"):
        transition(defined, _segment("beta", _members("u-2")))
    with pytest.raises(InvalidTransition, match="not defined"):
        transition(None, SegmentArchived(segment_key="beta"))
    changed = transition(defined, SegmentChanged.model_validate(
        {"segment_key": "beta", "name": "Beta 2", "conditions": [_members("u-2")]}))  # fmt: skip
    assert changed is not None and changed["name"] == "Beta 2" and changed["conditions"][0]["values"] == ["u-2"]
    archived = transition(changed, SegmentArchived(segment_key="beta"))
    assert archived == {**changed, "archived": True}
    for after in (SegmentArchived(segment_key="beta"), SegmentChanged.model_validate(
            {"segment_key": "beta", "name": "B", "conditions": [_members("u-3")]})):  # fmt: skip
        with pytest.raises(InvalidTransition, match="archived"):
            transition(archived, after)


# --- the fold and evaluation ------------------------------------------------------------------------------


def test_a_system_segment_serves_every_org_and_an_orgs_only_that_org() -> None:
    state = state_of([
        _segment("beta", _members("u-1")),
        _segment("staff", _members("u-2"), org_id=ORG),
        _rules(_in("beta"), org_id=ORG), _rules(_in("beta"), org_id="other"),
        _rules(_in("staff"), org_id="other", flag="exp.checkout.enabled"),
        _segment("staff", _members("u-2"), org_id="third"),
    ])  # fmt: skip
    assert set(state.catalog.segments) == {"beta"} and set(state.tenant(ORG).segments) == {"staff"}
    assert _on(state, "u-1") and _on(state, "u-1", org="other") and not _on(state, "u-2")
    other = evaluate(state.catalog, state.tenant("other"), "exp.checkout.enabled", user_id="u-2")
    assert other.reason is not Reason.TARGETING_MATCH  # ORG's "staff" is not other's


def test_an_orgs_segment_shadows_a_system_one_for_its_rules_only() -> None:
    state = state_of([
        _segment("beta", _members("u-1")),
        _segment("beta", _members("u-2"), org_id=ORG),
        _rules(_in("beta"), org_id=ORG),
    ])  # fmt: skip
    assert _on(state, "u-2") and not _on(state, "u-1")
    system = state_of([
        _segment("beta", _members("u-1")),
        _segment("beta", _members("u-2"), org_id=ORG),
        _rules(_in("beta"), org_id=None),
    ])  # fmt: skip
    assert _on(system, "u-1") and not _on(system, "u-2")  # the system's rules see the system's segments only


def test_in_segment_is_any_of_them_and_not_in_segment_none_of_them() -> None:
    log = [_segment("beta", _members("u-1")), _segment("staff", _members("u-2"))]
    either = state_of([*log, _rules(_in("beta", "staff"))])
    assert _on(either, "u-1") and _on(either, "u-2") and not _on(either, "bulk-1")
    neither = state_of([*log, _rules(_not_in("beta", "staff"))])
    assert not _on(neither, "u-1") and not _on(neither, "u-2") and _on(neither, "bulk-1")


def test_a_segment_holds_when_all_its_conditions_do_and_reads_the_context() -> None:
    state = state_of([
        _segment("acme-pro", {"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]},
                 {"attribute": "plan", "operator": "equals", "values": ["pro"]}),
        _rules(_in("acme-pro")),
    ])  # fmt: skip
    assert _on(state, "x", context={"email": "a@acme.com", "plan": "pro"})
    assert not _on(state, "x", context={"email": "a@acme.com", "plan": "free"})
    assert not _on(state, "x", context={"plan": "pro"})


@pytest.mark.parametrize("condition", [_in("nowhere"), _not_in("nowhere"), _in("beta", "nowhere")])
def test_a_rule_naming_an_unknown_segment_never_matches(condition: dict[str, Any]) -> None:
    state = state_of([_segment("beta", _members("u-1")), _rules(condition)])
    for user in ("u-1", "u-2"):
        assert evaluate(state.catalog, state.tenant(ORG), REL, user_id=user).reason is Reason.DEFAULT


@pytest.mark.parametrize("condition", [_in("beta"), _not_in("beta")])
def test_a_rule_naming_an_archived_segment_never_matches(condition: dict[str, Any]) -> None:
    live = state_of([_segment("beta", _members("u-1")), _rules(condition)])
    assert _on(live, "u-1") or _on(live, "u-2")
    state = state_of([_segment("beta", _members("u-1")), _rules(condition), SegmentArchived(segment_key="beta")])
    assert state.catalog.segments["beta"].archived
    for user in ("u-1", "u-2"):
        assert evaluate(state.catalog, state.tenant(ORG), REL, user_id=user).reason is Reason.DEFAULT


def test_a_segment_change_takes_effect_in_evaluate_and_in_a_plan_compiled_after_it() -> None:
    builder = LogBuilder()
    builder.extend([*definitions(), _segment("beta", _members("u-1")), _rules(_in("beta"))])
    before = fold(builder.events)
    builder.append(SegmentChanged.model_validate({"segment_key": "beta", "name": "B", "conditions": [_members("u-2")]}))
    after = fold(builder.events)
    assert _on(before, "u-1") and not _on(after, "u-1") and _on(after, "u-2")
    plan = compile_flag(after.catalog, after.tenant(ORG), REL, time.time())
    assert plan.enabled("u-2", None) is True and plan.enabled("u-1", None) is False


def test_a_thousand_member_segment_is_a_set_lookup_in_the_compiled_plan() -> None:
    members = [f"member-{i}" for i in range(1000)]
    state = state_of([_segment("big", _members(*members)), _rules(_in("big"))])
    plan = compile_flag(state.catalog, state.tenant(ORG), REL, time.time())
    assert plan.enabled("member-999", None) is True and plan.enabled("stranger", None) is False
    rule = plan.default
    attrs = attributes(None, ORG, None, "member-999")
    started = time.perf_counter()
    for _ in range(20_000):
        rule.answer("member-999", attrs)
    per_call = (time.perf_counter() - started) / 20_000
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per answer: not a set lookup"  # a scan of 1000 is far slower


def test_references_name_each_segment_once_in_order() -> None:
    state = state_of([_rules(_in("b", "a"), _not_in("a", "c"))])
    (rule,) = state.tenant(ORG).rules[REL].rules
    assert references(rule) == ("b", "a", "c")


# --- plans == evaluate, and snapshots, on generated logs with segments ----------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(changes, max_size=6),
    st.lists(rule_sets(), min_size=1, max_size=5),
    st.lists(segment_changes(), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
    st.lists(contexts, min_size=1, max_size=3),
)
def test_compiled_plans_with_segments_answer_what_evaluate_answers(
    settings_log: list, rules_log: list, segments_log: list, rnd: Any, ctxs: list[dict[str, Any]]
) -> None:
    log = [*settings_log, *rules_log, *segments_log]
    rnd.shuffle(log)  # segments defined before and after the rules that name them
    state = state_of(log)
    tenant = state.tenant(ORG)
    at = (T0 + timedelta(days=400)).timestamp()  # past every generated schedule
    now = datetime.fromtimestamp(at, UTC)
    for flag_key in KEYS:
        plan = compile_flag(state.catalog, tenant, flag_key, at)
        for user in USERS[:6]:
            if user in plan.users:
                continue
            for platform in PLATFORMS:
                rule = plan.rule(platform)
                for context in ctxs:
                    expected = evaluate(
                        state.catalog, tenant, flag_key, platform=platform, user_id=user, now=now, context=context
                    )
                    got = rule.answer(user, attributes(context, ORG, platform, user))
                    assert got == replace(expected, bucket=None), (flag_key, user, platform, context)
                bare = evaluate(state.catalog, tenant, flag_key, platform=platform, user_id=user, now=now)
                got_value = rule.enabled(user, platform)
                assert type(got_value) is type(bare.value) and got_value == bare.value


def test_the_generated_segments_both_admit_and_refuse() -> None:
    """The property above is not vacuous: generated rules match through a segment, and miss through one."""
    seen: set[bool] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(segment_changes(), min_size=1, max_size=4), st.sampled_from(USERS[:6]), contexts)
    def probe(segments_log: list, user: str | None, context: dict[str, Any]) -> None:
        state = state_of([*segments_log, _rules(_in("beta")), _rules(_in("staff"), org_id=None)])
        got = evaluate(state.catalog, state.tenant(ORG), REL, user_id=user, context=context)
        seen.add(got.reason is Reason.TARGETING_MATCH)

    probe()
    assert seen == {True, False}


def test_a_snapshot_keeps_segments_and_restores_them() -> None:
    from flagcore.history import restore, scope_of_stream, snapshot

    state = state_of([_segment("beta", _members("u-1")), _segment("staff", _members("u-2"), org_id=ORG),
                      SegmentArchived(segment_key="beta")])  # fmt: skip
    assert scope_of_stream("segment/beta") == "" and scope_of_stream(f"org/{ORG}/segment/staff") == ORG
    assert scope_of_stream("subscription/x") is None and scope_of_stream(f"org/{ORG}/subscription/x") is None
    parts = {s: json.loads(json.dumps(snapshot(state, s).doc)) for s in ("", ORG)}
    restored = restore(parts)
    assert restored.catalog.segments == state.catalog.segments
    assert restored.tenant(ORG).segments == state.tenant(ORG).segments


# --- the command side, pure: which flags use a segment, and what a change writes ------------------------------


def test_which_rule_lists_name_a_segment_follows_the_scope_that_resolves_it() -> None:
    from services.command.segments import RuleHead, uses

    def head(org: str | None, flag: str, *named: str) -> RuleHead:
        rules = [{"id": f"r-{k}", "conditions": [_in(k)]} for k in named]
        rules.append({"id": "plain", "conditions": [{"attribute": "plan", "operator": "equals", "values": ["beta"]}]})
        return RuleHead(org, flag, {"rules": rules})

    heads = [head(None, "b.flag", "beta"), head("acme", "a.flag", "beta", "staff"), head("own", "c.flag", "beta"),
             head("acme", "d.flag"), RuleHead("acme", "e.flag", None)]  # fmt: skip
    system = uses(None, "beta", heads, shadowed=["own"])
    assert [(u.flag_key, u.org_id, u.rules) for u in system] == [
        ("a.flag", "acme", ("r-beta",)),
        ("b.flag", None, ("r-beta",)),
    ]
    assert [(u.flag_key, u.org_id) for u in uses("own", "beta", heads)] == [("c.flag", "own")]
    assert uses("acme", "plan", heads) == []  # an attribute's value is not a segment key
    assert "a.flag (acme's rules: r-beta)" in str(system[0])


def test_a_change_carries_the_full_new_set_and_nothing_when_it_changes_nothing() -> None:
    from flagcore import StreamHead
    from services.command.segments import ChangeSegmentRequest, changed, view_of

    value = transition(None, _segment("beta", _members("u-1")))
    current = view_of(None, "beta", StreamHead(1, "0" * 64, value))
    assert current is not None and current.stream == "segment/beta"
    assert changed(current, ChangeSegmentRequest(name="Beta", reason="r")) is None
    renamed = changed(current, ChangeSegmentRequest(name="Beta 2", reason="r"))
    assert renamed is not None and renamed.conditions == _segment("beta", _members("u-1")).conditions
    assert view_of(None, "beta", StreamHead(0, "0" * 64, None)) is None
