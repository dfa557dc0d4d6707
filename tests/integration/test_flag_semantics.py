"""Schedules, kill switches, experiments and lifecycle through the real pipeline:
command API → outbox → Kafka → projector → Postgres (RLS) → Redis → query service."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from flagcore import Variant, select_variant
from services.infra.settings import Role
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def wait_for(probe: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def unique(prefix: str) -> str:
    return f"{prefix}.t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers=stack.headers) as client:
        yield client


def write(http: httpx.Client, method: str, url: str, **body: Any) -> dict[str, Any]:
    response = http.request(method, url, json={"reason": "semantics test", **body})
    assert response.status_code in (200, 201), response.text
    return response.json()


def evaluation(http: httpx.Client, stack: Stack, org: str, key: str, **params: str) -> dict[str, Any]:
    response = http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{key}", params=params)
    return response.json() if response.status_code == 200 else {}


def test_a_scheduled_change_takes_effect_at_its_instant_with_no_new_event(stack: Stack, http, org_id) -> None:
    key = unique("sched")
    write(http, "POST", f"{stack.command_url}/v1/flags", key=key, group="sched")
    write(http, "PUT", f"{stack.command_url}/v1/flags/{key}/system", enabled=False)
    at = datetime.now(UTC) + timedelta(seconds=4)
    made = write(
        http,
        "PUT",
        f"{stack.command_url}/v1/orgs/{org_id}/flags/{key}/schedule",
        effective_at=instant(at),
        enabled=True,
    )
    step_event = made["events"][0]["event_id"]

    listing_url = f"{stack.query_url}/v1/orgs/{org_id}/schedules"
    steps = wait_for(lambda: http.get(listing_url, params={"flag": key}).json()["steps"], what="the schedule")
    assert steps == [
        {
            "flag_key": key,
            "level": "org",
            "platform": None,
            "user_id": None,
            "at": instant(at),
            "enabled": True,
            "rollout_percentage": None,
        }
    ]
    # the system default travels under the system key, on another partition than the org's schedule: wait for it too
    before = wait_for(lambda: (e := evaluation(http, stack, org_id, key)).get("level") == "system" and e,
                      what="the system default")  # also warms both cache levels
    assert (before["value"], before["level"]) == (False, "system")
    assert datetime.now(UTC) < at, "the pipeline took longer than the lead time; the test proves nothing"

    after = wait_for(lambda: (e := evaluation(http, stack, org_id, key)).get("value") and e, what="the boundary")
    assert datetime.now(UTC) >= at
    assert (after["level"], after["variant"], after["event"]["id"]) == ("org", "on", step_event)
    assert http.get(listing_url, params={"flag": key}).json()["steps"] == []  # nothing left to come


def test_kill_switch_wins_everywhere_and_is_released(stack: Stack, http, org_id) -> None:
    key = unique("ops")
    write(http, "POST", f"{stack.command_url}/v1/flags", key=key, group="ops", kind="ops", owner="sre")
    write(http, "PUT", f"{stack.command_url}/v1/flags/{key}/system", enabled=True)
    write(http, "PUT", f"{stack.command_url}/v1/orgs/{org_id}/users/u1/flags/{key}", enabled=True)
    wait_for(lambda: evaluation(http, stack, org_id, key, user="u1").get("level") == "user", what="projection")

    killed = write(http, "POST", f"{stack.command_url}/v1/flags/{key}/kill-switch")
    assert killed["events"][0]["type"] == "KillSwitchEngaged"
    answer = wait_for(
        lambda: (e := evaluation(http, stack, org_id, key, user="u1")).get("reason") == "DISABLED" and e,
        what="the kill switch",
    )
    assert (answer["value"], answer["event"]["id"]) == (False, killed["events"][0]["event_id"])
    assert "kill switch" in answer["explanation"]

    write(http, "DELETE", f"{stack.command_url}/v1/flags/{key}/kill-switch")
    back = wait_for(lambda: (e := evaluation(http, stack, org_id, key, user="u1")).get("value") and e, what="release")
    assert back["level"] == "user"

    release_flag = unique("rel")
    write(http, "POST", f"{stack.command_url}/v1/flags", key=release_flag, group="rel")
    refused = http.post(f"{stack.command_url}/v1/flags/{release_flag}/kill-switch", json={"reason": "no"})
    assert (refused.status_code, refused.json()["field"]) == (422, "kind")


def test_experiment_variants_are_sticky_and_match_the_pure_core(stack: Stack, http, org_id) -> None:
    key = unique("exp")
    arms = [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}]
    write(http, "POST", f"{stack.command_url}/v1/flags", key=key, group="exp", kind="experiment", variants=arms)
    write(http, "PUT", f"{stack.command_url}/v1/flags/{key}/system", enabled=True)
    wait_for(lambda: evaluation(http, stack, org_id, key, user="u0").get("value"), what="projection")
    core = (Variant("control", 500), Variant("treatment", 500))
    for i in range(20):
        got = evaluation(http, stack, org_id, key, user=f"user-{i}")
        assert got["variant"] == select_variant(key, f"user-{i}", core).name
    listing = http.get(f"{stack.query_url}/v1/flags").json()["flags"]
    mine = next(f for f in listing if f["key"] == key)
    assert (mine["kind"], mine["variants"]) == (
        "experiment",
        [{"name": "control", "weight": 500}, {"name": "treatment", "weight": 500}],
    )


def test_read_models_hold_the_new_columns_under_rls(stack: Stack, http, org_id) -> None:
    key = unique("cols")
    expired = datetime.now(UTC) - timedelta(days=1)
    write(
        http,
        "POST",
        f"{stack.command_url}/v1/flags",
        key=key,
        group="cols",
        owner="team-x",
        expires_at=instant(expired),
    )
    write(
        http,
        "PUT",
        f"{stack.command_url}/v1/orgs/{org_id}/platforms/meta/flags/{key}/schedule",
        effective_at=instant(datetime.now(UTC) + timedelta(days=2)),
        rollout_percentage=10,
    )
    wait_for(
        lambda: http.get(f"{stack.query_url}/v1/orgs/{org_id}/schedules", params={"flag": key}).json()["steps"],
        what="projection",
    )

    async def read() -> tuple[Any, Any, Any]:
        conn = await asyncpg.connect(stack.settings.pg_dsn(Role.QUERY))
        try:
            async with conn.transaction():
                await conn.execute("SELECT set_config('flags.org_id', $1, true)", org_id)
                flag = await conn.fetchrow("SELECT owner, expires_at, killed FROM flags WHERE flag_key = $1", key)
                mine = await conn.fetchval("SELECT schedule::text FROM overrides WHERE flag_key = $1", key)
            others = await conn.fetchval("SELECT count(*) FROM overrides WHERE flag_key = $1", key)
        finally:
            await conn.close()
        return flag, mine, others

    flag, schedule, unscoped = asyncio.run(read())
    assert (flag["owner"], flag["killed"]) == ("team-x", False)
    assert abs(flag["expires_at"] - expired) < timedelta(seconds=1)
    assert '"rollout_percentage": 10' in schedule
    assert unscoped == 0  # no tenant set: RLS shows nothing

    report = http.get(f"{stack.command_url}/v1/reports/stale-flags", params={"days": 30}).json()
    stale = next(f for f in report["flags"] if f["key"] == key)
    assert (stale["reason"], stale["owner"]) == ("expired", "team-x")
