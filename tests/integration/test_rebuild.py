"""Rebuild and switch-over against the real services, and `flagctl audit verify --projection`.

A stack of its own (the switch swaps its read-model tables): the rebuild is interrupted
and resumed, the switch happens while the query service answers in a loop, and the live
projector carries on into the rebuilt tables. Verification finds a clean projection clean
and names a row changed behind the projector's back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import asyncpg
import httpx
import pytest

from flagctl.main import main as flagctl
from services.infra.settings import Role, Settings
from services.projector.projection_check import verify_projection
from services.projector.rebuild.operation import rebuild
from services.projector.rebuild.replay import replay
from services.projector.rebuild.schema import create_schema, group_offsets
from tests.support.processes import settings_env
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG = "rebuild.probe"
ORGS = ("rb-acme", "rb-globex")


@pytest.fixture(scope="module")
def stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(make_settings(), tmp_path_factory.mktemp("rebuild-logs"))
    with httpx.Client(timeout=10, headers=running.headers) as http:
        assert http.post(f"{running.command_url}/v1/flags", json={"key": FLAG, "group": "rb", "reason": "setup"})
        for org in ORGS:
            for n, (level, body) in enumerate([
                (f"/flags/{FLAG}", {"enabled": True}),
                (f"/platforms/meta/flags/{FLAG}", {"enabled": False}),
                (f"/users/u1/flags/{FLAG}", {"rollout_percentage": 40}),
                (f"/users/u2/flags/{FLAG}", {"enabled": True}),
                (f"/flags/{FLAG}", {"rollout_percentage": 70}),
            ]):
                r = http.put(f"{running.command_url}/v1/orgs/{org}{level}", json={"reason": f"step {n}", **body})
                assert r.status_code == 201, r.text
        _wait_projected(running, http)
    yield running
    running.stop()


def _answer(stack: Stack, http: httpx.Client, org: str) -> dict:
    r = http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{FLAG}", params={"platform": "meta", "user": "u2"})
    assert r.status_code == 200, r.text
    return r.json()


def _wait_projected(stack: Stack, http: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answers = [http.get(f"{stack.query_url}/v1/orgs/{o}/flags/{FLAG}", params={"user": "u2"}) for o in ORGS]
        if all(a.status_code == 200 and a.json()["level"] == "user" for a in answers):
            return
        time.sleep(0.1)
    raise AssertionError("the live projection never caught up")


async def _offsets(settings: Settings, schema: str) -> dict[int, int]:
    owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
    try:
        return await group_offsets(owner, schema, settings.projector_group, settings.topic)
    finally:
        await owner.close()


def test_an_interrupted_rebuild_resumes_and_switches_over_while_the_query_service_serves(stack: Stack) -> None:
    settings = stack.settings
    http = httpx.Client(timeout=10, headers=stack.headers)
    before = {org: _answer(stack, http, org) for org in ORGS}

    async def interrupted() -> int:
        owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
        try:
            await create_schema(owner, "rebuild_t")
        finally:
            await owner.close()
        return await replay(settings, "rebuild_t", batch=4, stop_after=4, bar=False)

    assert asyncio.run(interrupted()) == 4
    partial = asyncio.run(_offsets(settings, "rebuild_t"))
    live = asyncio.run(_offsets(settings, "public"))
    assert 0 < sum(partial.values()) < sum(live.values())  # offsets kept with the rows: a resume starts there

    served: list[tuple[int, dict | str]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(timeout=10, headers=stack.headers) as reader:
            while not stop.is_set():
                for org in ORGS:
                    r = reader.get(f"{stack.query_url}/v1/orgs/{org}/flags/{FLAG}",
                                   params={"platform": "meta", "user": "u2"})
                    served.append((r.status_code, r.json() if r.status_code == 200 else r.text))

    reader = threading.Thread(target=keep_asking)
    reader.start()
    try:
        retired = asyncio.run(rebuild(settings, "rebuild_t", switch=True, batch=4, workers=2, bar=False))
    finally:
        stop.set()
        reader.join()
    assert retired is not None and retired.startswith("retired_")
    assert served and all(status == 200 for status, _ in served), served[:3]
    assert {(a["value"], a["level"], a["event"]["id"]) for _, a in served} <= {
        (b["value"], b["level"], b["event"]["id"]) for b in before.values()
    }  # every answer during the switch was one of the answers before it: no gap, no half state
    assert asyncio.run(_offsets(settings, "public")) == live

    async def tables_moved() -> tuple[int, int]:
        owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
        try:
            gone = await owner.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'rebuild_t'")
            kept = await owner.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'overrides'", retired
            )
            return gone, kept
        finally:
            await owner.close()

    assert asyncio.run(tables_moved()) == (0, 1)
    # the live projector carries on into the rebuilt tables
    url = f"{stack.command_url}/v1/orgs/{ORGS[0]}/users/u2/flags/{FLAG}"
    r = http.put(url, json={"reason": "after", "enabled": False})
    assert r.status_code == 201, r.text
    event_id = r.json()["events"][0]["event_id"]
    deadline = time.monotonic() + 15
    while _answer(stack, http, ORGS[0])["event"]["id"] != event_id:
        assert time.monotonic() < deadline, "the live projector did not continue after the switch"
        time.sleep(0.05)
    assert _answer(stack, http, ORGS[0])["value"] is False
    assert asyncio.run(verify_projection(settings, bar=False)).ok
    http.close()


def test_verify_projection_names_a_row_changed_behind_the_projectors_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = stack.settings
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FLAGS_API_KEY", "unused")
    assert flagctl(["audit", "verify", "--projection", "--quiet"]) == 0
    assert "read models match the log" in capsys.readouterr().out

    async def tamper() -> None:
        owner = await asyncpg.connect(settings.pg_dsn(Role.OWNER))
        try:
            async with owner.transaction():
                await owner.execute("SELECT set_config('flags.org_id', $1, true)", ORGS[1])
                await owner.execute(
                    "UPDATE overrides SET enabled = NOT enabled WHERE org_id = $1 AND level = 'platform'", ORGS[1]
                )
        finally:
            await owner.close()

    asyncio.run(tamper())
    assert flagctl(["audit", "verify", "--projection", "--quiet"]) == 3
    out = capsys.readouterr().out
    assert f"DIFFERS overrides org {ORGS[1]}" in out
    assert "only in the live read models: (rb-globex,platform,meta" in out
    assert "only in the replay of the log: (rb-globex,platform,meta" in out
    assert "DIFFER from the log in 1 places" in out

