"""Segments over the real stack: the command service as a process on Postgres (non-superuser role, RLS), its
relay to Kafka, and the fold of what reached the topic.

A segment is defined, changed and archived at the system level and in an org; a bad body is a 422 naming the
field and writes nothing; an archive is refused (409, naming the flags) while rules name the segment, and
`GET …/flags` lists those rules. Targeting rules are appended through the Postgres event store itself (their
routes are not this module's), which takes the segments' locks shared and refuses a rule naming a segment that
is not live in its scope. An org admin manages its own org's
segments only, and reads the system's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import Actor, Level, TargetingRulesSet, from_record
from flagcore import Reason, evaluate, fold
from services.command.errors import InvalidCommand
from services.command.eventstore.writes import PostgresEventStore
from services.infra.postgres import create_pool
from services.infra.settings import Role, Settings
from services.infra.tenancy import Tenancy
from tests.support.auth import admin_headers, bearer
from tests.support.kafka import consume_all
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(
    make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    running = ServiceProcess("command", settings, Path(tmp_path_factory.mktemp("segments")), health).start()
    yield running
    running.stop()


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{service.settings.command_port}"
    with httpx.Client(base_url=base, timeout=10, headers=admin_headers(service.settings)) as client:
        yield client


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write(http: httpx.Client, method: str, path: str, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = http.request(method, path, json={"reason": "segments integration", **fields})
    assert response.status_code == status, response.text
    return response.json()


def members(*users: str) -> list[dict[str, Any]]:
    return [{"attribute": "targeting_key", "operator": "in", "values": list(users)}]


def set_rules(settings: Settings, flag: str, org: str | None, *segments: str) -> None:
    """Append the flag's rule list at a level through the event store (one rule per segment named)."""

    async def append() -> None:
        pool = await create_pool(settings, Role.COMMAND, min_size=1, max_size=1)
        store = PostgresEventStore(pool, dsn=settings.pg_dsn(Role.COMMAND), reader=Tenancy.CROSS_TENANT)
        level = Level.SYSTEM if org is None else Level.ORG
        rules = [{"id": f"r-{s}", "conditions": [{"operator": "in_segment", "values": [s]}], "variant": "on"}
                 for s in segments]  # fmt: skip
        change = TargetingRulesSet.model_validate({"flag_key": flag, "level": level, "org_id": org, "rules": rules})
        head = await store.stream_head(change.stream)
        try:
            await store.append([change], actor=Actor(id="it", name="it"), reason="rules", expected_version=head.version,
                               occurred_at=datetime.now(UTC))  # fmt: skip
        finally:
            await pool.close()

    asyncio.run(append())


def define_flag(http: httpx.Client) -> str:
    key = f"seg{uuid.uuid4().hex[:8]}.enabled"
    write(http, "POST", "/v1/flags", key=key, group="seg")
    return key


def test_a_system_segment_is_defined_changed_archived_and_folds_from_the_topic(
    http: httpx.Client, service: ServiceProcess
) -> None:
    key, org = _fresh("beta"), _fresh("org")
    made = write(http, "POST", "/v1/segments", segment_key=key, name="Beta testers", conditions=members("u-1", "u-2"))
    assert (made["stream"], made["version"], made["events"][0]["type"]) == (f"segment/{key}", 1, "SegmentDefined")
    assert made["events"][0]["new"]["conditions"][0]["values"] == ["u-1", "u-2"]
    again = http.post("/v1/segments", json={"segment_key": key, "name": "B", "conditions": members("x"), "reason": "r"})
    assert (again.status_code, again.json()["error"]) == (409, "invalid_transition")

    same = write(http, "PATCH", f"/v1/segments/{key}", 200, name="Beta testers")
    assert same["changed"] is False and same["version"] == 1
    changed = write(http, "PATCH", f"/v1/segments/{key}", conditions=members("u-2", "u-3"))
    assert changed["events"][0]["type"] == "SegmentChanged"
    assert changed["events"][0]["previous"]["conditions"][0]["values"] == ["u-1", "u-2"]
    stale = http.patch(f"/v1/segments/{key}", json={"name": "x", "reason": "r", "expected_version": 1})
    assert stale.status_code == 409 and stale.json()["error"] == "version_conflict"

    audited: list[tuple[str, str]] = []
    for _ in range(50):  # the history shows a row once no older transaction is still in flight
        history = http.get("/v1/history", params={"level": "segment"})
        assert history.status_code == 200, history.text
        audited = [(e["type"], e["level"]) for e in history.json()["entries"] if e["stream"] == f"segment/{key}"]
        if len(audited) == 2:
            break
        time.sleep(0.1)
    assert audited == [("SegmentDefined", "segment"), ("SegmentChanged", "segment")]
    shown = http.get(f"/v1/segments/{key}").json()
    assert (shown["name"], shown["version"], shown["archived"]) == ("Beta testers", 2, False)
    assert key in [s["key"] for s in http.get("/v1/segments").json()["segments"]]

    flag = define_flag(http)
    set_rules(service.settings, flag, org, key)
    total = len(http.get("/v1/events", params={"limit": 1000}).json()["events"])
    records = asyncio.run(consume_all(service.settings, total))
    published = sorted((from_record(r.value, r.headers) for r in records), key=lambda e: e.sequence)
    ours = [e for e in published if e.stream == f"segment/{key}"]
    assert [e.type for e in ours] == ["SegmentDefined", "SegmentChanged"]
    assert {dict(r.headers)["ce_type"] for r in records if r.key == b"_system"} >= {
        b"io.flagstream.SegmentDefined.v1", b"io.flagstream.SegmentChanged.v1"}  # fmt: skip
    state = fold(published)
    tenant = state.tenant(org)
    assert evaluate(state.catalog, tenant, flag, user_id="u-3").reason is Reason.TARGETING_MATCH
    assert evaluate(state.catalog, tenant, flag, user_id="u-1").reason is Reason.DEFAULT

    at = datetime.now(UTC).isoformat()
    travelled = http.get("/v1/audit/at", params={"org": org, "at": at, "flag": flag, "user": "u-3"})
    assert travelled.status_code == 200, travelled.text
    assert travelled.json()["flags"][0]["reason"] == "TARGETING_MATCH"  # time travel folds the segment too

    refused = http.post(f"/v1/segments/{key}/archive", json={"reason": "done"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert (body["error"], body["field"]) == ("segment_in_use", "segment_key")
    assert body["flags"] == [{"flag_key": flag, "org_id": org, "rules": [f"r-{key}"]}]
    assert flag in body["detail"]
    assert http.get(f"/v1/segments/{key}").json()["version"] == 2  # nothing written

    set_rules(service.settings, flag, org)  # the rules no longer name it
    assert http.get(f"/v1/segments/{key}/flags").json()["flags"] == []
    archived = write(http, "POST", f"/v1/segments/{key}/archive")
    assert archived["events"][0]["new"]["archived"] is True
    assert write(http, "POST", f"/v1/segments/{key}/archive", 200)["changed"] is False
    after = http.patch(f"/v1/segments/{key}", json={"name": "again", "reason": "r"})
    assert (after.status_code, after.json()["error"]) == (409, "invalid_transition")


def test_which_flags_use_a_segment_follows_whose_segment_the_rules_see(
    http: httpx.Client, service: ServiceProcess
) -> None:
    key, org, own = _fresh("staff"), _fresh("org"), _fresh("org")
    write(http, "POST", "/v1/segments", segment_key=key, name="Staff", conditions=members("u-1"))
    write(http, "POST", f"/v1/orgs/{own}/segments", segment_key=key, name="Our staff", conditions=members("u-9"))
    system_flag, org_flag, own_flag = define_flag(http), define_flag(http), define_flag(http)
    set_rules(service.settings, system_flag, None, key)
    set_rules(service.settings, org_flag, org, key)
    set_rules(service.settings, own_flag, own, key)  # names the org's own segment, not the system's

    used = http.get(f"/v1/segments/{key}/flags").json()
    assert used["flags"] == sorted(
        [{"flag_key": system_flag, "org_id": None, "rules": [f"r-{key}"]},
         {"flag_key": org_flag, "org_id": org, "rules": [f"r-{key}"]}],
        key=lambda u: u["flag_key"],
    )  # fmt: skip
    mine = http.get(f"/v1/orgs/{own}/segments/{key}/flags").json()
    assert mine["flags"] == [{"flag_key": own_flag, "org_id": own, "rules": [f"r-{key}"]}]
    refused = http.post(f"/v1/orgs/{own}/segments/{key}/archive", json={"reason": "r"})
    assert refused.status_code == 409 and [u["flag_key"] for u in refused.json()["flags"]] == [own_flag]
    unknown = http.get(f"/v1/orgs/{org}/segments/{key}")
    assert (unknown.status_code, unknown.json()["error"], unknown.json()["field"]) == (
        404, "unknown_segment", "segment_key")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"segment_key": "bad key", "name": "x", "conditions": members("u")}, "segment_key"),
        ({"segment_key": "k", "name": "x"}, "conditions"),
        ({"segment_key": "k", "name": "x", "conditions": []}, "conditions"),
        ({"segment_key": "k", "name": "x", "conditions": members("u") * 21}, "conditions"),
        (
            {"segment_key": "k", "name": "x", "conditions": [{"operator": "in_segment", "values": ["other"]}]},
            "conditions.0",
        ),
        (
            {"segment_key": "k", "name": "x", "conditions": [{"attribute": "age", "operator": "lt", "values": ["x"]}]},
            "conditions.0",
        ),
        (
            {"segment_key": "k", "name": "x", "conditions": [{"attribute": "e", "operator": "nope", "values": ["x"]}]},
            "conditions.0.operator",
        ),
        ({"segment_key": "k", "name": "", "conditions": members("u")}, "name"),
        ({"segment_key": "k", "name": "x", "conditions": members("a\u0000b")}, "conditions"),
        ({"segment_key": "k", "name": "x", "conditions": members("u"), "extra": 1}, "extra"),
    ],
)
def test_a_bad_segment_is_a_422_naming_the_field_and_writes_nothing(
    http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    org = _fresh("org")
    response = http.post(f"/v1/orgs/{org}/segments", json={"reason": "r", **body})
    assert response.status_code == 422, response.text
    assert (response.json()["error"], response.json()["field"]) == ("invalid_request", field)
    assert http.get(f"/v1/orgs/{org}/segments").json()["segments"] == []


def test_a_thousand_member_segment_is_accepted_within_the_body_limit(http: httpx.Client) -> None:
    key = _fresh("big")
    made = write(
        http, "POST", "/v1/segments", segment_key=key, name="Big", conditions=members(*(f"m{i}" for i in range(1000)))
    )
    assert len(made["events"][0]["new"]["conditions"][0]["values"]) == 1000


def test_an_org_admin_manages_its_own_orgs_segments_and_reads_the_systems(
    http: httpx.Client, service: ServiceProcess
) -> None:
    org, other, key = _fresh("org"), _fresh("org"), _fresh("seg")
    created = write(http, "POST", "/v1/keys", name="org admin", role="org-admin", org_id=org)
    base = f"http://127.0.0.1:{service.settings.command_port}"
    with httpx.Client(base_url=base, timeout=10, headers=bearer(created["key"])) as admin:
        body = {"segment_key": key, "name": "Mine", "conditions": members("u-1"), "reason": "r"}
        assert admin.post(f"/v1/orgs/{org}/segments", json=body).status_code == 201
        assert admin.post(f"/v1/orgs/{other}/segments", json=body).status_code == 403
        assert admin.post("/v1/segments", json=body).status_code == 403
        write(http, "POST", "/v1/segments", segment_key=key, name="Everyone's", conditions=members("u-2"))
        listed = admin.get("/v1/segments")
        assert listed.status_code == 200 and key in [s["key"] for s in listed.json()["segments"]]  # RLS: readable
        assert admin.get(f"/v1/segments/{key}").json()["name"] == "Everyone's"
        head = admin.get(f"/v1/streams/segment/{key}").json()  # a system segment's stream reads as the catalogue
        assert (head["version"], head["value"]["name"]) == (1, "Everyone's")
        assert admin.get(f"/v1/orgs/{other}/segments").status_code == 403
        assert [s["key"] for s in admin.get(f"/v1/orgs/{org}/segments").json()["segments"]] == [key]
        assert admin.post(f"/v1/segments/{key}/archive", json={"reason": "r"}).status_code == 403


def test_rules_may_name_only_live_segments_of_their_scope(http: httpx.Client, service: ServiceProcess) -> None:
    """The append of a rule list checks, under the segments' locks, that each one named resolves to a live one."""
    key, org, other = _fresh("gone"), _fresh("org"), _fresh("org")
    flag = define_flag(http)
    with pytest.raises(InvalidCommand) as unknown:
        set_rules(service.settings, flag, org, key)
    assert unknown.value.field == "rules.0.conditions.0.values" and "is not defined" in unknown.value.detail
    write(http, "POST", f"/v1/orgs/{other}/segments", segment_key=key, name="Theirs", conditions=members("u-1"))
    with pytest.raises(InvalidCommand):
        set_rules(service.settings, flag, org, key)  # another org's segment is not this org's
    with pytest.raises(InvalidCommand):
        set_rules(service.settings, flag, None, key)  # nor the system's rules'
    write(http, "POST", f"/v1/orgs/{org}/segments", segment_key=key, name="Ours", conditions=members("u-1"))
    set_rules(service.settings, flag, org, key)
    set_rules(service.settings, flag, org)
    write(http, "POST", f"/v1/orgs/{org}/segments/{key}/archive")
    with pytest.raises(InvalidCommand) as archived:
        set_rules(service.settings, flag, org, key)
    assert "is archived" in archived.value.detail
