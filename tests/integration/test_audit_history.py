"""History over HTTP against the real command service and Postgres: filters, scoping, paging, exports.

The paging test holds a real append open in Postgres (a lower sequence not yet
committed) while a later change commits, and shows that `/v1/history` never
passes the held row, where paging by sequence does.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from events import Actor, OrgOverrideSet
from services.command.eventstore.writes import read_head, write_events
from services.command.tenancy import writer_for
from services.infra.postgres import set_tenancy
from services.infra.settings import Role, Settings
from tests.support.auth import admin_headers, bearer
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(
    make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    running = ServiceProcess("command", settings, tmp_path_factory.mktemp("audit-history"), health).start()
    yield running
    running.stop()


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{service.settings.command_port}"
    with httpx.Client(base_url=base, timeout=10, headers=admin_headers(service.settings)) as client:
        yield client


def write(http: httpx.Client, method: str, path: str, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = http.request(method, path, json={"reason": "history test", **fields})
    assert response.status_code == status, response.text
    return response.json()


def new_key(http: httpx.Client, role: str, org: str | None) -> dict[str, str]:
    made = write(http, "POST", "/v1/keys", name=f"{role} {org}", role=role, org_id=org)
    return bearer(made["key"])


def all_entries(http: httpx.Client, *, limit: int = 2, **params: Any) -> list[dict[str, Any]]:
    """Every page, following the cursor, until a short page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = http.get("/v1/history", params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        found += body["entries"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return found


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """The horizon waits for writes anywhere on the (shared) cluster to finish: allow it a moment."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not visible in time"
        time.sleep(0.05)


@pytest.fixture
def scene(http: httpx.Client) -> dict[str, str]:
    """A flag with a system default, and two orgs with overrides at several levels."""
    run = uuid.uuid4().hex[:8]
    flag, a, b = f"hist.{run}.flag", f"ha-{run}", f"hb-{run}"
    write(http, "POST", "/v1/flags", key=flag, group="hist")
    write(http, "PUT", f"/v1/flags/{flag}/system", enabled=False)
    write(http, "PUT", f"/v1/orgs/{a}/flags/{flag}", enabled=True, reason="pilot for A")
    write(http, "PUT", f"/v1/orgs/{a}/platforms/meta/flags/{flag}", enabled=False)
    write(http, "PUT", f"/v1/orgs/{a}/users/jane/flags/{flag}", rollout_percentage=25)
    write(http, "PUT", f"/v1/orgs/{b}/flags/{flag}", enabled=True, reason="B's secret")
    return {"flag": flag, "a": a, "b": b}


def test_history_says_who_what_when_why_and_previous_to_new(http: httpx.Client, scene: dict[str, str]) -> None:
    write(http, "PUT", f"/v1/orgs/{scene['a']}/flags/{scene['flag']}", enabled=False, reason="incident 42")
    eventually(lambda: len(all_entries(http, flag=scene["flag"], org=scene["a"], level="org")) == 2)
    entries = all_entries(http, flag=scene["flag"], org=scene["a"], level="org")
    first, last = entries
    assert (first["previous"], first["new"]) == (None, {"enabled": True, "rollout_percentage": None})
    assert (last["previous"], last["new"]) == (first["new"], {"enabled": False, "rollout_percentage": None})
    assert last["reason"] == "incident 42" and last["actor"]["id"].startswith("key:")
    assert last["type"] == "OrgOverrideSet" and last["level"] == "org" and last["org_id"] == scene["a"]
    assert last["stream"] == f"org/{scene['a']}/flag/{scene['flag']}" and last["version"] == 2
    assert datetime.fromisoformat(last["occurred_at"]) <= datetime.now(UTC)


def test_filters(http: httpx.Client, scene: dict[str, str]) -> None:
    flag, a = scene["flag"], scene["a"]
    eventually(lambda: len(all_entries(http, flag=flag)) == 6)
    every = all_entries(http, flag=flag)
    assert [e["type"] for e in every] == [
        "FlagDefined", "SystemDefaultSet", "OrgOverrideSet", "PlatformOverrideSet", "RolloutPercentageSet",
        "OrgOverrideSet",
    ]
    # an org's view: its own events, and on request the catalogue every org sees; never another org's
    assert {e["org_id"] for e in all_entries(http, flag=flag, org=a)} == {a}
    assert {e["org_id"] for e in all_entries(http, flag=flag, org=a, catalog="true")} == {None, a}
    assert [e["level"] for e in all_entries(http, flag=flag, org=a, level=["platform", "user"])] == ["platform", "user"]
    assert [e["type"] for e in all_entries(http, flag=flag, type="RolloutPercentageSet")] == ["RolloutPercentageSet"]
    assert [e["reason"] for e in all_entries(http, flag=flag, actor=every[0]["actor"]["id"])][-1] == "B's secret"
    assert all_entries(http, flag=flag, actor="nobody") == []
    since = every[2]["occurred_at"]
    assert len(all_entries(http, flag=flag, since=since)) == 4
    assert len(all_entries(http, flag=flag, until=since)) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"until": "2026-01-01T00:00:00"}, "until"),  # no offset: which instant?
        ({"until": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "until"),
        ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"level": "galaxy"}, "level.0"),
        ({"type": "Org Override"}, "type"),
        ({"org": "../etc"}, "org"),
        ({"limit": "0"}, "limit"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(http: httpx.Client, params: dict[str, str], field: str) -> None:
    response = http.get("/v1/history", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_an_org_scoped_key_sees_its_org_and_the_catalogue_only(http: httpx.Client, scene: dict[str, str]) -> None:
    auditor = new_key(http, "auditor", scene["a"])
    eventually(lambda: len(all_entries(http, flag=scene["flag"])) == 6)
    page = http.get("/v1/history", params={"flag": scene["flag"], "catalog": "true"}, headers=auditor).json()
    assert {e["org_id"] for e in page["entries"]} == {None, scene["a"]}
    assert "B's secret" not in json.dumps(page)
    refused = http.get("/v1/history", params={"org": scene["b"]}, headers=auditor)
    assert refused.status_code == 403
    ghost = http.get("/v1/history", params={"org": "ghost-org"}, headers=auditor)
    assert (ghost.status_code, ghost.json()) == (403, refused.json())
    for export in ("jsonl", "csv"):
        text = http.get("/v1/history", params={"format": export, "catalog": "true"}, headers=auditor).text
        assert scene["a"] in text and scene["b"] not in text
    evaluator = new_key(http, "evaluator", scene["a"])
    assert http.get("/v1/history", headers=evaluator).status_code == 403


def test_exports_stream_every_matching_event(http: httpx.Client, scene: dict[str, str]) -> None:
    flag = scene["flag"]
    eventually(lambda: len(all_entries(http, flag=flag)) == 6)
    expected = all_entries(http, flag=flag)
    jsonl = http.get("/v1/history", params={"flag": flag}, headers={"Accept": "application/x-ndjson"})
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in jsonl.text.splitlines()] == expected
    exported = http.get("/v1/history", params={"flag": flag, "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in expected]
    assert json.loads(rows[2]["new"]) == expected[2]["new"] and rows[2]["reason"] == "pilot for A"


def test_an_export_larger_than_one_batch(http: httpx.Client) -> None:
    run = uuid.uuid4().hex[:8]
    flag, org = f"hist.{run}.bulk", f"hbulk-{run}"
    write(http, "POST", "/v1/flags", key=flag, group="hist")
    for n in range(1, 1002):  # over two export batches of 500 (1001 events)
        write(http, "PUT", f"/v1/orgs/{org}/flags/{flag}", rollout_percentage=n % 101, reason=f"step {n}")
    params = {"org": org, "level": "org", "format": "jsonl"}
    eventually(lambda: len(http.get("/v1/history", params=params).text.splitlines()) == 1001)
    lines = http.get("/v1/history", params=params).text.splitlines()
    assert [json.loads(line)["reason"] for line in lines] == [f"step {n}" for n in range(1, 1002)]


async def _hold_an_append(
    settings: Settings, org: str, flag: str, started: asyncio.Event, release: asyncio.Event
) -> int:
    """Append an override in a transaction left open until `release`: its sequence is taken, not yet visible."""
    conn = await asyncpg.connect(settings.pg_dsn(Role.COMMAND))
    try:
        async with conn.transaction():
            stream = f"org/{org}/flag/{flag}"
            change = OrgOverrideSet(flag_key=flag, org_id=org, enabled=True)
            await set_tenancy(conn, writer_for([change]))  # the audit trail is under RLS: the org's row, as the org
            head = await read_head(conn, stream)
            [envelope] = await write_events(
                conn, [change], head, actor=Actor(id="test", name="held append"), reason="held",
                occurred_at=datetime.now(UTC),
            )
            started.set()
            await release.wait()
        return envelope.sequence
    finally:
        await conn.close()


async def test_paging_never_skips_a_row_that_commits_late(service: ServiceProcess) -> None:
    settings = service.settings
    run = uuid.uuid4().hex[:8]
    flag, org = f"hist.{run}.late", f"hlate-{run}"
    base = f"http://127.0.0.1:{settings.command_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=admin_headers(settings)) as http:
        answer = await http.post("/v1/flags", json={"key": flag, "group": "hist", "reason": "late"})
        assert answer.status_code == 201
        started, release = asyncio.Event(), asyncio.Event()
        held = asyncio.create_task(_hold_an_append(settings, org, flag, started, release))
        await started.wait()
        later = await http.put(f"/v1/orgs/{org}/users/u1/flags/{flag}", json={"enabled": True, "reason": "later"})
        assert later.status_code == 201
        later_sequence = later.json()["events"][0]["sequence"]

        # Paging by sequence passes the held row: the later one is visible, the held one not yet.
        by_sequence = (await http.get("/v1/events", params={"org": org})).json()["events"]
        assert [e["sequence"] for e in by_sequence] == [later_sequence]

        # History shows neither while the held append is open: the later row is past the horizon.
        first = (await http.get("/v1/history", params={"org": org, "level": ["org", "user"]})).json()
        assert first["entries"] == []
        release.set()
        held_sequence = await held
        assert held_sequence < later_sequence

        # From the same cursor, both arrive, the held one first: nothing was skipped.
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        cursor = first["next_cursor"]
        while len(entries) < 2 and time.monotonic() < deadline:
            params: dict[str, Any] = {"org": org, "level": ["org", "user"], **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/history", params=params)).json()
            entries += page["entries"]
            cursor = page["next_cursor"]
            await asyncio.sleep(0.05)
        assert [e["sequence"] for e in entries] == [held_sequence, later_sequence]
        still_skipped = (await http.get("/v1/events", params={"org": org, "after": later_sequence})).json()["events"]
        assert still_skipped == []  # the old way never sees the held row again
