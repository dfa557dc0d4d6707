"""Schedules, kill switches, variants and the stale report through the command API (in-memory store)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from events import decode
from services.auth.policy import Role
from services.command.api import create_app
from services.command.memory import InMemoryEventStore
from services.infra.settings import Settings
from tests.support.auth import MemoryKeys, bearer, memory_gate

KEY = "ai.insights.enabled"
OPS = "platform.meta.enabled"
EXP = "campaign.checkout.enabled"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def body(**fields: Any) -> dict[str, Any]:
    return {"reason": "testing", **fields}


def instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys() -> MemoryKeys:
    return MemoryKeys()


@pytest.fixture
async def client(clock: Clock, keys: MemoryKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), store=InMemoryEventStore(), auth=memory_gate(keys), clock=clock)
    admin = keys.issue(Role.SYSTEM_ADMIN, name="ops")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://command", headers=bearer(admin)
    ) as c:
        for key, group, kind in ((KEY, "ai", "release"), (OPS, "platform", "ops")):
            assert (await c.post("/v1/flags", json=body(key=key, group=group, kind=kind))).status_code == 201
        yield c


def refused(response: httpx.Response, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.json()["field"] == field, response.json()


async def test_schedule_then_cancel_a_step(client: httpx.AsyncClient) -> None:
    path = f"/v1/orgs/acme/flags/{KEY}/schedule"
    step = instant(NOW + timedelta(hours=1))
    made = await client.put(path, json=body(effective_at=step, rollout_percentage=50))
    assert made.status_code == 201, made.text
    event = made.json()["events"][0]
    assert event["type"] == "SettingScheduled"
    assert event["new"]["schedule"] == [{"at": step, "enabled": None, "rollout_percentage": 50}]
    again = await client.put(path, json=body(effective_at=step, rollout_percentage=50))
    assert (again.status_code, again.json()["changed"]) == (200, False)
    cancelled = await client.request("DELETE", path, json=body(effective_at=step))
    assert cancelled.json()["events"][0]["type"] == "ScheduledSettingCancelled"
    refused(await client.request("DELETE", path, json=body(effective_at=step)), 422, "effective_at")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"effective_at": "2026-06-01T11:00:00Z", "enabled": True}, "effective_at"),  # in the past
        ({"effective_at": "2026-06-01T12:00:00Z", "enabled": True}, "effective_at"),  # now is not the future
        ({"effective_at": "2026-07-01T12:00:00", "enabled": True}, "effective_at"),  # no offset
        ({"effective_at": "next tuesday", "enabled": True}, "effective_at"),
        ({"effective_at": "9999-12-31T23:59:59-01:00", "enabled": True}, "effective_at"),  # past year 9999 in UTC
        ({"effective_at": "2026-07-01T12:00:00Z"}, None),  # nothing to schedule
        ({"effective_at": "2026-07-01T12:00:00Z", "rollout_percentage": 101}, "rollout_percentage"),
    ],
)
async def test_bad_steps_are_422_naming_the_field(client: httpx.AsyncClient, fields, field) -> None:
    refused(await client.put(f"/v1/flags/{KEY}/system/schedule", json=body(**fields)), 422, field)


async def test_a_setting_decided_after_a_due_step_sees_the_step(client: httpx.AsyncClient, clock: Clock) -> None:
    path = f"/v1/orgs/acme/flags/{KEY}"
    await client.put(path, json=body(enabled=True))
    await client.put(f"{path}/schedule", json=body(effective_at=instant(NOW + timedelta(minutes=1)), enabled=False))
    clock.now = NOW + timedelta(minutes=2)
    # off since the step: asking for off again changes nothing
    unchanged = await client.put(path, json=body(enabled=False))
    assert unchanged.json()["changed"] is False
    on = await client.put(path, json=body(enabled=True))
    assert on.json()["events"][0]["new"] == {"enabled": True, "rollout_percentage": None}


async def test_kill_switch_is_ops_only_audited_and_releasable(client: httpx.AsyncClient) -> None:
    refused(await client.post(f"/v1/flags/{KEY}/kill-switch", json=body()), 422, "kind")
    refused(await client.post("/v1/flags/no.such/kill-switch", json=body()), 404, "flag_key")
    engaged = await client.post(f"/v1/flags/{OPS}/kill-switch", json=body())
    assert engaged.status_code == 201
    assert engaged.json()["events"][0]["type"] == "KillSwitchEngaged"
    assert (await client.post(f"/v1/flags/{OPS}/kill-switch", json=body())).json()["changed"] is False
    refused(await client.patch(f"/v1/flags/{OPS}", json=body(kind="release")), 422, "kind")
    released = await client.request("DELETE", f"/v1/flags/{OPS}/kill-switch", json=body())
    assert released.json()["events"][0]["type"] == "KillSwitchReleased"
    log = await client.get("/v1/events", params={"flag": OPS})
    types = [decode_type(e) for e in log.json()["events"]]
    assert types == ["FlagDefined", "KillSwitchEngaged", "KillSwitchReleased"]


def decode_type(event: dict[str, Any]) -> str:
    return decode(json.dumps(event)).type


async def test_kill_switch_is_for_system_admins_only(client: httpx.AsyncClient, keys: MemoryKeys) -> None:
    org_admin = keys.issue(Role.ORG_ADMIN, name="acme admin", org_id="acme")
    answer = await client.post(f"/v1/flags/{OPS}/kill-switch", json=body(), headers=bearer(org_admin))
    assert answer.status_code == 403


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "release", "variants": [{"name": "a", "weight": 1000}]}, "variants"),
        ({"kind": "experiment", "variants": [{"name": "a", "weight": 500}, {"name": "b", "weight": 400}]}, "variants"),
        ({"kind": "experiment", "variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]}, "variants"),
        ({"kind": "experiment", "variants": [{"name": "a b", "weight": 1000}]}, "variants.0.name"),
        ({"kind": "canary"}, "kind"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"),
    ],
)
async def test_bad_definitions_are_422_naming_the_field(client: httpx.AsyncClient, fields, field) -> None:
    refused(await client.post("/v1/flags", json=body(key=EXP, group="campaign", **fields)), 422, field)


async def test_variants_in_percent_are_normalised_to_thousandths(client: httpx.AsyncClient) -> None:
    arms = [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}]
    made = await client.post("/v1/flags", json=body(key=EXP, group="campaign", kind="experiment", variants=arms))
    assert made.json()["events"][0]["new"]["variants"] == [
        {"name": "control", "weight": 500},
        {"name": "treatment", "weight": 500},
    ]
    refused(await client.patch(f"/v1/flags/{EXP}", json=body(kind="release")), 422, "variants")
    cleared = await client.patch(f"/v1/flags/{EXP}", json=body(kind="release", variants=[]))
    assert "variants" not in cleared.json()["events"][0]["new"]


async def test_stale_report(client: httpx.AsyncClient, clock: Clock) -> None:
    await client.put(f"/v1/flags/{KEY}/system", json=body(enabled=True))
    await client.patch(f"/v1/flags/{OPS}", json=body(owner="sre", expires_at=instant(NOW + timedelta(days=3))))
    clock.now = NOW + timedelta(days=40)
    report = (await client.get("/v1/reports/stale-flags", params={"days": 30})).json()
    assert [(f["key"], f["reason"], f["value"]) for f in report["flags"]] == [
        (KEY, "unchanged", True),
        (OPS, "expired", False),
    ]
    assert report["flags"][1]["owner"] == "sre"
    refused(await client.get("/v1/reports/stale-flags", params={"days": 0}), 422, "days")
