"""Whole flows through the real services: HTTP change → Kafka → projector → Postgres → query."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from events import from_record
from flagcore import FlagState, evaluate, fold
from services.infra.postgres import set_tenant
from services.infra.settings import Role, Settings
from tests.support.auth import admin_key
from tests.support.http_flows import KEY, answer, ensure_flag, put, wait_for
from tests.support.kafka import read_to_end
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

@pytest.fixture
def http(stack: Stack) -> httpx.Client:
    with httpx.Client(timeout=10, headers=stack.headers) as client:
        yield client


def test_a_change_made_over_http_is_what_the_query_service_answers(stack: Stack, http, org_id) -> None:
    ensure_flag(http, stack)
    changed = put(http, f"{stack.command_url}/v1/orgs/{org_id}/platforms/tiktok/flags/{KEY}", enabled=True)
    event = changed["events"][0]
    url = f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}"

    wait_for(lambda: answer(http, url, platform="tiktok").get("value") is True, what="projection")
    got = answer(http, url, platform="tiktok")
    assert got["level"] == "platform"
    assert got["reason"] == "TARGETING_MATCH"
    assert got["event"]["id"] == event["event_id"]
    assert got["event"]["version"] == event["version"] == 1
    assert got["event"]["actor"] == "test admin"  # the key's name: the actor comes from the key
    # another platform of the same org is untouched
    assert answer(http, url, platform="meta")["level"] != "platform"

    put(http, f"{stack.command_url}/v1/orgs/{org_id}/users/u-1/flags/{KEY}", enabled=False)
    wait_for(lambda: answer(http, url, platform="tiktok", user="u-1").get("value") is False, what="user override")
    assert answer(http, url, platform="tiktok", user="u-2")["value"] is True


def test_cross_tenant_reads_return_nothing(stack: Stack, http, org_id) -> None:
    ensure_flag(http, stack)
    other = org_id + "-other"
    put(http, f"{stack.command_url}/v1/orgs/{org_id}/flags/{KEY}", enabled=True, rollout_percentage=40)
    url = f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}"
    wait_for(lambda: answer(http, url).get("level") == "org", what="projection")

    assert answer(http, f"{stack.query_url}/v1/orgs/{other}/flags/{KEY}")["level"] in (None, "system")

    async def as_query_role() -> tuple[int, int, int]:
        conn = await asyncpg.connect(stack.settings.pg_dsn(Role.QUERY))
        try:
            async with conn.transaction():
                await set_tenant(conn, other)
                leaked = await conn.fetchval("SELECT count(*) FROM overrides WHERE org_id = $1", org_id)
                leaked_history = await conn.fetchval("SELECT count(*) FROM flag_history WHERE org_id = $1", org_id)
            async with conn.transaction():
                await set_tenant(conn, org_id)
                own = await conn.fetchval("SELECT count(*) FROM overrides WHERE org_id = $1", org_id)
            return leaked, leaked_history, own
        finally:
            await conn.close()

    leaked, leaked_history, own = asyncio.run(as_query_role())
    assert (leaked, leaked_history) == (0, 0)
    assert own == 1


def test_racing_admins_exactly_one_wins(stack: Stack, http, org_id) -> None:
    ensure_flag(http, stack)
    url = f"{stack.command_url}/v1/orgs/{org_id}/flags/{KEY}"
    put(http, url, enabled=True)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10, headers=stack.headers) as client:
            bodies = [{"enabled": False, "reason": "a", "expected_version": 1},
                      {"rollout_percentage": 10, "reason": "b", "expected_version": 1}]
            return await asyncio.gather(*(client.put(url, json=b) for b in bodies))

    responses = asyncio.run(race())
    assert sorted(r.status_code for r in responses) == [201, 409]
    loser = next(r for r in responses if r.status_code == 409).json()
    assert loser["error"] == "version_conflict" and loser["current_version"] == 2


def test_flagctl_loads_the_catalogue_and_explains(stack: Stack, org_id) -> None:
    env = {**os.environ, "FLAGS_COMMAND_URL": stack.command_url, "FLAGS_QUERY_URL": stack.query_url,
           "FLAGS_API_KEY": admin_key(stack.settings)}

    def flagctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flagctl.main", *args], env=env, capture_output=True, text=True, timeout=60
        )

    loaded = flagctl("catalog", "load")
    assert loaded.returncode == 0, loaded.stderr
    again = flagctl("catalog", "load")
    assert again.returncode == 0 and "0 flags defined" in again.stdout and "34 already present" in again.stdout

    changed = flagctl("set", "ai.insights.enabled", "--org", org_id, "--platform", "tiktok",
                      "--off", "--reason", "pilot paused", "--json")
    assert changed.returncode == 0, changed.stderr
    event_id = json.loads(changed.stdout)["events"][0]["event_id"]

    def evaluated() -> dict:
        out = flagctl("eval", "ai.insights.enabled", "--org", org_id, "--platform", "tiktok", "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    wait_for(lambda: evaluated()["level"] == "platform", what="flagctl eval")
    answer = evaluated()
    assert (answer["value"], answer["event"]["id"], answer["event"]["version"]) == (False, event_id, 1)

    audit = flagctl("audit", "--org", org_id, "--json")
    lines = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["type"], e["reason"], e["actor"]["name"]) for e in lines] == [
        ("PlatformOverrideSet", "pilot paused", "test admin")
    ]

    stale = flagctl("set", "ai.insights.enabled", "--org", org_id, "--platform", "tiktok", "--on",
                    "--reason", "x", "--expect-version", "7")
    assert stale.returncode == 1 and "version_conflict" in stale.stderr and "current version 1" in stale.stderr
    unknown = flagctl("set", "no.such.flag", "--org", org_id, "--on", "--reason", "x")
    assert unknown.returncode == 1 and "unknown_flag" in unknown.stderr


async def _read_log(settings: Settings) -> list:
    """Every event on the topic, decoded, in partition order (a fresh replay's input)."""
    return [from_record(r.value, r.headers) for r in await read_to_end(settings)]


async def _projected_overrides(settings: Settings, orgs: list[str]) -> dict:
    conn = await asyncpg.connect(settings.pg_dsn(Role.QUERY))
    try:
        rows = {}
        for org in orgs:
            async with conn.transaction():
                await set_tenant(conn, org)
                for r in await conn.fetch("SELECT * FROM overrides"):
                    rows[(r["org_id"], r["level"], r["platform"], r["user_id"], r["flag_key"])] = (
                        r["enabled"], r["rollout_percentage"], r["version"], str(r["event_id"]))
        return rows
    finally:
        await conn.close()


def _folded_overrides(state: FlagState) -> dict:
    rows = {}
    for org, rules in state.tenants.items():
        for level, table in (("org", {("", "", k): s for k, s in rules.org.items()}),
                             ("platform", {(p, "", k): s for (p, k), s in rules.platform.items()}),
                             ("user", {("", u, k): s for (u, k), s in rules.user.items()})):
            for (platform, user, key), s in table.items():
                assert s.source is not None
                rows[(org, level, platform, user, key)] = (
                    s.enabled, s.rollout_percentage, s.source.version, s.source.event_id)
    return rows


def test_projector_killed_mid_stream_ends_equal_to_a_fresh_replay(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    stack = start_stack(settings, tmp_path)
    orgs = [f"kill-{i}" for i in range(6)]
    changed = 0
    try:
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            ensure_flag(http, stack)
            ensure_flag(http, stack, "platform.meta.enabled")
            for i in range(240):
                org, key = orgs[i % len(orgs)], (KEY, "platform.meta.enabled")[i % 2]
                scope = ("", "/platforms/meta", f"/users/u{i % 5}")[i % 3]
                body = {"enabled": i % 4 != 0} if i % 7 else {"rollout_percentage": i % 101}
                changed += len(put(http, f"{stack.command_url}/v1/orgs/{org}{scope}/flags/{key}", **body)["events"])
                if i == 120:
                    stack.projector.kill()
                if i == 180:
                    stack.projector.start()
        log = asyncio.run(_read_log(settings))
        assert len(log) == changed + 3  # the admin key, the two definitions, then every change reported
        expected = _folded_overrides(fold(log))
        wait_for(lambda: asyncio.run(_projected_overrides(settings, orgs)) == expected, timeout=30,
                 what="projection to equal the replay")
        state = fold(log)
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            for org in orgs:
                for user in ("u0", "u3", "someone"):
                    got = answer(http, f"{stack.query_url}/v1/orgs/{org}/flags/{KEY}", platform="meta", user=user)
                    local = evaluate(state.catalog, state.tenant(org), KEY, platform="meta", user_id=user)
                    assert (got["value"], got["level"]) == (local.value, local.level)
    finally:
        stack.stop()
