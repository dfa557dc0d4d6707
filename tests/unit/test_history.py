"""History's pure parts: levels from stream names, the cursor, instants, entries, CSV; rollback's plan."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from events import Actor, FlagKind, Scope
from services.command.chain import EMPTY_HEAD, seal_changes
from services.command.commands import DefineFlag, EngageKillSwitch, ScheduleSetting, SetSetting, UpdateFlag
from services.command.errors import InvalidCommand, VersionConflict
from services.command.eventstore.audit_reads import page_query
from services.command.handlers import decide
from services.command.history import (
    CSV_COLUMNS,
    Cursor,
    HistoryFilter,
    HistoryLevel,
    InvalidCursor,
    actor_needles,
    csv_lines,
    entry,
    level_of,
    parse_instant,
    setting_scope,
)
from services.command.memory import InMemoryEventStore
from services.command.rollback import RollbackTarget, rollback, rollback_reason
from services.command.service import CommandService
from services.infra.tenancy import Tenancy

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stream", "level"),
    [
        ("flag/ads.export", HistoryLevel.DEFINITION),
        ("flag/ads.export/system", HistoryLevel.SYSTEM),
        ("org/acme/flag/ads.export", HistoryLevel.ORG),
        ("org/acme/platform/meta/flag/ads.export", HistoryLevel.PLATFORM),
        ("org/acme/user/jane@x.io/flag/ads.export", HistoryLevel.USER),
        ("key/0123456789abcdef", HistoryLevel.KEY),
        ("elsewhere/x", None),
    ],
)
def test_every_stream_name_has_one_level(stream: str, level: HistoryLevel | None) -> None:
    assert level_of(stream) == level


def test_setting_streams_give_back_their_scope() -> None:
    for scope in (Scope.system(), Scope.org("acme"), Scope.for_platform("acme", "meta"), Scope.user("acme", "jo")):
        assert setting_scope(scope.stream("ads.export")) == (scope, "ads.export")
    assert setting_scope("flag/ads.export") is None
    assert setting_scope("org/acme/platform/myspace/flag/x") is None


def test_a_cursor_round_trips_and_orders() -> None:
    cursor = Cursor(tx=123456789, sequence=42)
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor(1, 99) < Cursor(2, 1)


@pytest.mark.parametrize("text", ["", "!!!", "MTIz", "YS5i", "LTEuMg", "OTk5OTk5OTk5OTk5OTk5OTk5OTkuMQ"])
def test_a_foreign_cursor_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        Cursor.decode(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T09:00:00Z", datetime(2026, 1, 31, 9, tzinfo=UTC)),
        ("2026-01-31t10:00:00+01:00", datetime(2026, 1, 31, 9, tzinfo=UTC)),
        ("2026-01-31T09:00:00.123456789Z", datetime(2026, 1, 31, 9, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_instants_parse_to_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-01-31", "not an RFC 3339 instant"),
        ("2026-01-31T09:00:00", "not an RFC 3339 instant"),  # no offset: which instant?
        ("1767171600", "not an RFC 3339 instant"),
        ("2026-02-30T00:00:00Z", "not a valid instant"),
        ("2026-06-01T12:00:01Z", "in the future"),
    ],
)
def test_bad_instants_say_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_instant(text, now=NOW)


def _body(**changes: object) -> bytes:
    event = {
        "event_id": "6f1c0e1e-1d2b-4c1e-9a51-1f0a1f0a1f0a", "type": "PlatformOverrideSet", "schema_version": 1,
        "stream": "org/acme/platform/meta/flag/ads.export", "version": 3, "sequence": 17,
        "occurred_at": "2026-01-31T09:00:00Z", "org_id": "acme", "flag_key": "ads.export",
        "actor": {"id": "key:0123456789abcdef", "name": "Ops"}, "reason": "pilot",
        "previous": {"enabled": True, "rollout_percentage": None},
        "new": {"enabled": False, "rollout_percentage": None},
        "data": {"type": "PlatformOverrideSet", "flag_key": "ads.export", "org_id": "acme", "platform": "meta",
                 "enabled": False},
        "prev_hash": "0" * 64, "hash": "1" * 64,
    }
    return json.dumps(event | changes).encode()


def test_an_entry_says_who_what_when_why_and_previous_to_new() -> None:
    e = entry(_body())
    assert (e["actor"]["name"], e["reason"], e["occurred_at"]) == ("Ops", "pilot", "2026-01-31T09:00:00Z")
    assert (e["level"], e["org_id"], e["platform"], e["user_id"], e["flag_key"]) == (
        "platform", "acme", "meta", None, "ads.export")
    assert (e["previous"]["enabled"], e["new"]["enabled"]) == (True, False)


def test_csv_has_a_header_json_cells_and_no_formulas() -> None:
    rows = [entry(_body()), entry(_body(reason="=HYPERLINK(\"http://evil\")", sequence=18))]
    text = csv_lines(rows, header=True) + csv_lines([entry(_body(sequence=19))], header=False)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(CSV_COLUMNS) and [r["sequence"] for r in parsed] == ["17", "18", "19"]
    assert json.loads(parsed[0]["new"]) == {"enabled": False, "rollout_percentage": None}
    assert parsed[0]["user_id"] == "" and parsed[1]["reason"].startswith("'=")


def test_rollback_targets_label_themselves() -> None:
    at = RollbackTarget(at=datetime(2026, 1, 31, 10, tzinfo=UTC))
    assert rollback_reason(at, "bad deploy") == "rollback to 2026-01-31T10:00:00Z: bad deploy"
    assert rollback_reason(RollbackTarget(version=3), "oops") == "rollback to version 3: oops"
    with pytest.raises(ValueError):
        RollbackTarget()


class _Values:
    """A fake of the audit store's value reads: stream → {version: value}, instants as versions."""

    def __init__(self, values: dict[str, dict[int, dict | None]]) -> None:
        self.values = values

    async def value_as_of(self, stream: str, at: datetime) -> tuple[int, dict | None]:
        versions = {v: x for v, x in self.values.get(stream, {}).items() if v <= at.day}
        return (max(versions), versions[max(versions)]) if versions else (0, None)

    async def value_at_version(self, stream: str, version: int) -> tuple[int, dict | None] | None:
        found = self.values.get(stream, {})
        return (version, found[version]) if version in found else None


ADMIN = Actor(id="key:0123456789abcdef", name="admin")


async def _service() -> CommandService:
    service = CommandService(InMemoryEventStore(reader=Tenancy.CROSS_TENANT))
    await service.execute(DefineFlag(flag_key="ads.export", group="ads", reason="test"))
    org = Scope.org("acme")
    await service.execute(SetSetting(scope=org, flag_key="ads.export", enabled=True, reason="one"))
    await service.execute(SetSetting(scope=org, flag_key="ads.export", rollout_percentage=40, reason="two"))
    return service


async def test_rollback_appends_the_changes_that_reach_the_old_value() -> None:
    service = await _service()
    stream = Scope.org("acme").stream("ads.export")
    values = _Values({stream: {1: {"enabled": True, "rollout_percentage": None},
                               2: {"enabled": True, "rollout_percentage": 40}}})
    [done] = await rollback(service, values, [stream], RollbackTarget(version=1), reason="undo", actor=ADMIN)
    assert done.changed and done.value == {"enabled": True, "rollout_percentage": None}
    [event] = done.events
    assert (event.type, event.version, event.reason, event.actor) == (
        "RolloutPercentageSet", 3, "rollback to version 1: undo", ADMIN)
    again = await rollback(service, values, [stream], RollbackTarget(version=1), reason="undo", actor=ADMIN)
    assert not again[0].changed  # already there: nothing written


async def test_rolling_back_to_before_a_stream_began_clears_it() -> None:
    service = await _service()
    stream = Scope.org("acme").stream("ads.export")
    values = _Values({stream: {5: {"enabled": True, "rollout_percentage": 40}}})
    at = RollbackTarget(at=datetime(2026, 1, 1, tzinfo=UTC))
    [done] = await rollback(service, values, [stream], at, reason="undo", actor=ADMIN)
    assert [e.type for e in done.events] == ["OrgOverrideCleared"] and done.events[0].new is None


async def test_a_version_that_does_not_exist_writes_nothing_and_names_the_field() -> None:
    service = await _service()
    stream = Scope.org("acme").stream("ads.export")
    with pytest.raises(InvalidCommand) as refused:
        await rollback(service, _Values({stream: {}}), [stream], RollbackTarget(version=9), reason="x", actor=ADMIN)
    assert refused.value.field == "version" and "versions 1..2" in refused.value.detail
    assert (await service.stream_head(stream)).version == 2


class _Racing(InMemoryEventStore):
    """A store where another admin's change lands just before the rollback's first append."""

    def __init__(self) -> None:
        super().__init__(reader=Tenancy.CROSS_TENANT)
        self.race: SetSetting | None = None

    async def append(self, changes, **options):  # type: ignore[no-untyped-def]
        race, self.race = self.race, None
        if race is not None:
            head = await self.stream_head(race.stream)
            await CommandService(self).execute(replace(race, expected_version=head.version))
        return await super().append(changes, **options)


async def test_a_change_landing_during_a_rollback_is_a_conflict_not_overwritten() -> None:
    store = _Racing()
    service = CommandService(store)
    await service.execute(DefineFlag(flag_key="ads.export", group="ads", reason="test"))
    org = Scope.org("acme")
    await service.execute(SetSetting(scope=org, flag_key="ads.export", enabled=True, reason="one"))
    await service.execute(SetSetting(scope=org, flag_key="ads.export", enabled=False, reason="two"))
    stream = org.stream("ads.export")
    store.race = SetSetting(scope=org, flag_key="ads.export", rollout_percentage=5, reason="meanwhile")
    values = _Values({stream: {1: {"enabled": True, "rollout_percentage": None}}})
    with pytest.raises(VersionConflict):
        await rollback(service, values, [stream], RollbackTarget(version=1), reason="undo", actor=ADMIN)
    head = await service.stream_head(stream)
    assert (head.version, head.value) == (3, {"enabled": False, "rollout_percentage": 5})


def _sealed(actor: Actor, reason: str) -> bytes:
    change = SetSetting(scope=Scope.org("acme"), flag_key="ads.export", enabled=True, reason=reason)
    [envelope] = seal_changes(decide(change, current=None, definition={"archived": False}), EMPTY_HEAD,
                              sequences=[1], actor=actor, reason=reason, occurred_at=NOW)
    return envelope.to_json()


@pytest.mark.parametrize("who", ["key:0123456789abcdef", 'Zoë "ops" Ünal', "a\\b"])
def test_actor_needles_find_the_actor_by_id_or_name(who: str) -> None:
    by_id, by_name = actor_needles(who)
    assert by_id in _sealed(Actor(id=who, name="someone"), "x")
    assert by_name in _sealed(Actor(id="key:0123456789abcdef", name=who), "x")
    assert by_id not in _sealed(Actor(id="key:x", name=who), "x")
    assert by_name not in _sealed(Actor(id=who, name="n"), "x")


def test_actor_needles_never_match_inside_free_text() -> None:
    who = "key:0123456789abcdef"
    forged = '"actor":{"id":"key:0123456789abcdef","name":"x"},"data":'
    body = _sealed(Actor(id="key:ffffffffffffffff", name="x"), forged)
    assert all(needle not in body for needle in actor_needles(who))


def test_a_page_query_carries_only_the_conditions_asked_for() -> None:
    sql, args = page_query(HistoryFilter(), after=Cursor(0, 0), limit=10, horizon=None)
    assert "org_id" not in sql and "position" not in sql and args == ["0", 0, 10]
    wanted = HistoryFilter(org="acme", catalog=True, actor="ops", levels=(HistoryLevel.USER,), types=("A", "B"))
    sql, args = page_query(wanted, after=Cursor(5, 6), limit=10, horizon=99)
    assert "org_id IS NULL" in sql and sql.count("position(") == 2 and args[:3] == ["5", 6, "99"]
    assert sql.endswith(f"LIMIT ${len(args)}") and args[-1] == 10


async def test_rollback_cancels_the_steps_scheduled_since_and_keeps_the_older_ones() -> None:
    service = CommandService(InMemoryEventStore(reader=Tenancy.CROSS_TENANT))
    await service.execute(DefineFlag(flag_key="ads.export", group="ads", reason="test"))
    org = Scope.org("acme")
    stream = org.stream("ads.export")
    await service.execute(SetSetting(scope=org, flag_key="ads.export", enabled=True, reason="on"))
    soon, later = datetime.now(UTC) + timedelta(days=1), datetime.now(UTC) + timedelta(days=2)
    await service.execute(ScheduleSetting(scope=org, flag_key="ads.export", effective_at=soon, rollout_percentage=50,
                                          reason="planned"))
    then = (await service.stream_head(stream)).value
    await service.execute(ScheduleSetting(scope=org, flag_key="ads.export", effective_at=later, enabled=False,
                                          reason="the mistake"))
    values = _Values({stream: {1: then}})
    at = RollbackTarget(at=datetime(2026, 1, 5, tzinfo=UTC))
    [done] = await rollback(service, values, [stream], at, reason="undo", actor=ADMIN)
    assert [e.type for e in done.events] == ["ScheduledSettingCancelled"]
    assert (await service.stream_head(stream)).value == then


async def test_a_definition_gets_its_attributes_and_kill_switch_back() -> None:
    service = CommandService(InMemoryEventStore(reader=Tenancy.CROSS_TENANT))
    await service.execute(DefineFlag(flag_key="ads.export", group="ads", description="first", reason="test"))
    stream = "flag/ads.export"
    then = (await service.stream_head(stream)).value
    await service.execute(UpdateFlag(flag_key="ads.export", kind=FlagKind.OPS, description="second", reason="x"))
    await service.execute(EngageKillSwitch(flag_key="ads.export", reason="panic"))
    values = _Values({stream: {1: then}})
    [done] = await rollback(service, values, [stream], RollbackTarget(version=1), reason="undo", actor=ADMIN)
    assert [e.type for e in done.events] == ["KillSwitchReleased", "FlagUpdated"]
    assert (await service.stream_head(stream)).value == then


async def test_a_definition_cannot_be_rolled_back_to_before_it_existed() -> None:
    service = await _service()
    values = _Values({"flag/ads.export": {}})
    early = RollbackTarget(at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidCommand) as refused:
        await rollback(service, values, ["flag/ads.export"], early, reason="x", actor=ADMIN)
    assert refused.value.field == "at"
