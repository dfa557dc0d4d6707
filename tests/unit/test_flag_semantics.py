"""Flag semantics in the pure core: schedules at their boundaries, kill switches, variants, upcasting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from yggdrasil_engine.engine import UnleashEngine

from events import (
    GENESIS_HASH,
    FlagDefined,
    FlagKind,
    FlagUpdated,
    KillSwitchEngaged,
    KillSwitchReleased,
    Level,
    OrgOverrideSet,
    RolloutPercentageSet,
    ScheduledSettingCancelled,
    SettingScheduled,
    SystemDefaultSet,
    UserOverrideSet,
    Variant,
    canonical_json,
    decode,
    hash_of,
)
from flagcore import (
    Catalog,
    Definition,
    FlagState,
    InvalidTransition,
    Reason,
    TenantRules,
    evaluate,
    evaluate_all,
    fold,
    select_variant,
    stale_flags,
    transition,
)
from flagcore import Variant as Arm
from flagcore.plans import compile_flag
from tests.support.factories import T0, LogBuilder

KEY = "ai.insights.enabled"
OPS = "platform.meta.enabled"
EXP = "campaign.checkout.enabled"
T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def schedule(at: datetime, *, level: Level = Level.ORG, **values) -> SettingScheduled:
    org = None if level is Level.SYSTEM else "acme"
    return SettingScheduled(flag_key=KEY, level=level, org_id=org, effective_at=at, **values)


def state_of(*changes) -> FlagState:
    log = LogBuilder()
    log.extend([FlagDefined(flag_key=KEY, group="ai"), *changes])
    return fold(log.events)


def at(state: FlagState, now: datetime, *, user: str | None = None):
    return evaluate(state.catalog, state.tenant("acme"), KEY, user_id=user, now=now)


# --- schedules -------------------------------------------------------------------------


def test_enable_at_t_takes_effect_exactly_at_t() -> None:
    state = state_of(SystemDefaultSet(flag_key=KEY, enabled=False), schedule(T, level=Level.SYSTEM, enabled=True))
    assert at(state, T - TICK).value is False
    assert at(state, T).value is True
    assert at(state, T + TICK).value is True


def test_disable_at_t_takes_effect_exactly_at_t() -> None:
    state = state_of(OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=True), schedule(T, enabled=False))
    assert (at(state, T - TICK).value, at(state, T).value) == (True, False)
    assert at(state, T).level is Level.ORG


def test_rollout_steps_10_50_100_each_at_their_instant() -> None:
    steps = [(T, 10), (T + timedelta(days=1), 50), (T + timedelta(days=2), 100)]
    state = state_of(
        OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=True),
        RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id="acme", percentage=0),
        *(schedule(when, rollout_percentage=pct) for when, pct in steps),
    )
    assert at(state, T - TICK).rollout_percentage == 0
    for when, pct in steps:
        assert at(state, when - TICK, user="u1").rollout_percentage != pct
        assert at(state, when, user="u1").rollout_percentage == pct
    users = [f"u{i}" for i in range(400)]
    on = [sum(at(state, when, user=u).value for u in users) for when, _ in steps]
    assert on[0] < on[1] < on[2] == len(users)


def test_a_step_keeps_what_it_does_not_set() -> None:
    state = state_of(
        OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=False),
        RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id="acme", percentage=30),
        schedule(T, enabled=True),
    )
    answer = at(state, T, user="u7")
    assert (answer.rollout_percentage, answer.reason) == (30, Reason.SPLIT)


def test_a_change_made_after_a_step_wins_over_it() -> None:
    log = LogBuilder(start=T - timedelta(seconds=5))
    log.extend([FlagDefined(flag_key=KEY, group="ai"), schedule(T, enabled=True)])
    log.clock = T + timedelta(hours=1)  # the step has passed; then someone switches the org off
    log.append(OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=False))
    state = fold(log.events)
    assert at(state, T + timedelta(hours=2)).value is False
    assert state.tenant("acme").org[KEY].schedule == ()  # the due step was folded in, not kept


def test_a_scheduled_only_override_says_nothing_before_its_instant() -> None:
    state = state_of(SystemDefaultSet(flag_key=KEY, enabled=True), schedule(T, enabled=False))
    before = at(state, T - TICK)
    assert (before.value, before.level) == (True, Level.SYSTEM)
    assert (at(state, T).value, at(state, T).level) == (False, Level.ORG)


def test_cancelling_a_step_and_rescheduling_the_same_instant() -> None:
    state = state_of(schedule(T, enabled=True), schedule(T, enabled=False))
    assert [s.enabled for s in state.tenant("acme").org[KEY].schedule] == [False]
    state = state_of(
        OrgOverrideSet(flag_key=KEY, org_id="acme", enabled=False),
        schedule(T, enabled=True),
        ScheduledSettingCancelled(flag_key=KEY, level=Level.ORG, org_id="acme", effective_at=T),
    )
    assert at(state, T + timedelta(days=1)).value is False
    with pytest.raises(InvalidTransition, match="nothing is scheduled"):
        transition(None, ScheduledSettingCancelled(flag_key=KEY, level=Level.ORG, org_id="acme", effective_at=T))


def test_a_step_must_be_later_than_the_event() -> None:
    with pytest.raises(InvalidTransition, match="not in the future"):
        transition(None, schedule(T, enabled=True), at=T)
    with pytest.raises(ValidationError, match="enabled and/or rollout_percentage"):
        schedule(T)


def test_old_values_without_a_schedule_are_reproduced_byte_for_byte() -> None:
    value = transition(
        {"enabled": True, "rollout_percentage": None},
        RolloutPercentageSet(flag_key=KEY, level=Level.ORG, org_id="acme", percentage=20),
        at=T,
    )
    assert value == {"enabled": True, "rollout_percentage": 20}


def test_evaluate_all_reads_one_now_for_every_flag() -> None:
    state = state_of(schedule(T, level=Level.SYSTEM, enabled=True))
    assert [e.value for e in evaluate_all(state.catalog, state.tenant("acme"), now=T)] == [True]
    assert [e.value for e in evaluate_all(state.catalog, state.tenant("acme"), now=T - TICK)] == [False]


instants = st.integers(1, 40).map(lambda m: T0 + timedelta(minutes=m))
scheduling = st.one_of(
    st.builds(schedule, instants, enabled=st.booleans()),
    st.builds(schedule, instants, rollout_percentage=st.integers(0, 100)),
    st.builds(schedule, instants, level=st.just(Level.SYSTEM), enabled=st.booleans()),
    st.builds(
        ScheduledSettingCancelled,
        flag_key=st.just(KEY),
        level=st.just(Level.ORG),
        org_id=st.just("acme"),
        effective_at=instants,
    ),
    st.builds(OrgOverrideSet, flag_key=st.just(KEY), org_id=st.just("acme"), enabled=st.booleans()),
    st.builds(SystemDefaultSet, flag_key=st.just(KEY), enabled=st.booleans()),
)


def scheduled_log(changes: list) -> list:
    log = LogBuilder()
    log.append(FlagDefined(flag_key=KEY, group="ai"))
    for change in changes:
        log.clock += timedelta(seconds=53)  # events interleave with the steps' instants
        log.append(change)
    return log.events


@settings(max_examples=150, deadline=None)
@given(st.lists(scheduling, max_size=30))
def test_fold_laws_hold_with_schedules(changes) -> None:
    log = scheduled_log(changes)
    once = fold(log)
    assert fold(log, fold(log)) == once
    assert fold([*log, *log[::2]]) == once
    replay = FlagState()
    for envelope in log:
        head = replay.heads.get(envelope.stream)
        assert (head.value if head else None) == envelope.previous
        replay.apply(envelope)
        assert replay.heads[envelope.stream].value == envelope.new


@settings(max_examples=150, deadline=None)
@given(st.lists(scheduling, max_size=30), st.integers(0, 3000))
def test_evaluating_later_equals_folding_the_due_steps_in(changes, seconds) -> None:
    """What evaluation infers from a schedule is what an event made at `now` would have recorded."""
    log = scheduled_log(changes)
    now = max(T0 + timedelta(seconds=seconds), log[-1].occurred_at)
    state = fold(log)
    caught_up = FlagState(state.catalog, {}, {})
    for org_id, rules in state.tenants.items():
        caught_up.tenants[org_id] = TenantRules(org_id, {k: s.in_force(now) for k, s in rules.org.items()})
    system = {k: s.in_force(now) for k, s in state.catalog.system.items()}
    caught_up.catalog = Catalog(state.catalog.definitions, system)
    expected = evaluate(caught_up.catalog, caught_up.tenant("acme"), KEY, now=now)
    actual = evaluate(state.catalog, state.tenant("acme"), KEY, now=now)
    assert (actual.value, actual.level, actual.rollout_percentage) == (
        expected.value,
        expected.level,
        expected.rollout_percentage,
    )


# --- kill switch ------------------------------------------------------------------------------


def ops_state(*changes) -> FlagState:
    log = LogBuilder()
    log.extend([FlagDefined(flag_key=OPS, group="platform", kind=FlagKind.OPS), *changes])
    return fold(log.events)


def test_kill_switch_wins_over_every_level_and_can_be_released() -> None:
    on_everywhere = [
        SystemDefaultSet(flag_key=OPS, enabled=True),
        OrgOverrideSet(flag_key=OPS, org_id="acme", enabled=True),
        UserOverrideSet(flag_key=OPS, org_id="acme", user_id="u1", enabled=True),
    ]
    killed = ops_state(*on_everywhere, KillSwitchEngaged(flag_key=OPS))
    answer = evaluate(killed.catalog, killed.tenant("acme"), OPS, user_id="u1", platform="meta")
    assert (answer.value, answer.reason, answer.killed, answer.variant) == (False, Reason.DISABLED, True, "off")
    assert "kill switch" in answer.explain()
    revived = ops_state(*on_everywhere, KillSwitchEngaged(flag_key=OPS), KillSwitchReleased(flag_key=OPS))
    answer = evaluate(revived.catalog, revived.tenant("acme"), OPS, user_id="u1")
    assert (answer.value, answer.level, answer.killed) == (True, Level.USER, False)


def test_only_an_ops_flag_has_a_kill_switch() -> None:
    with pytest.raises(InvalidTransition, match="only ops flags"):
        transition(
            {"kind": "release", "description": "", "owner": None, "group": "ai", "archived": False},
            KillSwitchEngaged(flag_key=KEY),
        )


def test_a_killed_flag_stays_ops_and_stays_killed_across_updates() -> None:
    killed = transition(
        {"kind": "ops", "description": "", "owner": None, "group": "p", "archived": False},
        KillSwitchEngaged(flag_key=OPS),
    )
    with pytest.raises(InvalidTransition, match="stays an ops flag"):
        transition(killed, FlagUpdated(flag_key=OPS, kind=FlagKind.RELEASE, group="p"))
    assert transition(killed, FlagUpdated(flag_key=OPS, kind=FlagKind.OPS, group="p", owner="sre"))["killed"]


# --- experiments ---------------------------------------------------------------------------------

ARMS = (Arm("a", 200), Arm("b", 300), Arm("c", 500))
# Computed by Unleash's own engine (yggdrasil 2.0.0, as UnleashClient 6.9 ships it) for a flag named
# `exp.checkout` with these weights and userId stickiness; see test_matches_unleash_engine below.
UNLEASH_VECTORS = {
    "user-0": "b",
    "user-1": "b",
    "user-2": "c",
    "user-3": "c",
    "user-4": "c",
    "user-5": "b",
    "user-6": "c",
    "user-7": "a",
    "user-8": "a",
    "user-9": "b",
}
# Unleash client-specification 08-variants ("Feature.Variants.C", three arms of 33): under the
# current seed, yggdrasil answers variant2 for users 315, 320 and 729.
SPEC_C = (Arm("variant1", 33), Arm("variant2", 33), Arm("variant3", 33))


@pytest.mark.parametrize(("user", "variant"), sorted(UNLEASH_VECTORS.items()))
def test_variant_vectors_match_unleash(user, variant) -> None:
    assert select_variant("exp.checkout", user, ARMS).name == variant


@pytest.mark.parametrize("user", ["315", "320", "729"])
def test_client_specification_feature_c_under_the_current_seed(user) -> None:
    assert select_variant("Feature.Variants.C", user, SPEC_C).name == "variant2"


# Keys as an Unleash or flagd export writes them (case, `_`, `-`, `.`, the longest allowed): the key is the
# bucketing group exactly as written, so a migrated flag keeps its users' buckets and arms.
MIGRATED_KEYS = ["exp.checkout", "Feature.A", "feature.a", "new_checkout", "Checkout-V2_beta", 
                 "K" * 200 + "." + "z" * 54]


@pytest.mark.parametrize("key", MIGRATED_KEYS, ids=lambda k: k[:20])
def test_matches_unleash_engine(key: str) -> None:
    engine = UnleashEngine()
    variants = [{"name": a.name, "weight": a.weight, "stickiness": "default"} for a in ARMS]
    feature = {"name": key, "enabled": True, "strategies": [{"name": "default"}], "variants": variants}
    engine.take_state(json.dumps({"version": 1, "features": [feature]}))
    for i in range(500):
        user = f"user-{i}"
        assert select_variant(key, user, ARMS).name == engine.get_variant(key, {"userId": user}).variant.name


@pytest.mark.parametrize("key", MIGRATED_KEYS, ids=lambda k: k[:20])
def test_a_rollout_buckets_users_as_unleash_gradual_rollout_does(key: str) -> None:
    """A system-level 30% rollout, evaluated and compiled, against Unleash's flexibleRollout (group = the key)."""
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key=key, group="migrated"),
        SystemDefaultSet(flag_key=key, enabled=True),
        RolloutPercentageSet(flag_key=key, level=Level.SYSTEM, percentage=30),
    ])  # fmt: skip
    state = fold(log.events)
    engine = UnleashEngine()
    rollout = {"name": "flexibleRollout", "parameters": {"rollout": "30", "stickiness": "userId", "groupId": key}}
    engine.take_state(json.dumps({"version": 1, "features": [{"name": key, "enabled": True, "strategies": [rollout]}]}))
    plan = compile_flag(state.catalog, state.tenant("acme"), key, T.timestamp())
    users = [f"user-{i}" for i in range(1000)]
    unleash = [engine.is_enabled(key, {"userId": u}).is_enabled for u in users]
    assert [evaluate(state.catalog, state.tenant("acme"), key, user_id=u).value for u in users] == unleash
    assert [plan.enabled(u, None) for u in users] == unleash
    assert 200 < sum(unleash) < 400


def experiment_state(*changes) -> FlagState:
    log = LogBuilder()
    arms = tuple(Variant(name=a.name, weight=a.weight) for a in ARMS)
    log.extend([FlagDefined(flag_key=EXP, group="campaign", kind=FlagKind.EXPERIMENT, variants=arms), *changes])
    return fold(log.events)


def test_variant_is_in_every_answer_and_sticky() -> None:
    state = experiment_state(SystemDefaultSet(flag_key=EXP, enabled=True))
    answers = [evaluate(state.catalog, state.tenant("acme"), EXP, user_id=f"u{i}") for i in range(1000)]
    counts = {name: sum(a.variant == name for a in answers) for name in "abc"}
    assert 150 < counts["a"] < 250 and 250 < counts["b"] < 350 and 450 < counts["c"] < 550
    again = evaluate(state.catalog, state.tenant("acme"), EXP, user_id="u42")
    assert again.variant == answers[42].variant
    off = experiment_state(SystemDefaultSet(flag_key=EXP, enabled=False))
    assert evaluate(off.catalog, off.tenant("acme"), EXP, user_id="u1").variant == "off"


def test_boolean_flags_answer_on_or_off_and_errors_no_variant() -> None:
    state = state_of(SystemDefaultSet(flag_key=KEY, enabled=True))
    assert evaluate(state.catalog, state.tenant("acme"), KEY).variant == "on"
    assert evaluate(state.catalog, state.tenant("acme"), "no.such").variant is None
    unset = Catalog({KEY: Definition(KEY, FlagKind.RELEASE, "", None, "ai")})
    assert evaluate(unset, TenantRules("a"), KEY).variant == "off"


@pytest.mark.parametrize(
    ("kind", "arms", "message"),
    [
        (FlagKind.RELEASE, (Variant(name="a", weight=1000),), "only an experiment"),
        (FlagKind.EXPERIMENT, (Variant(name="a", weight=500), Variant(name="b", weight=400)), "sum to 1000"),
        (FlagKind.EXPERIMENT, (Variant(name="a", weight=500), Variant(name="a", weight=500)), "distinct"),
    ],
)
def test_variants_are_validated(kind, arms, message) -> None:
    with pytest.raises(ValidationError, match=message):
        FlagDefined(flag_key=EXP, group="x", kind=kind, variants=arms)


# --- upcasting ------------------------------------------------------------------------------------------


def envelope_fields(event_type: str, version: int, data: dict, stream_version: int = 1) -> dict:
    fields = {
        "event_id": "0b7e6f1c-3a55-4a0e-9a53-2f1b1f6f0c1" + str(stream_version),
        "type": event_type,
        "schema_version": version,
        "stream": f"flag/{KEY}",
        "version": stream_version,
        "sequence": stream_version,
        "occurred_at": "2025-11-20T10:00:00Z",
        "org_id": None,
        "flag_key": KEY,
        "actor": {"id": "u1", "name": "ops"},
        "reason": "seed",
        "previous": None,
        "new": None,
        "data": {"type": event_type, "flag_key": KEY, **data},
        "prev_hash": GENESIS_HASH,
    }
    fields["hash"] = hash_of(fields)
    return fields


def test_flag_defined_v2_and_flag_updated_v1_upcast_without_variants_or_expiry() -> None:
    defined = decode(canonical_json(envelope_fields("FlagDefined", 2, {"kind": "ops", "owner": "sre", "group": "ai"})))
    assert defined.data == FlagDefined(flag_key=KEY, kind=FlagKind.OPS, owner="sre", group="ai")
    assert (defined.data.variants, defined.data.expires_at) == ((), None)
    updated = decode(
        canonical_json(
            envelope_fields("FlagUpdated", 1, {"kind": "release", "description": "d", "owner": None, "group": "ai"}, 2)
        )
    )
    assert updated.data.variants == () and updated.data.expires_at is None


# --- lifecycle ---------------------------------------------------------------------------------------------


def lifecycle_state() -> tuple[FlagState, datetime]:
    log = LogBuilder()
    log.extend(
        [
            FlagDefined(flag_key="old.on", group="old", owner="team-a"),
            SystemDefaultSet(flag_key="old.on", enabled=True),
            FlagDefined(flag_key="old.split", group="old"),
            SystemDefaultSet(flag_key="old.split", enabled=True),
            RolloutPercentageSet(flag_key="old.split", level=Level.ORG, org_id="acme", percentage=40),
            FlagDefined(flag_key="old.mixed", group="old"),
            SystemDefaultSet(flag_key="old.mixed", enabled=False),
            OrgOverrideSet(flag_key="old.mixed", org_id="acme", enabled=True),
            FlagDefined(flag_key="old.off", group="old"),
            FlagDefined(flag_key="due.soon", group="due", expires_at=T0 + timedelta(days=5)),
        ]
    )
    log.clock = T0 + timedelta(days=60)
    log.extend([FlagDefined(flag_key="fresh.on", group="fresh"), SystemDefaultSet(flag_key="fresh.on", enabled=True)])
    return fold(log.events), log.clock


def test_stale_report_lists_expired_and_long_unchanged_uniform_flags() -> None:
    state, now = lifecycle_state()
    report = {f.key: f for f in stale_flags(state, now=now, days=30)}
    assert sorted(report) == ["due.soon", "old.off", "old.on"]
    assert (report["due.soon"].reason, report["old.on"].reason) == ("expired", "unchanged")
    assert (report["old.on"].value, report["old.on"].owner, report["old.off"].value) == (True, "team-a", False)
    assert stale_flags(state, now=now, days=90) == [report["due.soon"]]


@settings(max_examples=100, deadline=None)
@given(st.lists(scheduling, max_size=20))
def test_settings_and_definitions_give_back_the_stream_values_they_were_read_from(changes) -> None:
    state = fold(scheduled_log(changes))
    for stream, head in state.heads.items():
        if stream.startswith("flag/") and stream.count("/") == 1:
            assert state.catalog.definitions[stream.split("/")[1]].to_value() == head.value
    for setting in [*state.catalog.system.values(), *state.tenant("acme").org.values()]:
        assert setting.to_value() == state.heads[setting.source.stream].value


def test_a_killed_experiment_definition_round_trips() -> None:
    value = {
        "kind": "ops",
        "description": "",
        "owner": "sre",
        "group": "p",
        "archived": False,
        "killed": True,
        "expires_at": "2027-01-01T00:00:00Z",
    }
    assert Definition.from_value("p.x", value).to_value() == value
    arms = {
        "kind": "experiment",
        "description": "",
        "owner": None,
        "group": "e",
        "archived": False,
        "variants": [{"name": "a", "weight": 1000}],
    }
    assert Definition.from_value("e.x", arms).to_value() == arms
