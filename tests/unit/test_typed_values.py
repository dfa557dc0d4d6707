"""Typed flag values in the core: the events, their upcasting, evaluation per level, and old logs unchanged.

The laws: a log written before typed flags (old schema bytes, boolean flags, no level choosing a variant)
decodes and folds to the same state as today's events and evaluates exactly as the evaluator before typed
flags did (`_legacy`, its rules verbatim); a typed flag serves its variants' values at every level.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events import (
    FlagDefined,
    FlagUpdated,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideSet,
    ValueType,
    Variant,
    VariantSelected,
    canonical_json,
    decode,
    hash_of,
)
from events.values import TypedValueError, check_typed
from flagcore import Catalog, FlagState, InvalidTransition, Reason, TenantRules, bucket, evaluate, fold, transition
from flagcore.model import Setting
from flagcore.variants import select_variant
from tests.support.factories import T0, LogBuilder
from tests.support.generated_logs import (
    BOOLEAN_KEYS,
    LIMIT,
    ORG,
    PLATFORMS,
    THEME,
    USERS,
    boolean_changes,
    definitions,
    state_of,
)

# --- the events ----------------------------------------------------------------------------------------------


def theme(**extra: object) -> FlagDefined:
    fields = {"values": {"blue": "#00f", "red": "#f00"}, "default_variant": "blue", "off_variant": "red"}
    return FlagDefined(flag_key=THEME, group="checkout", value_type=ValueType.STRING, **(fields | extra))


@pytest.mark.parametrize(
    ("value_type", "values", "field"),
    [
        (ValueType.STRING, {"a": 1}, "values.a"),
        (ValueType.INTEGER, {"a": 1.5}, "values.a"),
        (ValueType.INTEGER, {"a": True}, "values.a"),
        (ValueType.FLOAT, {"a": 1}, "values.a"),
        (ValueType.FLOAT, {"a": float("nan")}, "values.a"),
        (ValueType.OBJECT, {"a": "text"}, "values.a"),
        (ValueType.OBJECT, {"a": {"k": "x" * 17_000}}, "values.a"),
        (ValueType.INTEGER, {"a": 2**63}, "values.a"),  # beyond 64 bits: no JSON encoder of the read side writes it
        (ValueType.OBJECT, {"a": {"k": [-(2**63) - 1]}}, "values.a"),
        (ValueType.STRING, {"bad name": "x"}, "values.bad name"),
        (ValueType.STRING, {}, "values"),
    ],
)
def test_a_value_not_of_the_flags_type_is_refused_naming_the_variant(value_type, values, field) -> None:
    first = next(iter(values), "a")
    with pytest.raises(TypedValueError) as refused:
        check_typed(value_type, values, first, first)
    assert refused.value.field == field


def test_default_and_off_must_be_variants_and_a_boolean_names_none() -> None:
    with pytest.raises(TypedValueError, match="default_variant"):
        check_typed(ValueType.STRING, {"a": "x"}, "b", "a")
    with pytest.raises(TypedValueError, match="off_variant"):
        check_typed(ValueType.STRING, {"a": "x"}, "a", None)
    with pytest.raises(TypedValueError, match="values"):
        check_typed(ValueType.BOOLEAN, {"a": True}, None, None)
    with pytest.raises(ValidationError, match=r"values\.green"):
        theme(values={"blue": "#00f", "red": "#f00", "green": 3})


def test_a_split_names_distinct_variants_whose_weights_sum_to_1000() -> None:
    for split, message in [
        ((Variant(name="a", weight=500), Variant(name="b", weight=400)), "sum to 1000"),
        ((Variant(name="a", weight=500), Variant(name="a", weight=500)), "distinct"),
        ((), "1 to 50"),
    ]:
        with pytest.raises(ValidationError, match=message):
            VariantSelected(flag_key=THEME, level=Level.SYSTEM, split=split)
    with pytest.raises(ValidationError, match="not both"):
        VariantSelected(flag_key=THEME, level=Level.SYSTEM, variant="a", split=(Variant(name="a", weight=1000),))


def _reseal_as(event_fields: dict, schema_version: int) -> bytes:
    """An event as an older schema wrote it: without the typed keys, sealed anew (what the log holds)."""
    fields = json.loads(json.dumps(event_fields))
    for name in ("value_type", "values", "default_variant", "off_variant"):
        fields["data"].pop(name)
    fields["schema_version"] = schema_version
    fields["hash"] = hash_of(fields)
    return canonical_json(fields)


def test_old_definition_events_upcast_to_boolean_flags() -> None:
    log = LogBuilder()
    defined, updated = log.extend(
        [FlagDefined(flag_key="ai.x", group="ai"), FlagUpdated(flag_key="ai.x", group="ai", kind="ops")]
    )
    old_defined = decode(_reseal_as(json.loads(defined.to_json()), 3))
    old_updated = decode(_reseal_as(json.loads(updated.to_json()), 2))
    assert old_defined.data == defined.data and old_defined.data.value_type is ValueType.BOOLEAN
    assert old_updated.data == updated.data and old_updated.data.values == {}
    assert "value_type" not in (old_defined.new or {})  # a boolean definition's value is as it always was


def test_a_flags_value_type_cannot_change() -> None:
    value = transition(None, theme())
    with pytest.raises(InvalidTransition, match="value type"):
        transition(value, FlagUpdated(flag_key=THEME, group="checkout", kind="release"))


def test_a_selection_keeps_the_levels_switch_and_rollout_and_clears_with_it() -> None:
    value = transition(None, OrgOverrideSet(flag_key=THEME, org_id=ORG, enabled=True))
    value = transition(value, VariantSelected(flag_key=THEME, level=Level.ORG, org_id=ORG, variant="red"))
    assert value == {"enabled": True, "rollout_percentage": None, "variant": "red"}
    value = transition(value, RolloutPercentageSet(flag_key=THEME, level=Level.ORG, org_id=ORG, percentage=5))
    assert value == {"enabled": True, "rollout_percentage": 5, "variant": "red"}
    value = transition(value, VariantSelected(flag_key=THEME, level=Level.ORG, org_id=ORG))
    assert value == {"enabled": True, "rollout_percentage": 5}
    assert transition(None, VariantSelected(flag_key=THEME, level=Level.ORG, org_id=ORG)) is None


# --- evaluation --------------------------------------------------------------------------------------------


def typed_state(*changes) -> FlagState:
    return state_of(list(changes))


def test_a_typed_flag_nobody_turns_on_serves_its_off_variant() -> None:
    e = evaluate(typed_state().catalog, TenantRules(ORG), THEME)
    assert (e.value, e.variant, e.reason) == ("#f00", "red", Reason.DEFAULT)


def test_a_level_turned_on_serves_the_default_variant_and_a_chosen_one_wins() -> None:
    state = typed_state(
        SystemDefaultSet(flag_key=THEME, enabled=True),
        VariantSelected(flag_key=THEME, level=Level.PLATFORM, org_id=ORG, platform="meta", variant="green"),
        UserOverrideSet(flag_key=LIMIT, org_id=ORG, user_id="u-1", enabled=True),
    )
    tenant = state.tenant(ORG)
    assert evaluate(state.catalog, tenant, THEME).value == "#00f"
    meta = evaluate(state.catalog, tenant, THEME, platform="meta")
    assert (meta.value, meta.variant, meta.level, meta.reason) == (
        "#0f0",
        "green",
        Level.PLATFORM,
        Reason.TARGETING_MATCH,
    )
    limit = evaluate(state.catalog, tenant, LIMIT, user_id="u-1")
    assert (limit.value, limit.variant) == (10, "small") and type(limit.value) is int
    assert evaluate(state.catalog, tenant, LIMIT, user_id="u-2").value == 0


def test_a_split_serves_each_subject_its_unleash_variant() -> None:
    split = (Variant(name="blue", weight=300), Variant(name="green", weight=700))
    state = typed_state(VariantSelected(flag_key=THEME, level=Level.ORG, org_id=ORG, split=split))
    tenant = state.tenant(ORG)
    seen = set()
    for user in (f"u-{i}" for i in range(100)):
        e = evaluate(state.catalog, tenant, THEME, user_id=user)
        expected = select_variant(THEME, user, split)
        assert expected is not None and e.variant == expected.name and e.reason is Reason.SPLIT
        seen.add(e.variant)
    assert seen == {"blue", "green"}


def test_a_rollout_with_a_variant_serves_it_inside_and_off_outside() -> None:
    state = typed_state(
        RolloutPercentageSet(flag_key=THEME, level=Level.SYSTEM, percentage=40),
        VariantSelected(flag_key=THEME, level=Level.SYSTEM, variant="green"),
    )
    for user in (f"u-{i}" for i in range(50)):
        e = evaluate(state.catalog, TenantRules(ORG), THEME, user_id=user)
        assert e.variant == ("green" if bucket(THEME, user) <= 40 else "red")


def test_a_platform_can_switch_a_typed_flag_off() -> None:
    state = typed_state(
        SystemDefaultSet(flag_key=THEME, enabled=True),
        PlatformOverrideSet(flag_key=THEME, org_id=ORG, platform="tiktok", enabled=False),
    )
    e = evaluate(state.catalog, state.tenant(ORG), THEME, platform="tiktok")
    assert (e.value, e.variant, e.reason) == ("#f00", "red", Reason.TARGETING_MATCH)


# --- old logs, exactly as before ------------------------------------------------------------------------------


def _legacy(catalog: Catalog, tenant: TenantRules, key: str, platform, user, now) -> tuple:
    """The evaluator before typed flags, its rules verbatim: (value, reason, level, variant, pct, bucket)."""
    definition = catalog.definitions.get(key)
    if definition is None:
        return (False, Reason.ERROR, None, None, None, None)
    if definition.archived or definition.killed:
        return (False, Reason.DISABLED, Level.SYSTEM, "off", None, None)
    subject = user if user is not None else tenant.org_id
    candidates = (
        (Level.USER, tenant.user.get((user, key)) if user is not None else None),
        (Level.PLATFORM, tenant.platform.get((platform, key)) if platform is not None else None),
        (Level.ORG, tenant.org.get(key)),
        (Level.SYSTEM, catalog.system.get(key)),
    )
    for level, setting in candidates:
        if setting is None:
            continue
        setting = setting.in_force(now) if setting.schedule else setting
        if setting.enabled is None and setting.rollout_percentage is None:
            continue
        fixed = Reason.STATIC if level is Level.SYSTEM else Reason.TARGETING_MATCH
        if setting.enabled is False:
            return (False, fixed, level, "off", None, None)

        def arm() -> str:
            chosen = select_variant(key, subject, definition.variants) if definition.variants else None
            return "on" if chosen is None else chosen.name

        pct = setting.rollout_percentage
        if pct is None:
            return (True, fixed, level, arm(), None, None)
        b = bucket(key, subject)
        on = pct > 0 and b <= pct
        return (on, Reason.SPLIT, level, arm() if on else "off", pct, b)
    return (False, Reason.DEFAULT, None, "off", None, None)


def _old_bytes(state_events) -> list[bytes]:
    """The log as it was written before typed flags: definitions in their old schema versions."""
    out = []
    for envelope in state_events:
        fields = json.loads(envelope.to_json())
        if fields["type"] in ("FlagDefined", "FlagUpdated"):
            out.append(_reseal_as(fields, 3 if fields["type"] == "FlagDefined" else 2))
        else:
            out.append(canonical_json(fields))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(boolean_changes, max_size=10), st.integers(0, 100))
def test_an_old_log_decodes_folds_and_evaluates_exactly_as_before(log: list, offset: int) -> None:
    builder = LogBuilder()
    builder.extend([d for d in definitions() if d.flag_key in BOOLEAN_KEYS] + log)
    today = fold(builder.events)
    old = fold(decode(raw) for raw in _old_bytes(builder.events))
    heads = {s: (h.version, h.value) for s, h in today.heads.items()}  # resealed: definitions' hashes differ
    assert {s: (h.version, h.value) for s, h in old.heads.items()} == heads
    assert old.catalog == today.catalog and old.tenants == today.tenants
    now = T0 + timedelta(seconds=offset)
    tenant = old.tenant(ORG)
    for key in BOOLEAN_KEYS:
        for user in USERS[:12]:
            for platform in PLATFORMS:
                e = evaluate(old.catalog, tenant, key, platform=platform, user_id=user, now=now)
                got = (e.value, e.reason, e.level, e.variant, e.rollout_percentage, e.bucket)
                assert got == _legacy(old.catalog, tenant, key, platform, user, now), (key, user, platform)
                assert type(e.value) is bool


def test_setting_values_round_trip_with_a_selection() -> None:
    split = (Variant(name="blue", weight=1000),)
    for value in (
        {"enabled": True, "rollout_percentage": None, "variant": "red"},
        {"enabled": None, "rollout_percentage": 3, "split": [{"name": "blue", "weight": 1000}]},
    ):
        assert Setting.from_value(value).to_value() == value
    assert Setting(None, None, split=split).speaks and not Setting(None, None).speaks
    assert datetime.now(UTC) > T0


def test_a_typed_split_is_explained_as_a_split_of_variants_not_a_rollout() -> None:
    from events import Level
    from flagcore import Evaluation

    split = Evaluation("t.theme", "#00f", Reason.SPLIT, Level.PLATFORM, variant="blue")
    assert split.explain() == "t.theme is variant blue: platform level, a weighted split of its variants, set"
    rollout = Evaluation("b.flag", True, Reason.SPLIT, Level.ORG, rollout_percentage=25, bucket=7, variant="on")
    assert rollout.explain() == "b.flag is on: org level, rollout 25% (bucket 7), set"
