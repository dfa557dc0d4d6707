"""Keys and roles end to end: who you are decides what you see, change, and what the log records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from events import decode
from tests.support.auth import admin_key, bearer
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

KEY = "ai.insights.enabled"


@pytest.fixture(scope="module")
def admin(stack: Stack) -> httpx.Client:
    with httpx.Client(timeout=10, headers=stack.headers) as client:
        body = {"key": KEY, "group": "ai", "reason": "access tests"}
        assert client.post(f"{stack.command_url}/v1/flags", json=body).status_code in (201, 409)
        deadline = time.monotonic() + 30  # the tests evaluate it: wait until it is projected
        while client.get(f"{stack.query_url}/v1/orgs/probe/flags/{KEY}").status_code != 200:
            assert time.monotonic() < deadline, f"{KEY} never reached the query service"
            time.sleep(0.1)
        yield client


def create_key(admin: httpx.Client, stack: Stack, role: str, org: str | None, **extra: object) -> dict:
    body = {"name": f"{role} of {org}", "role": role, "org_id": org, "reason": "test", **extra}
    response = admin.post(f"{stack.command_url}/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def events_of(admin: httpx.Client, stack: Stack, org: str) -> list:
    page = admin.get(f"{stack.command_url}/v1/events", params={"org": org}).json()
    return [decode(json.dumps(e)) for e in page["events"]]


def test_no_key_or_a_bad_key_is_401(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("fsk_0123456789abcdef_" + "x" * 43), bearer("nope")):
        for url in (f"{stack.query_url}/v1/orgs/acme/flags", f"{stack.command_url}/v1/events"):
            response = httpx.get(url, headers=headers)
            assert response.status_code == 401, (headers, url)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"] == "unauthenticated"


def test_a_new_key_is_shown_once_and_listed_without_secrets(admin: httpx.Client, stack: Stack, org_id: str) -> None:
    created = create_key(admin, stack, "evaluator", org_id)
    assert created["key"].startswith(f"fsk_{created['id']}_")
    listed = admin.get(f"{stack.command_url}/v1/keys", params={"org": org_id}).json()["keys"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in json.dumps(listed) and "hash" not in json.dumps(listed)
    logged = [e for e in events_of(admin, stack, org_id) if e.type == "ApiKeyCreated"]
    assert [(e.data.key_id, e.data.role.value, e.actor.name) for e in logged] == [
        (created["id"], "evaluator", "test admin")
    ]
    assert created["key"] not in json.dumps([e.model_dump(mode="json") for e in logged])


def test_org_admin_changes_its_own_org_only_and_is_the_recorded_actor(
    admin: httpx.Client, stack: Stack, org_id: str
) -> None:
    own = create_key(admin, stack, "org-admin", org_id)
    other = org_id + "-b"
    body = {"enabled": True, "reason": "x"}
    assert admin.put(f"{stack.command_url}/v1/orgs/{other}/flags/{KEY}", json=body).status_code == 201
    before = events_of(admin, stack, other)
    with httpx.Client(timeout=10, headers=bearer(own["key"])) as client:
        ok = client.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{KEY}", json={"enabled": True, "reason": "mine"})
        assert ok.status_code == 201, ok.text
        refused = client.put(f"{stack.command_url}/v1/orgs/{other}/flags/{KEY}", json={**body, "enabled": False})
        nowhere = client.put(f"{stack.command_url}/v1/orgs/no-such-org/flags/{KEY}", json=body)
        assert refused.status_code == nowhere.status_code == 403
        assert refused.json() == nowhere.json()  # the same answer whether or not the org exists
        assert client.put(f"{stack.command_url}/v1/flags/{KEY}/system", json={"enabled": True, "reason": "x"}
                          ).status_code == 403
    assert events_of(admin, stack, other) == before  # the refused change wrote nothing
    (event,) = [e for e in events_of(admin, stack, org_id) if e.type == "OrgOverrideSet"]
    assert (event.actor.id, event.actor.name) == (f"key:{own['id']}", f"org-admin of {org_id}")


def test_evaluator_evaluates_its_own_org_and_nothing_else(admin: httpx.Client, stack: Stack, org_id: str) -> None:
    key = create_key(admin, stack, "evaluator", org_id)["key"]
    with httpx.Client(timeout=10, headers=bearer(key)) as client:
        assert client.get(f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}").status_code == 200
        assert client.get(f"{stack.query_url}/v1/orgs/{org_id}-b/flags/{KEY}").status_code == 403
        assert client.get(f"{stack.command_url}/v1/events").status_code == 403
        write = client.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{KEY}", json={"enabled": True, "reason": "x"})
        assert write.status_code == 403
    assert [e.type for e in events_of(admin, stack, org_id)] == ["ApiKeyCreated"]


def test_auditor_reads_its_orgs_log_and_changes_nothing(admin: httpx.Client, stack: Stack, org_id: str) -> None:
    key = create_key(admin, stack, "auditor", org_id)["key"]
    with httpx.Client(timeout=10, headers=bearer(key)) as client:
        page = client.get(f"{stack.command_url}/v1/events")
        assert page.status_code == 200
        assert {e["org_id"] for e in page.json()["events"]} == {org_id}
        assert client.get(f"{stack.command_url}/v1/events", params={"org": org_id + "-b"}).status_code == 403
        assert client.put(f"{stack.command_url}/v1/orgs/{org_id}/flags/{KEY}",
                          json={"enabled": True, "reason": "x"}).status_code == 403
        assert client.get(f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}").status_code == 403


def test_revocation_takes_effect_within_a_second_everywhere(admin: httpx.Client, stack: Stack, org_id: str) -> None:
    created = create_key(admin, stack, "org-admin", org_id)
    with httpx.Client(timeout=10, headers=bearer(created["key"])) as client:
        assert client.get(f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}").status_code == 200
        assert client.get(f"{stack.command_url}/v1/events").status_code == 200
        revoked = admin.post(f"{stack.command_url}/v1/keys/{created['id']}/revoke", json={"reason": "leaked"})
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        started = time.monotonic()
        while True:
            statuses = {client.get(f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}").status_code,
                        client.get(f"{stack.command_url}/v1/events").status_code}
            if statuses == {401}:
                break
            assert time.monotonic() - started < 1.0, f"still {statuses} after a second"
            time.sleep(0.05)
    logged = [e for e in events_of(admin, stack, org_id) if e.type == "ApiKeyRevoked"]
    assert [(e.data.key_id, e.reason) for e in logged] == [(created["id"], "leaked")]


def test_an_expired_key_stops_working(admin: httpx.Client, stack: Stack, org_id: str) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    key = create_key(admin, stack, "evaluator", org_id, expires_at=soon)["key"]
    url = f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}"
    assert httpx.get(url, headers=bearer(key)).status_code == 200
    time.sleep(2.2)
    expired = httpx.get(url, headers=bearer(key))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_an_org_admin_cannot_mint_a_system_key_or_reach_another_orgs_keys(
    admin: httpx.Client, stack: Stack, org_id: str
) -> None:
    own = create_key(admin, stack, "org-admin", org_id)["key"]
    theirs = create_key(admin, stack, "evaluator", org_id + "-b")
    with httpx.Client(timeout=10, headers=bearer(own)) as client:
        for body in ({"role": "system-admin"}, {"role": "evaluator", "org_id": org_id + "-b"}, {"role": "evaluator"}):
            response = client.post(f"{stack.command_url}/v1/keys", json={"name": "x", "reason": "x", **body})
            assert response.status_code == 403, (body, response.text)
        minted = client.post(f"{stack.command_url}/v1/keys",
                             json={"name": "svc", "role": "evaluator", "org_id": org_id, "reason": "x"})
        assert minted.status_code == 201
        missing = client.post(f"{stack.command_url}/v1/keys/{'0' * 16}/revoke", json={"reason": "x"})
        foreign = client.post(f"{stack.command_url}/v1/keys/{theirs['id']}/revoke", json={"reason": "x"})
        assert missing.status_code == foreign.status_code == 404 and missing.json() == foreign.json()


def test_flagctl_manages_keys(stack: Stack, org_id: str) -> None:
    env = {**os.environ, "FLAGS_COMMAND_URL": stack.command_url, "FLAGS_QUERY_URL": stack.query_url,
           "FLAGS_API_KEY": admin_key(stack.settings)}

    def flagctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flagctl.main", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    created = flagctl("keys", "create", "--role", "evaluator", "--org", org_id, "--name", "web", "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    assert made["key"].startswith("fsk_") and made["id"]
    listed = flagctl("keys", "list", "--org", org_id)
    assert made["id"] in listed.stdout and made["key"] not in listed.stdout
    evaluated = subprocess.run(
        [sys.executable, "-m", "flagctl.main", "--key", made["key"], "eval", KEY, "--org", org_id, "--json"],
        env={k: v for k, v in env.items() if k != "FLAGS_API_KEY"}, capture_output=True, text=True, timeout=60,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert flagctl("keys", "revoke", made["id"]).returncode == 0
    time.sleep(0.6)
    refused = subprocess.run(
        [sys.executable, "-m", "flagctl.main", "--key", made["key"], "eval", KEY, "--org", org_id],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 1 and "401 unauthenticated" in refused.stderr
