"""Time travel against the real services: the past answers equal the live answers given then,
with and without snapshots, and a snapshot that disagrees with the log is never trusted."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.command.eventstore.snapshot_store import PostgresHistory
from services.command.timetravel.positions import kafka_positions
from services.command.timetravel.service import Asked, TimeTravel
from services.command.timetravel.snapshots import take
from services.infra.postgres import create_pool
from services.infra.settings import Role
from services.infra.tenancy import Tenancy
from tests.support.stack import Stack
from tests.support.tenants import database_url

pytestmark = pytest.mark.integration

FLAG = "timetravel.probe"
VIEW = {"platform": "tiktok", "user": "u1"}


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _live(http: httpx.Client, stack: Stack, org: str, previous: str | None) -> dict:
    """The query service's answer once its deciding event is no longer `previous` (each step changes it)."""
    url = f"{stack.query_url}/v1/orgs/{org}/flags/{FLAG}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = http.get(url, params=VIEW)
        if response.status_code == 200 and (response.json().get("event") or {}).get("id") != previous:
            return response.json()
        time.sleep(0.05)
    raise AssertionError("the query service never reflected the change")


def _travel(http: httpx.Client, stack: Stack, org: str, at: datetime) -> dict:
    response = http.get(f"{stack.command_url}/v1/audit/at", params={"org": org, "at": _iso(at), "flag": FLAG, **VIEW})
    assert response.status_code == 200, response.text
    (view,) = response.json()["flags"]
    return view


def _same(live: dict, past: dict) -> None:
    assert past["value"] == live["value"]
    assert past["reason"] == live["reason"]
    assert past["level"] == live.get("level")
    assert (past["decided_by"] or {}).get("event_id") == (live.get("event") or {}).get("id")


@pytest.fixture
def http(stack: Stack) -> httpx.Client:
    with httpx.Client(timeout=10, headers=stack.headers) as client:
        yield client


def test_the_past_answers_what_the_live_service_answered_then(stack: Stack, http, org_id) -> None:
    response = http.post(f"{stack.command_url}/v1/flags", json={"key": FLAG, "group": "tt", "reason": "setup"})
    assert response.status_code in (201, 409), response.text
    base = f"{stack.command_url}/v1/orgs/{org_id}"
    steps = [
        ("PUT", f"{base}/flags/{FLAG}", {"enabled": True}),
        ("PUT", f"{base}/platforms/tiktok/flags/{FLAG}", {"enabled": False}),
        ("PUT", f"{base}/users/u1/flags/{FLAG}", {"rollout_percentage": 100}),
        ("DELETE", f"{base}/users/u1/flags/{FLAG}", {}),
        ("DELETE", f"{base}/platforms/tiktok/flags/{FLAG}", {}),
        ("PUT", f"{base}/flags/{FLAG}", {"rollout_percentage": 0}),
    ]
    seen: list[tuple[datetime, dict]] = []
    for method, url, body in steps:
        changed = http.request(method, url, json={"reason": "time travel test", **body})
        assert changed.status_code == 201, changed.text
        after = datetime.now(UTC)
        live = _live(http, stack, org_id, (seen[-1][1].get("event") or {}).get("id") if seen else None)
        seen.append((after, live))
        time.sleep(0.01)
    for after, live in seen:
        _same(live, _travel(http, stack, org_id, after))

    run = asyncio.run(_snapshot(stack))  # every event its own snapshot part: each answer now starts from one
    assert run is not None and sum(run.kafka_offsets.values()) > 0  # where the run ends on the topic
    for after, live in seen:
        _same(live, _travel(http, stack, org_id, after))

    before_any = seen[0][0] - timedelta(seconds=30)
    diff = http.get(
        f"{stack.command_url}/v1/audit/diff",
        params={"org": org_id, "from": _iso(before_any), "to": _iso(seen[-1][0]), **VIEW},
    )
    assert diff.status_code == 200, diff.text
    change = next(c for c in diff.json()["changes"] if c["flag_key"] == FLAG)
    assert change["after"]["settings"]["org"]["rollout_percentage"] == 0


async def _snapshot(stack: Stack):  # type: ignore[no-untyped-def]
    pool = await create_pool(stack.settings, Role.COMMAND)
    try:
        return await take(
            PostgresHistory(pool), lambda s, o: kafka_positions(stack.settings, s, o), every=1, settle=0
        )
    finally:
        await pool.close()


def test_a_snapshot_that_disagrees_with_the_log_is_not_used(stack: Stack, http, org_id) -> None:
    response = http.post(f"{stack.command_url}/v1/flags", json={"key": FLAG, "group": "tt", "reason": "setup"})
    assert response.status_code in (201, 409), response.text
    for enabled in (True, False, True):
        changed = http.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{FLAG}",
                           json={"reason": "tamper test", "enabled": enabled})
        assert changed.status_code == 201, changed.text
    asyncio.run(_snapshot(stack))
    now = datetime.now(UTC)

    async def check() -> None:
        pool = await create_pool(stack.settings, Role.COMMAND)
        # Tampering takes the superuser: row-level security binds even the owner, and it has no UPDATE policy.
        owner = await asyncpg.connect(database_url(stack.settings))
        try:
            history = PostgresHistory(pool).reading_as(Tenancy.tenant(org_id))  # as the org's auditor reads
            honest = await TimeTravel(history).at(Asked(org_id), now, FLAG)
            assert await history.part_is_sound(await history.nearest_part(org_id, now))  # type: ignore[arg-type]
            # the org's one stream, with its last covered event's hash replaced
            await owner.execute(
                "UPDATE snapshots SET state = jsonb_set(state, '{heads,0,2}', to_jsonb(repeat('0', 64))) "
                "WHERE scope = $1",
                org_id,
            )
            part = await history.nearest_part(org_id, now)
            assert part is not None and not await history.part_is_sound(part)
            tampered = await TimeTravel(history).at(Asked(org_id), now, FLAG)
            assert tampered[FLAG].evaluation == honest[FLAG].evaluation
            assert tampered[FLAG].evaluation.value is True
        finally:
            await owner.close()
            await pool.close()

    asyncio.run(check())


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"at": "2999-01-01T00:00:00Z"}, 422, "at"),
        ({"at": "yesterday"}, 422, "at"),
        ({"at": "2026-01-01T00:00:00"}, 422, "at"),  # no offset: which instant is meant is unknown
        ({}, 422, "at"),
        ({"at": "2026-01-01T00:00:00Z", "org": "no-such-org-anywhere"}, 404, "org"),
        ({"at": "NOW", "flag": "no.such.flag"}, 404, "flag"),
        ({"at": "NOW", "platform": "myspace"}, 422, "platform"),
    ],
)
def test_bad_questions_get_a_4xx_naming_the_field(stack: Stack, http, org_id, params, status, field) -> None:
    http.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{FLAG}", json={"reason": "setup", "enabled": True})
    params = {"org": org_id, **params}
    if params.get("at") == "NOW":
        params["at"] = _iso(datetime.now(UTC))
    response = http.get(f"{stack.command_url}/v1/audit/at", params=params)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_a_diff_that_runs_backwards_or_into_the_future_names_the_field(stack: Stack, http, org_id) -> None:
    http.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{FLAG}", json={"reason": "setup", "enabled": True})
    now = datetime.now(UTC)
    url = f"{stack.command_url}/v1/audit/diff"
    backwards = http.get(url, params={"org": org_id, "from": _iso(now), "to": _iso(now - timedelta(hours=1))})
    assert (backwards.status_code, backwards.json()["field"]) == (422, "to")
    future = http.get(url, params={"org": org_id, "from": _iso(now), "to": _iso(now + timedelta(days=1))})
    assert (future.status_code, future.json()["field"]) == (422, "to")
    no_org = http.get(url, params={"from": _iso(now), "to": _iso(now)})
    assert (no_org.status_code, no_org.json()["field"]) == (422, "org")


def test_flagctl_audit_at_and_diff(stack: Stack, http, org_id, capsys: pytest.CaptureFixture[str]) -> None:
    from flagctl.main import main as flagctl
    from tests.support.auth import admin_key

    http.post(f"{stack.command_url}/v1/flags", json={"key": FLAG, "group": "tt", "reason": "setup"})
    before = datetime.now(UTC)
    changed = http.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{FLAG}", json={"reason": "cli", "enabled": True})
    event_id = changed.json()["events"][0]["event_id"]
    after = datetime.now(UTC)
    common = ["--command-url", stack.command_url, "--key", admin_key(stack.settings), "audit"]
    assert flagctl([*common, "at", _iso(after), "--org", org_id, "--flag", FLAG]) == 0
    out = capsys.readouterr().out
    assert f"{FLAG} is on: org level, fixed value, set by test admin ('cli')" in out
    assert f"[event {event_id} org/{org_id}/flag/{FLAG} v1 by test admin]" in out
    assert flagctl([*common, "diff", _iso(before), _iso(after), "--org", org_id]) == 0
    assert f"{org_id}: 1 flags changed" in capsys.readouterr().out
    assert flagctl([*common, "at", "2999-01-01T00:00:00Z", "--org", org_id]) == 1
    assert "at" in capsys.readouterr().err
