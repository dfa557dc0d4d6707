"""Targeting rules over the real stack: the command service as a process on Postgres (non-superuser role, RLS)
and its relay to Kafka.

An org admin sets its org's rules and a system admin the system's; the events are read back from the store (the
exact stored bytes, their hashes checked) and from the topic (the partition key of their level), and `flagcore`
folds both to a `TARGETING_MATCH` naming the rule. A refused list is a 422 naming the field and writes nothing; a
key of the wrong role or org is a 403; a stale `expected_version` a 409.
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

from events import Envelope, canonical_json, decode, from_record
from flagcore import Reason, evaluate, fold
from services.infra.settings import Settings
from tests.support.auth import admin_headers, bearer
from tests.support.kafka import consume_all
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

COLOURS = {"blue": "#0000ff", "red": "#ff0000", "green": "#00ff00"}
STAFF = {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
         "variant": "green"}  # fmt: skip
NEW_APP = {"id": "new-app", "conditions": [{"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]},
                                           {"attribute": "ip", "operator": "in_cidr", "values": ["10.0.0.0/8"]}],
           "variant": "red"}  # fmt: skip


@pytest.fixture(scope="module")
def service(
    make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    running = ServiceProcess("command", settings, Path(tmp_path_factory.mktemp("rules-commands")), health).start()
    yield running
    running.stop()


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{service.settings.command_port}"
    with httpx.Client(base_url=base, timeout=10, headers=admin_headers(service.settings)) as client:
        yield client


def write(http: httpx.Client, method: str, path: str, status: int = 201, headers: dict[str, str] | None = None,
          **fields: Any) -> dict[str, Any]:  # fmt: skip
    response = http.request(method, path, json={"reason": "rules integration", **fields}, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def key_for(http: httpx.Client, role: str, org: str | None) -> dict[str, str]:
    created = write(http, "POST", "/v1/keys", name=f"{role} {org}", role=role, org_id=org)
    return bearer(created["key"])


def theme_flag(http: httpx.Client) -> str:
    key = f"it{uuid.uuid4().hex[:8]}.theme"
    write(http, "POST", "/v1/flags", key=key, group="checkout", type="string", variants=COLOURS,
          default_variant="blue", off_variant="red")  # fmt: skip
    return key


def fresh_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def _stored(http: httpx.Client, key: str) -> list[Envelope]:
    body = http.get("/v1/events", params={"flag": key, "limit": 1000}).json()
    return [decode(canonical_json(event)) for event in body["events"]]  # `decode` checks each hash


def test_rules_land_in_the_store_and_on_the_topic_and_fold_to_a_targeting_match(
    http: httpx.Client, service: ServiceProcess
) -> None:
    key, org = theme_flag(http), fresh_org()
    write(http, "PUT", f"/v1/flags/{key}/system", enabled=True)
    org_admin = key_for(http, "org-admin", org)
    org_set = write(http, "PUT", f"/v1/orgs/{org}/flags/{key}/rules", headers=org_admin, rules=[STAFF],
                    expected_version=0)  # fmt: skip
    assert (org_set["stream"], org_set["version"]) == (f"org/{org}/flag/{key}/rules", 1)
    system_set = write(http, "PUT", f"/v1/flags/{key}/rules", rules=[NEW_APP])
    assert system_set["stream"] == f"flag/{key}/system/rules"
    shown = http.get(f"/v1/orgs/{org}/flags/{key}/rules", headers=org_admin)
    assert shown.status_code == 200 and [r["id"] for r in shown.json()["rules"]] == ["staff"]

    stored = _stored(http, key)
    assert [e.type for e in stored] == ["FlagDefined", "SystemDefaultSet", "TargetingRulesSet", "TargetingRulesSet"]
    org_event, system_event = stored[2], stored[3]
    assert (org_event.org_id, org_event.partition_key, org_event.actor.name) == (org, org, f"org-admin {org}")
    assert system_event.org_id is None and system_event.partition_key == "_system"

    total = len(http.get("/v1/events", params={"limit": 1000}).json()["events"])
    records = asyncio.run(consume_all(service.settings, total))
    ours = [(r.key, from_record(r.value, r.headers)) for r in records]
    published = sorted((e for _, e in ours if e.flag_key == key), key=lambda e: e.sequence)
    assert [e.event_id for e in published] == [e.event_id for e in stored]  # what the topic carries is the log
    keys_of = {e.event_id: k for k, e in ours}
    assert (keys_of[org_event.event_id], keys_of[system_event.event_id]) == (org.encode(), b"_system")

    for events in (published, stored):
        state = fold(events)
        staff = evaluate(state.catalog, state.tenant(org), key, user_id="u1", context={"email": "kim@acme.com"})
        assert (staff.value, staff.reason, staff.level, staff.rule) == (
            "#00ff00", Reason.TARGETING_MATCH, "org", "staff"
        )  # fmt: skip
        context = {"app_version": "2.3.1", "ip": "10.1.2.3"}
        elsewhere = evaluate(state.catalog, state.tenant("another-org"), key, user_id="u1", context=context)
        assert (elsewhere.value, elsewhere.level, elsewhere.rule) == ("#ff0000", "system", "new-app")
        plain = evaluate(state.catalog, state.tenant(org), key, user_id="u1", context={"email": "kim@example.com"})
        assert (plain.value, plain.reason) == ("#0000ff", Reason.STATIC)


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        (
            [{**STAFF, "conditions": [{"attribute": "email", "operator": "regex", "values": ["x"]}]}],
            "rules.0.conditions.0.operator",
        ),
        (
            [STAFF, {**NEW_APP, "conditions": [{"attribute": "v", "operator": "semver_gt", "values": ["2"]}]}],
            "rules.1.conditions.0.values.0",
        ),
        (
            [{**STAFF, "conditions": [{"attribute": "email", "operator": "matches", "values": ["(?=look)"]}]}],
            "rules.0.conditions.0.values.0",
        ),
        (
            [{**STAFF, "conditions": [{"attribute": "at", "operator": "before", "values": ["2027-01-01T00:00:00"]}]}],
            "rules.0.conditions.0.values.0",
        ),
        (
            [
                {
                    **STAFF,
                    "conditions": [{"attribute": "ip", "operator": "in_cidr", "values": ["10.0.0.0/8", "300.1/8"]}],
                }
            ],
            "rules.0.conditions.0.values.1",
        ),
        (
            [{**STAFF, "conditions": [{"attribute": "n", "operator": "gt", "values": [1, 2]}]}],
            "rules.0.conditions.0.values",
        ),
        ([STAFF, STAFF], "rules.1.id"),
        ([{**STAFF, "variant": "pink"}], "rules.0.variant"),
        (
            [{**STAFF, "variant": None, "split": [{"name": "blue", "weight": 600}, {"name": "green", "weight": 600}]}],
            "rules.0.split",
        ),
        (
            [{**STAFF, "conditions": [{"attribute": "n", "operator": "in", "values": list(range(501))}]}],
            "rules.0.conditions.0.values",
        ),
    ],
)
def test_a_refused_list_is_a_422_naming_the_field_and_writes_nothing(
    http: httpx.Client, rules: list[dict[str, Any]], field: str
) -> None:
    key, org = theme_flag(http), fresh_org()
    for path in (f"/v1/orgs/{org}/flags/{key}/rules", f"/v1/flags/{key}/rules"):
        refused = http.put(path, json={"reason": "r", "rules": rules})
        assert refused.status_code == 422, refused.text
        assert (refused.json()["error"], refused.json()["field"]) == ("invalid_request", field), refused.text
    assert [e.type for e in _stored(http, key)] == ["FlagDefined"]


def test_a_key_of_the_wrong_role_or_org_is_a_403_and_writes_nothing(http: httpx.Client) -> None:
    key, org = theme_flag(http), fresh_org()
    org_rules, system_rules = f"/v1/orgs/{org}/flags/{key}/rules", f"/v1/flags/{key}/rules"
    evaluator, auditor = key_for(http, "evaluator", org), key_for(http, "auditor", org)
    other_admin, org_admin = key_for(http, "org-admin", fresh_org()), key_for(http, "org-admin", org)
    for headers in (evaluator, auditor, other_admin):
        assert http.put(org_rules, json={"reason": "r", "rules": [STAFF]}, headers=headers).status_code == 403
        assert http.request("DELETE", org_rules, json={"reason": "r"}, headers=headers).status_code == 403
    for headers in (evaluator, auditor, org_admin):
        assert http.put(system_rules, json={"reason": "r", "rules": [STAFF]}, headers=headers).status_code == 403
    assert [e.type for e in _stored(http, key)] == ["FlagDefined"]


def test_a_stale_expected_version_is_a_409_naming_the_current_one(http: httpx.Client) -> None:
    key, org = theme_flag(http), fresh_org()
    path = f"/v1/orgs/{org}/flags/{key}/rules"
    write(http, "PUT", path, rules=[STAFF], expected_version=0)
    stale = http.put(path, json={"reason": "r", "rules": [NEW_APP], "expected_version": 0})
    assert stale.status_code == 409, stale.text
    assert (stale.json()["error"], stale.json()["current_version"]) == ("version_conflict", 1)
    cleared = write(http, "DELETE", path, expected_version=1)
    assert (cleared["version"], cleared["events"][0]["new"]) == (2, None)
    assert http.get(path).json() == {"stream": f"org/{org}/flag/{key}/rules", "version": 2, "rules": []}


def test_an_unknown_or_archived_flag_is_a_404(http: httpx.Client) -> None:
    missing = http.put(f"/v1/flags/it{uuid.uuid4().hex[:8]}.none/rules", json={"reason": "r", "rules": [STAFF]})
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_flag")
    key = theme_flag(http)
    write(http, "POST", f"/v1/flags/{key}/archive")
    archived = http.put(f"/v1/flags/{key}/rules", json={"reason": "r", "rules": [STAFF]})
    assert (archived.status_code, archived.json()["error"]) == (404, "unknown_flag")
    assert [e.type for e in _stored(http, key)] == ["FlagDefined", "FlagArchived"]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("one_flag", [True, False])
def test_an_org_rollback_restores_its_rules(http: httpx.Client, one_flag: bool) -> None:
    key, org = theme_flag(http), fresh_org()
    path = f"/v1/orgs/{org}/flags/{key}/rules"
    write(http, "PUT", path, rules=[STAFF])
    time.sleep(0.05)
    then = datetime.now(UTC)
    time.sleep(0.05)
    write(http, "PUT", path, rules=[NEW_APP, STAFF])
    target = {"at": _iso(then), "flag_key": key} if one_flag else {"at": _iso(then)}
    back = write(http, "POST", f"/v1/orgs/{org}/rollback", **target)
    assert back["changed"] and [s["stream"] for s in back["streams"]] == [f"org/{org}/flag/{key}/rules"], back
    assert [r["id"] for r in http.get(path).json()["rules"]] == ["staff"]
    again = write(http, "POST", f"/v1/orgs/{org}/rollback", status=200, **target)
    assert not again["changed"]


def test_a_flags_rollback_restores_the_systems_rules_once_it_had_any(http: httpx.Client) -> None:
    key = theme_flag(http)
    write(http, "PUT", f"/v1/flags/{key}/system", enabled=True)
    time.sleep(0.05)
    before_rules = datetime.now(UTC)
    time.sleep(0.05)
    plain = write(http, "POST", f"/v1/flags/{key}/rollback", status=200, at=_iso(before_rules))
    assert [s["stream"] for s in plain["streams"]] == [f"flag/{key}", f"flag/{key}/system"]  # no rules: as before
    write(http, "PUT", f"/v1/flags/{key}/rules", rules=[STAFF])
    back = write(http, "POST", f"/v1/flags/{key}/rollback", at=_iso(before_rules))
    restored = {s["stream"]: s["changed"] for s in back["streams"]}
    assert restored == {f"flag/{key}": False, f"flag/{key}/system": False, f"flag/{key}/system/rules": True}
    assert http.get(f"/v1/flags/{key}/rules").json()["rules"] == []
