"""The projector's pure part: planning rows per tenant, cache targets, the head cache, staging."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    GENESIS_HASH,
    Envelope,
    FlagArchived,
    Level,
    canonical_json,
    decode,
    hash_of,
    seal,
    to_record,
)
from flagcore import fold
from flaglog import Decoded, TopicPartition, decode_record, next_offsets
from services.infra.cache_keys import CacheKeys
from services.projector.adapters import cache_key
from services.projector.cache_targets import CATALOG, CacheTarget
from services.projector.heads import Head, HeadCache
from services.projector.rows import OverrideKey
from services.projector.store import COLUMNS, staged_rows
from services.projector.tenant_plan import TenantPlan, group_by_tenant, plan_tenant
from tests.support.eventlog import EventLog, random_log, rules_change
from tests.support.records import TOPIC, Rec, records


def decoded(log: EventLog) -> list[Decoded]:
    items = [decode_record(r) for r in records(log)]
    assert all(isinstance(i, Decoded) for i in items), items
    return items  # type: ignore[return-value]


# --- grouping and planning ---------------------------------------------------------------


def test_grouping_by_tenant_keeps_log_order_within_each_group() -> None:
    log = EventLog()
    log.define("a.b")
    log.org("o1", "a.b", True)
    log.org("o2", "a.b", True)
    log.org("o1", "a.b", False)
    log.system("a.b", True)
    groups = group_by_tenant(decoded(log))
    assert list(groups) == [None, "o1", "o2"]
    assert [i.offset for i in groups["o1"]] == [1, 3]
    assert [i.envelope.type for i in groups[None]] == ["FlagDefined", "SystemDefaultSet"]


def test_plan_keeps_the_last_value_per_row_and_deletes_cleared_ones() -> None:
    log = EventLog()
    log.define("a.b")
    log.org("o1", "a.b", True)
    last = log.org("o1", "a.b", False)
    log.user("o1", "u1", "a.b", True)
    log.user("o1", "u1", "a.b", None)  # cleared
    log.platform("o1", "meta", "a.b", True)
    items = group_by_tenant(decoded(log))["o1"]
    plan = plan_tenant("o1", items, {})
    org_row = plan.overrides[OverrideKey("org", "", "", "a.b")]
    assert org_row is not None
    assert (org_row.enabled, org_row.version, org_row.event_id) == (False, 2, last.event_id)
    assert plan.overrides[OverrideKey("user", "", "u1", "a.b")] is None
    platform_row = plan.overrides[OverrideKey("platform", "meta", "", "a.b")]
    assert platform_row is not None and platform_row.enabled is True
    assert plan.applied == 5 and len(plan.history) == 5
    assert plan.heads["org/o1/flag/a.b"] == Head(2, last.hash)
    assert plan.invalidations == {CacheTarget("org", "o1"), CacheTarget("user", "o1", "u1")}


def test_plan_skips_what_the_stored_heads_already_have() -> None:
    log = EventLog()
    first = log.org("o1", "a.b", True)
    second = log.org("o1", "a.b", False)
    items = decoded(log)
    plan = plan_tenant("o1", [*items, items[0]], {first.stream: Head(1, first.hash)})
    assert plan.applied == 1 and plan.duplicates == 2
    assert [h.event_id for h in plan.history] == [second.event_id]
    assert plan.chain_breaks == []


def test_plan_reports_a_broken_chain_but_still_applies_the_event() -> None:
    log = EventLog()
    log.org("o1", "a.b", True)
    second = log.org("o1", "a.b", False)
    plan = plan_tenant("o1", decoded(log)[1:], {second.stream: Head(1, "f" * 64)})
    assert plan.applied == 1
    assert len(plan.chain_breaks) == 1 and "org/o1/flag/a.b v2" in plan.chain_breaks[0]
    gap = plan_tenant("o1", decoded(log)[1:], {})  # v2 with no v1 stored
    assert gap.applied == 1 and len(gap.chain_breaks) == 1


def test_definitions_and_system_settings_go_to_the_catalog() -> None:
    log = EventLog()
    log.define("a.b", group="grp")
    log.system("a.b", True)
    log.rollout("a.b", 30, level=Level.SYSTEM)
    log.add(FlagArchived(flag_key="a.b"))
    plan = plan_tenant(None, decoded(log), {})
    definition = plan.definitions["a.b"]
    assert (definition.grp, definition.archived, definition.version) == ("grp", True, 2)
    system = plan.system["a.b"]
    assert system is not None and (system.enabled, system.rollout_percentage, system.version) == (True, 30, 2)
    assert plan.invalidations == {CATALOG}
    assert {h.level for h in plan.history} == {None, "system"}


def _apply_in_memory(plans: list[TenantPlan], tables: dict[str, dict[Any, Any]]) -> None:
    """What the SQL does, on dicts: upsert or delete the final row of each key."""
    for plan in plans:
        tables["flags"].update(plan.definitions)
        for key, row in plan.system.items():
            tables["system"].pop(key, None) if row is None else tables["system"].__setitem__(key, row)
        for key, row in plan.overrides.items():
            full = (plan.org_id, *key)
            tables["overrides"].pop(full, None) if row is None else tables["overrides"].__setitem__(full, row)
        tables["heads"].update(plan.heads)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 120))
def test_planning_batch_by_batch_gives_the_fold(seed: int, batch: int) -> None:
    """The law: any batching of the log, planned onto the heads so far, ends in `flagcore.fold`'s state."""
    log = random_log(300, orgs=["o1", "o2", "o3"], flags=4, users=3, seed=seed)
    items = decoded(log)
    tables: dict[str, dict[Any, Any]] = {"flags": {}, "system": {}, "overrides": {}, "heads": {}}
    history = 0
    for start in range(0, len(items), batch):
        plans = [
            plan_tenant(org, group, tables["heads"])
            for org, group in group_by_tenant(items[start : start + batch]).items()
        ]
        history += sum(len(p.history) for p in plans)
        _apply_in_memory(plans, tables)
    state = fold(log.events)
    assert history == len(log.events)
    assert {k: (d.kind.value, d.archived, d.source.version) for k, d in state.catalog.definitions.items()} == {
        k: (r.kind, r.archived, r.version) for k, r in tables["flags"].items()
    }
    assert {k: (s.enabled, s.rollout_percentage) for k, s in state.catalog.system.items()} == {
        k: (r.enabled, r.rollout_percentage) for k, r in tables["system"].items()
    }
    expected = {}
    for org, rules in state.tenants.items():
        for key, s in rules.org.items():
            expected[(org, "org", "", "", key)] = (s.enabled, s.rollout_percentage, s.source.event_id)
        for (platform, key), s in rules.platform.items():
            expected[(org, "platform", platform, "", key)] = (s.enabled, s.rollout_percentage, s.source.event_id)
        for (user, key), s in rules.user.items():
            expected[(org, "user", "", user, key)] = (s.enabled, s.rollout_percentage, s.source.event_id)
    actual = {k: (r.enabled, r.rollout_percentage, str(r.event_id)) for k, r in tables["overrides"].items()}
    assert actual == expected
    assert {s: (h.version, h.hash) for s, h in state.heads.items()} == {
        s: (h.version, h.hash) for s, h in tables["heads"].items()
    }


def test_next_offsets_is_one_past_the_last_record_per_partition() -> None:
    recs = [Rec(TOPIC, 0, 5, None, None, ()), Rec(TOPIC, 1, 9, None, None, ()), Rec(TOPIC, 0, 7, None, None, ())]
    assert next_offsets(recs) == {TopicPartition(TOPIC, 0): 8, TopicPartition(TOPIC, 1): 10}


# --- cache targets -------------------------------------------------------------------------


def test_each_level_invalidates_exactly_its_document() -> None:
    keys = CacheKeys("p")
    log = EventLog()
    events = [
        log.define("a.b"),
        log.system("a.b", True),
        log.org("o1", "a.b", True),
        log.platform("o1", "google", "a.b", True),
        log.user("o1", "u1", "a.b", True),
        log.rollout("a.b", 5, level=Level.USER, org="o1", user="u2"),
    ]
    targets = [CacheTarget.of(e.data.scope) for e in events]
    assert [cache_key(keys, t) for t in targets] == [
        "p:v1:catalog",
        "p:v1:catalog",
        "p:v1:org:o1",
        "p:v1:org:o1",
        "p:v1:org:o1:user:u1",
        "p:v1:org:o1:user:u2",
    ]
    assert [t.message() for t in targets[1:5:2]] == [
        {"scope": "catalog"},
        {"scope": "org", "org_id": "o1"},
    ]
    assert targets[4].message() == {"scope": "user", "org_id": "o1", "user_id": "u1"}


# --- the head cache --------------------------------------------------------------------------

P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def test_head_cache_on_an_empty_database_knows_every_head() -> None:
    cache = HeadCache()
    cache.track({P0: 0, P1: 0}, database_was_empty=True)
    assert cache.lookup(["s1"]) == ({}, [])  # complete: no head means none stored
    cache.committed({"s1": Head(1, "h")}, {P0: 10, P1: 0})
    cache.track({P0: 10})
    assert cache.lookup(["s1", "s2"]) == ({"s1": Head(1, "h")}, [])


def test_head_cache_is_dropped_when_someone_else_moved_a_partition() -> None:
    cache = HeadCache()
    cache.track({P0: 0}, database_was_empty=True)
    cache.committed({"s1": Head(1, "h")}, {P0: 10})
    cache.track({P0: 25})  # another consumer applied 10..24
    assert not cache.complete
    assert cache.lookup(["s1"]) == ({}, ["s1"])


def test_head_cache_is_incomplete_for_a_partition_applied_before_it_started() -> None:
    cache = HeadCache()
    cache.track({P0: 0}, database_was_empty=True)
    cache.track({P1: 40})
    assert not cache.complete
    assert cache.lookup(["x"]) == ({}, ["x"])


def test_head_cache_starts_over_when_it_grows_too_big() -> None:
    cache = HeadCache(max_streams=2)
    cache.track({P0: 0}, database_was_empty=True)
    cache.committed({"a": Head(1, "h"), "b": Head(1, "h"), "c": Head(1, "h")}, {P0: 3})
    assert cache.heads == {} and not cache.started


# --- staging ------------------------------------------------------------------------------------


def test_staged_rows_follow_the_staging_columns_and_split_deletes() -> None:
    log = EventLog()
    log.define("a.b")
    log.org("o1", "a.b", True)
    log.user("o1", "u1", "a.b", True)
    log.user("o1", "u1", "a.b", None)
    groups = group_by_tenant(decoded(log))
    tables = staged_rows([plan_tenant(org, items, {}) for org, items in groups.items()])
    assert set(tables) == {
        "stage_heads", "stage_history", "stage_overrides", "stage_override_deletes", "stage_flags"
    }  # fmt: skip
    for name, rows in tables.items():
        assert all(len(row) == len(COLUMNS[name]) for row in rows), name
    history = [dict(zip(COLUMNS["stage_history"], row, strict=True)) for row in tables["stage_history"]]
    assert [(h["org_id"], h["type"], h["version"]) for h in history] == [
        (None, "FlagDefined", 1),
        ("o1", "OrgOverrideSet", 1),
        ("o1", "UserOverrideSet", 1),
        ("o1", "UserOverrideCleared", 2),
    ]
    assert tables["stage_override_deletes"] == [("o1", "user", "", "u1", "a.b")]
    override = dict(zip(COLUMNS["stage_overrides"], tables["stage_overrides"][0], strict=True))
    assert (override["org_id"], override["level"], override["enabled"]) == ("o1", "org", True)
    assert {(stream, org, version) for stream, org, version, _ in tables["stage_heads"]} == {
        ("flag/a.b", None, 1),
        ("org/o1/flag/a.b", "o1", 1),
        ("org/o1/user/u1/flag/a.b", "o1", 2),
    }


# --- definitions written by an older schema ----------------------------------------------------


def _v1_definition(key: str) -> tuple[Envelope, bytes]:
    """A FlagDefined as schema v1 wrote it (no kind, owner or group; a v1-shaped `new`), and its bytes."""
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "FlagDefined",
        "schema_version": 1,
        "stream": f"flag/{key}",
        "version": 1,
        "sequence": 1,
        "occurred_at": "2025-11-20T10:00:00Z",
        "org_id": None,
        "flag_key": key,
        "actor": {"id": "u1", "name": "ops"},
        "reason": "seed",
        "previous": None,
        "new": {"description": "AI insights"},
        "data": {"type": "FlagDefined", "flag_key": key, "description": "AI insights"},
        "prev_hash": GENESIS_HASH,
    }
    fields["hash"] = hash_of(fields)
    raw = canonical_json(fields)
    return decode(raw), raw


def test_an_upcast_definition_is_projected_as_the_fold_sees_it() -> None:
    defined, stored_bytes = _v1_definition("ai.insights.enabled")
    archived = seal(
        event_id=uuid.uuid4(),
        sequence=2,
        version=2,
        occurred_at=defined.occurred_at,
        actor=defined.actor,
        reason="retired",
        previous={"description": "AI insights"},  # the v1-era command side's value
        new={"description": "AI insights", "archived": True},
        data=FlagArchived(flag_key="ai.insights.enabled"),
        prev_hash=defined.hash,
    )
    published = [to_record(defined, stored_bytes), to_record(archived)]  # the relay sends the stored bytes
    recs = [Rec(TOPIC, 0, i, r.key, r.value, tuple(r.headers)) for i, r in enumerate(published)]
    items = [decode_record(r) for r in recs]
    assert all(isinstance(i, Decoded) for i in items), items
    one_batch = plan_tenant(None, items, {})  # type: ignore[arg-type]
    first = plan_tenant(None, items[:1], {})  # type: ignore[arg-type]
    second = plan_tenant(None, items[1:], first.heads, {"ai.insights.enabled": _value(first)})  # type: ignore[arg-type]
    expected = fold([defined, archived]).catalog.definitions["ai.insights.enabled"]
    for plan in (one_batch, second):
        row = plan.definitions["ai.insights.enabled"]
        assert (row.kind, row.grp, row.owner, row.archived, row.version) == (
            expected.kind.value,
            expected.group,
            expected.owner,
            True,
            2,
        )
        assert plan.rejected == []


def _value(plan: TenantPlan) -> dict[str, Any]:
    row = plan.definitions["ai.insights.enabled"]
    return {"kind": row.kind, "description": row.description, "owner": row.owner, "group": row.grp,
            "archived": row.archived}  # fmt: skip


def test_a_definition_that_cannot_apply_is_rejected_not_written() -> None:
    log = EventLog()
    log.define("a.b")
    stored = {"a.b": {"kind": "ops", "description": "", "owner": None, "group": "a", "archived": True}}
    plan = plan_tenant(None, decoded(log), {}, stored)  # defined again, though the database has it
    assert plan.applied == 0 and plan.definitions == {} and plan.heads == {}
    assert [reason for _, reason in plan.rejected] == ["invalid transition: flag 'a.b' is already defined"]


# --- targeting rules -----------------------------------------------------------------------


def test_targeting_rules_are_their_own_rows_apart_from_the_levels_settings() -> None:
    """A rules list is a `targeting_rules` row keyed by its stream; the level's setting row is left alone, an
    emptied list deletes its row, and the document invalidated is the catalogue's or the org's."""
    log = EventLog()
    log.define("a.b")
    log.system("a.b", True)
    log.org("o1", "a.b", False)
    condition = {"attribute": "email", "operator": "ends_with", "values": ["@a.io"], "case_sensitive": True}
    staff = {"id": "staff", "conditions": [condition], "variant": "on"}
    log.add(rules_change("a.b", None, staff))
    log.add(rules_change("a.b", "o1", staff))
    log.add(rules_change("a.b", "o1"))
    groups = group_by_tenant(decoded(log))
    system, org = plan_tenant(None, groups[None], {}), plan_tenant("o1", groups["o1"], {})
    assert set(system.system) == {"a.b"} and system.system["a.b"].enabled is True  # the setting, untouched
    assert set(org.overrides) == {OverrideKey("org", "", "", "a.b")} and org.overrides[
        OverrideKey("org", "", "", "a.b")
    ].enabled is False  # fmt: skip
    row = system.rules["flag/a.b/system/rules"]
    assert row is not None and (row.flag_key, orjson.loads(row.rules)) == ("a.b", [staff]) and row.version == 1
    assert org.rules == {"org/o1/flag/a.b/rules": None}  # set, then emptied in the same batch: delete
    assert CATALOG in system.invalidations and CacheTarget("org", "o1") in org.invalidations
    tables = staged_rows([system, org])
    assert [r[:3] for r in tables["stage_rules"]] == [("flag/a.b/system/rules", None, "a.b")]
    assert tables["stage_rule_deletes"] == [("o1", "org/o1/flag/a.b/rules")]
    assert all(len(r) == len(COLUMNS["stage_rules"]) for r in tables["stage_rules"])
