"""The console's pure parts: sessions and their idle timeout, role capabilities, change forms, audit entries, charts."""

from __future__ import annotations

import pytest

from events import Level
from services.auth.policy import Principal, Role
from services.console import audit, charts
from services.console.access import Action, Capabilities, may, scoped_org
from services.console.changes import (
    InvalidInput,
    describe,
    parse_definition_edit,
    parse_setting_change,
    parse_target,
)
from services.console.operations import (
    parse_archive_flag,
    parse_define_flag,
    parse_kill_switch,
    parse_rollback,
    parse_schedule_step,
    rollbackable,
    target_of_stream,
)
from services.console.ports import Session
from services.console.sessions import MemorySessionStore


def principal(role: Role, org: str | None = None) -> Principal:
    return Principal(key_id="0123456789abcdef", name="someone", role=role, org_id=org)


def session(**over: object) -> Session:
    fields = {"api_key": "fsk_secret", "key_id": "0123456789abcdef", "name": "n", "role": "org-admin",
              "org_id": "acme", "csrf": "t"}
    return Session(**{**fields, **over})  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- sessions ---------------------------------------------------------------------------------------------


async def test_a_session_survives_activity_and_ends_after_the_idle_timeout() -> None:
    clock = Clock()
    store = MemorySessionStore(idle=60, clock=clock)
    sid = await store.create(session())
    clock.now += 50
    assert await store.get(sid) == session()  # activity restarts the timer
    clock.now += 50
    assert await store.get(sid) is not None
    clock.now += 61
    assert await store.get(sid) is None
    assert await store.get(sid) is None  # and it is gone for good


async def test_session_ids_are_random_and_only_their_digest_is_stored() -> None:
    store = MemorySessionStore(idle=60)
    first, second = await store.create(session()), await store.create(session())
    assert first != second and len(first) >= 43
    assert first not in store.rows and second not in store.rows
    await store.delete(first)
    assert await store.get(first) is None and await store.get(second) is not None


def test_a_session_round_trips_and_names_its_principal() -> None:
    s = session(role="auditor", org_id=None)
    assert Session.loads(s.dumps()) == s
    assert s.principal.role is Role.AUDITOR and s.principal.org_id is None


# --- roles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "org", "expected"),
    [
        (Role.SYSTEM_ADMIN, None, (True, True, True, True)),
        (Role.ORG_ADMIN, "acme", (False, True, True, True)),
        (Role.AUDITOR, "acme", (False, False, False, True)),
        (Role.AUDITOR, None, (False, False, False, True)),
        (Role.EVALUATOR, "acme", (False, False, True, False)),
    ],
)
def test_capabilities_follow_the_api_policy(role: Role, org: str | None, expected: tuple[bool, ...]) -> None:
    can = Capabilities.of(principal(role, org))
    assert (can.edit_catalog, can.change_overrides, can.evaluate, can.read_audit) == expected


def test_an_org_scoped_user_acts_on_its_own_org_only() -> None:
    admin = principal(Role.ORG_ADMIN, "acme")
    assert may(admin, Action.CHANGE_OVERRIDES, "acme")
    assert not may(admin, Action.CHANGE_OVERRIDES, "globex")
    assert not may(admin, Action.READ_AUDIT, None)  # the catalogue-wide log is not its own org's
    assert scoped_org(admin, None) == "acme"
    assert scoped_org(principal(Role.SYSTEM_ADMIN), None) is None


# --- change forms -----------------------------------------------------------------------------------------

BASE = {"flag": "ai.insights.enabled", "org": "acme", "reason": "pilot", "expected_version": "3"}


@pytest.mark.parametrize(
    ("form", "method", "body"),
    [
        ({"level": "org", "state": "on"}, "PUT", {"enabled": True, "rollout_percentage": None}),
        ({"level": "org", "state": "off", "rollout": "25"}, "PUT", {"enabled": False, "rollout_percentage": 25}),
        ({"level": "org", "state": "inherit", "rollout": "10"}, "PUT", {"enabled": None, "rollout_percentage": 10}),
        ({"level": "org", "state": "inherit"}, "DELETE", {}),
        ({"level": "platform", "platform": "tiktok", "state": "clear"}, "DELETE", {}),
        ({"level": "system", "state": "on", "rollout": "100"}, "PUT", {"enabled": True, "rollout_percentage": 100}),
    ],
)
def test_a_setting_form_becomes_one_request_with_reason_and_expected_version(
    form: dict[str, str], method: str, body: dict[str, object]
) -> None:
    change = parse_setting_change({**BASE, **form})
    assert change.method == method
    assert change.body() == {"reason": "pilot", "expected_version": 3, **body}


def test_targets_name_their_stream_and_route() -> None:
    platform = parse_target({**BASE, "level": "platform", "platform": "tiktok"})
    assert platform.stream == "org/acme/platform/tiktok/flag/ai.insights.enabled"
    assert platform.path == "/v1/orgs/acme/platforms/tiktok/flags/ai.insights.enabled"
    assert platform.action is Action.CHANGE_OVERRIDES
    user = parse_target({**BASE, "level": "user", "user": "u-1"})
    assert user.path == "/v1/orgs/acme/users/u-1/flags/ai.insights.enabled" and user.level is Level.USER
    system = parse_target({**BASE, "level": "system"})
    assert system.org_id is None and system.action is Action.MANAGE_FLAGS
    assert parse_target(system.fields()) == system and parse_target(platform.fields()) == platform


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"flag": "Not A Key"}, "flag"),
        ({"level": "galaxy"}, "level"),
        ({"org": "../etc"}, "org"),
        ({"org": ""}, "org"),
        ({"level": "platform", "platform": "myspace"}, "platform"),
        ({"level": "user"}, "user"),
        ({"state": "maybe"}, "state"),
        ({"rollout": "101"}, "rollout"),
        ({"rollout": "-1"}, "rollout"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"expected_version": "latest"}, "expected_version"),
        ({"level": "system", "state": "clear"}, "state"),
    ],
)
def test_a_bad_form_field_is_named(form: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_setting_change({**BASE, "level": "org", "state": "on", **form})
    assert caught.value.field == field


def test_the_confirmation_shows_previous_and_new() -> None:
    change = parse_setting_change({**BASE, "level": "org", "state": "on", "rollout": "25"})
    assert change.rows({"enabled": False, "rollout_percentage": None}) == [("org acme", "off", "on, 25% rollout")]
    assert describe(None) == "not set" and describe({"enabled": None, "rollout_percentage": 5}).endswith("5% rollout")
    split = [{"name": "blue", "weight": 300}, {"name": "green", "weight": 700}]
    assert describe({"enabled": None, "rollout_percentage": None, "variant": "green"}) == "variant green"
    assert describe({"enabled": True, "rollout_percentage": 5, "split": split}) == (
        "on, 5% rollout, split blue 30% / green 70%"
    )


def test_a_definition_edit_sends_only_what_changed() -> None:
    current = {"description": "old", "kind": "release", "owner": "ads", "group": "ai", "archived": False}
    form = {"flag": "ai.x", "reason": "r", "expected_version": "2", "new_description": "new", "new_kind": "release",
            "new_owner": "", "new_group": "ai"}
    edit = parse_definition_edit(form, current)
    assert edit.changes == {"description": "new", "owner": None}
    assert edit.body() == {"description": "new", "owner": None, "reason": "r", "expected_version": 2}
    with pytest.raises(InvalidInput):
        parse_definition_edit({**form, "new_description": "old", "new_owner": "ads"}, current)
    with pytest.raises(InvalidInput) as caught:
        parse_definition_edit({**form, "new_kind": "whim"}, current)
    assert caught.value.field == "new_kind"


# --- audit entries and charts -----------------------------------------------------------------------------


def envelope(seq: int, **over: object) -> dict[str, object]:
    fields = {"event_id": f"e{seq}", "sequence": seq, "occurred_at": f"2026-11-29T10:0{seq % 10}:00Z",
              "type": "OrgOverrideSet", "stream": "org/acme/flag/f.x", "version": seq, "org_id": "acme",
              "flag_key": "f.x", "actor": {"id": "key:1", "name": "Ana"}, "reason": "why",
              "previous": None, "new": {"enabled": True, "rollout_percentage": None}}
    return {**fields, **over}


def test_audit_entries_filter_and_sort_newest_first() -> None:
    entries = [audit.entry(envelope(1)), audit.entry(envelope(2, actor={"id": "k", "name": "Bo"})),
               audit.entry(envelope(3, type="SystemDefaultSet", org_id=None)), audit.entry(envelope(4, flag_key=None))]
    assert entries[0].previous == "not set" and entries[0].new == "on"
    assert [e.sequence for e in audit.newest_first(entries, audit.AuditFilter(), 10)] == [3, 2, 1]
    assert [e.sequence for e in audit.newest_first(entries, audit.parse_filter({"actor": "Bo"}), 10)] == [2]
    assert [e.sequence for e in audit.newest_first(entries, audit.parse_filter({"actor": "k"}), 10)] == [2]
    assert [e.sequence for e in audit.newest_first(entries, audit.parse_filter({"kind": "system"}), 10)] == [3]
    since = audit.parse_filter({"since": "2026-11-29T10:02", "until": "2026-11-29T10:02:30"})
    assert [e.sequence for e in audit.newest_first(entries, since, 10)] == [2]
    with pytest.raises(InvalidInput) as caught:
        audit.parse_filter({"since": "yesterday"})
    assert caught.value.field == "since"


def test_charts_are_inline_svg_with_escaped_labels_and_an_empty_state() -> None:
    svg = charts.bar_chart("Changes <per hour>", [("09", 2), ("10", 0), ("11", 5)])
    assert svg.startswith("<figcaption>") and "<svg" in svg and svg.count("<rect") == 3
    assert "&lt;per hour&gt;" in svg and "<per" not in svg
    assert "no data yet" in charts.bar_chart("Nothing", [])


# --- rolling back one change ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "version", "method", "path", "body"),
    [
        ("org/acme/flag/f.x", 3, "POST", "/v1/orgs/acme/rollback", {"version": 2, "flag_key": "f.x"}),
        ("org/acme/platform/tiktok/flag/f.x", 2, "POST", "/v1/orgs/acme/rollback",
         {"version": 1, "flag_key": "f.x", "platform": "tiktok"}),
        ("org/acme/user/u-1/flag/f.x", 5, "POST", "/v1/orgs/acme/rollback",
         {"version": 4, "flag_key": "f.x", "user_id": "u-1"}),
        ("flag/f.x/system", 2, "POST", "/v1/flags/f.x/rollback", {"version": 1}),
        ("org/acme/flag/f.x", 1, "DELETE", "/v1/orgs/acme/flags/f.x",
         {"reason": "rollback of version 1: oops", "expected_version": 4}),
    ],
)
def test_undoing_a_change_restores_the_version_before_it(
    stream: str, version: int, method: str, path: str, body: dict[str, object]
) -> None:
    undo = parse_rollback({"stream": stream, "version": str(version), "reason": "oops", "expected_version": "4"})
    assert (undo.method, undo.path) == (method, path)
    assert undo.body() == ({"reason": "oops", **body} if method == "POST" else body)
    assert target_of_stream(stream).stream == stream


def test_what_cannot_be_rolled_back() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rollback({"stream": "flag/f.x/system", "version": "1", "reason": "r"})
    assert caught.value.field == "version"
    with pytest.raises(InvalidInput) as caught:
        parse_rollback({"stream": "key/0123456789abcdef", "version": "2", "reason": "r"})
    assert caught.value.field == "stream"
    entry = audit.entry(envelope(1, stream="flag/f.x", type="FlagDefined", org_id=None))
    assert not rollbackable(entry) and rollbackable(audit.entry(envelope(1)))


def test_kill_switch_and_schedule_forms() -> None:
    kill = parse_kill_switch({"flag": "ops.x", "engage": "1", "reason": "incident", "expected_version": "4"})
    assert (kill.method, kill.path, kill.stream) == ("POST", "/v1/flags/ops.x/kill-switch", "flag/ops.x")
    assert kill.rows({"kind": "ops"}) == [("kill switch", "released: the levels decide", "engaged: off everywhere")]
    assert parse_kill_switch({**kill.fields(), "engage": ""}).method == "DELETE"

    form = {"flag": "f.x", "level": "org", "org": "acme", "effective_at": "2030-01-02T03:04", "state": "on",
            "rollout": "40", "reason": "launch", "expected_version": "2"}
    step = parse_schedule_step(form)
    assert (step.method, step.path) == ("PUT", "/v1/orgs/acme/flags/f.x/schedule")
    assert step.body() == {"effective_at": "2030-01-02T03:04:00Z", "enabled": True, "rollout_percentage": 40,
                           "reason": "launch", "expected_version": 2}
    assert step.rows(None) == [("org acme from 2030-01-02T03:04:00Z", "nothing scheduled", "on, 40% rollout")]
    cancel = parse_schedule_step({**form, "state": "cancel"})
    assert cancel.method == "DELETE" and "enabled" not in cancel.body()
    assert parse_schedule_step(step.fields()) == step
    for bad, field in (({"effective_at": "next week"}, "effective_at"), ({"state": "keep", "rollout": ""}, "rollout")):
        with pytest.raises(InvalidInput) as caught:
            parse_schedule_step({**form, **bad})
        assert caught.value.field == field


def test_variants_are_edited_as_text_and_sent_in_thousandths() -> None:
    form = {"flag": "exp.x", "reason": "r", "expected_version": "3", "new_variants": "control=50, new=50"}
    edit = parse_definition_edit(form, {"kind": "experiment", "variants": []})
    assert edit.body()["variants"] == [{"name": "control", "weight": 500}, {"name": "new", "weight": 500}]
    assert edit.rows({"variants": []}) == [("variants", "—", "control=500, new=500")]
    assert parse_definition_edit(edit.fields(), {"variants": []}) == edit
    same = [{"name": "control", "weight": 500}, {"name": "new", "weight": 500}]
    with pytest.raises(InvalidInput):  # nothing changed
        parse_definition_edit(form, {"variants": same})
    for bad in ("control=60, new=50", "control", "bad name=100"):
        with pytest.raises(InvalidInput) as caught:
            parse_definition_edit({**form, "new_variants": bad}, {"variants": []})
        assert caught.value.field == "new_variants"


def test_define_and_archive_forms() -> None:
    form = {"flag": "ai.summaries.enabled", "new_group": "ai", "new_kind": "release", "new_description": "d",
            "new_owner": "", "reason": "new feature"}
    define = parse_define_flag(form)
    assert (define.method, define.path, define.stream) == ("POST", "/v1/flags", "flag/ai.summaries.enabled")
    assert define.body() == {"key": "ai.summaries.enabled", "group": "ai", "kind": "release", "description": "d",
                             "reason": "new feature", "expected_version": 0}
    assert parse_define_flag(define.fields()) == define
    for bad, field in (({"new_group": ""}, "new_group"), ({"new_kind": "whim"}, "new_kind"), ({"flag": "x y"}, "flag")):
        with pytest.raises(InvalidInput) as caught:
            parse_define_flag({**form, **bad})
        assert caught.value.field == field
    archive = parse_archive_flag({"flag": "ai.x", "reason": "done", "expected_version": "7"})
    assert (archive.path, archive.body()) == ("/v1/flags/ai.x/archive", {"reason": "done", "expected_version": 7})
    assert archive.rows({"archived": False})[0][1:] == ("live", "archived: off everywhere, no more changes")


@pytest.mark.parametrize("key", ["Feature.A", "new_checkout", "Checkout-V2_beta", "K" * 255])
def test_the_forms_take_keys_as_other_systems_write_them_exactly(key: str) -> None:
    define = parse_define_flag({"flag": key, "new_group": "migrated", "new_kind": "release", "reason": "import"})
    assert (define.path, define.stream, define.body()["key"]) == ("/v1/flags", f"flag/{key}", key)
    target = parse_target({"flag": key, "level": "user", "org": "acme", "user": "u-1"})
    assert target.path == f"/v1/orgs/acme/users/u-1/flags/{key}"  # every character unreserved: nothing to encode
    archive = parse_archive_flag({"flag": key, "reason": "done", "expected_version": "1"})
    assert archive.path == f"/v1/flags/{key}/archive"
    assert audit.parse_filter({"flag": key}).flag == key


@pytest.mark.parametrize("key", ["a/b", "a b", "caf\u00e9", "K" * 256, "..", "a\nb"])
def test_the_forms_refuse_an_invalid_key_naming_the_field(key: str) -> None:
    for parse in (lambda: parse_target({"flag": key, "level": "system"}), lambda: audit.parse_filter({"flag": key})):
        with pytest.raises(InvalidInput) as caught:
            parse()
        assert caught.value.field == "flag"
