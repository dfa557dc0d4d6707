"""Rollback on the real services: compensating changes through the command path, seen in history and evaluation.

The whole stack runs (command, projector, query), so a rollback is checked
where it matters: the query service answers as it did at the target instant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.infra.settings import Settings
from tests.support.auth import bearer
from tests.support.processes import REPO, settings_env
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(make_settings(), tmp_path_factory.mktemp("audit-rollback"))
    yield running
    running.stop()


@pytest.fixture
def admin(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.command_url, timeout=15, headers=stack.headers) as client:
        yield client


def call(http: httpx.Client, method: str, path: str, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = http.request(method, path, json={"reason": "rollback test", **fields})
    assert response.status_code == status, response.text
    return response.json()


def instant() -> str:
    """Now, once the clock has moved past the writes just made (occurred_at is taken by the same host)."""
    time.sleep(0.01)
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.01)
    return at


def evaluation(stack: Stack, org: str, flag: str, **context: str) -> dict[str, Any]:
    with httpx.Client(timeout=10, headers=stack.headers) as http:
        return http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{flag}", params=context).json()


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


@pytest.fixture
def flag(admin: httpx.Client) -> str:
    key = f"rb.{uuid.uuid4().hex[:8]}.flag"
    call(admin, "POST", "/v1/flags", key=key, group="rb")
    call(admin, "PUT", f"/v1/flags/{key}/system", enabled=False)
    return key


@pytest.fixture
def org(admin: httpx.Client) -> str:
    return f"rb-{uuid.uuid4().hex[:8]}"


def org_admin(admin: httpx.Client, org: str) -> dict[str, str]:
    made = call(admin, "POST", "/v1/keys", name="rollback org admin", role="org-admin", org_id=org)
    return bearer(made["key"])


def test_rolling_an_org_flag_back_to_an_instant(stack: Stack, admin: httpx.Client, flag: str, org: str) -> None:
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=True, rollout_percentage=30)
    good = instant()
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=False)  # the bad deploy…
    call(admin, "PUT", f"/v1/orgs/{org}/platforms/meta/flags/{flag}", enabled=True)
    call(admin, "PUT", f"/v1/orgs/{org}/users/jane/flags/{flag}", enabled=True)
    eventually(lambda: evaluation(stack, org, flag, platform="meta").get("level") == "platform")

    headers = org_admin(admin, org)
    answer = admin.post(f"/v1/orgs/{org}/rollback", headers=headers,
                        json={"flag_key": flag, "at": good, "reason": "bad deploy"})
    assert answer.status_code == 201, answer.text
    result = answer.json()
    assert result["reason"] == f"rollback to {good}: bad deploy" and result["changed"]
    restored = {s["stream"]: (s["value"], s["changed"]) for s in result["streams"]}
    assert restored == {
        f"org/{org}/flag/{flag}": ({"enabled": True, "rollout_percentage": 30}, True),
        f"org/{org}/platform/meta/flag/{flag}": (None, True),
        f"org/{org}/user/jane/flag/{flag}": (None, True),
    }

    # ordinary events, appended: visible in history like any change, with the caller as actor
    def history() -> list[dict[str, Any]]:
        return admin.get("/v1/history", params={"org": org, "flag": flag}).json()["entries"]

    eventually(lambda: len(history()) == 5 + 3)  # nothing was edited or removed
    rollbacks = [e for e in history() if e["reason"].startswith("rollback to")]
    assert [e["type"] for e in rollbacks] == ["OrgOverrideSet", "PlatformOverrideCleared", "UserOverrideCleared"]
    assert {e["actor"]["name"] for e in rollbacks} == {"rollback org admin"}
    eventually(lambda: evaluation(stack, org, flag, platform="meta", user="jane").get("level") == "org")
    answer_now = evaluation(stack, org, flag, platform="meta", user="jane")
    assert answer_now["rollout"]["percentage"] == 30

    again = admin.post(f"/v1/orgs/{org}/rollback", headers=headers,
                       json={"flag_key": flag, "at": good, "reason": "bad deploy"})
    assert again.status_code == 200 and not again.json()["changed"]


def test_rolling_one_stream_back_to_a_version(admin: httpx.Client, flag: str, org: str) -> None:
    for pct in (10, 20, 30):
        call(admin, "PUT", f"/v1/orgs/{org}/platforms/google/flags/{flag}", enabled=True, rollout_percentage=pct)
    result = call(admin, "POST", f"/v1/orgs/{org}/rollback", flag_key=flag, platform="google", version=2)
    [stream] = result["streams"]
    assert (stream["restored_version"], stream["value"]) == (2, {"enabled": True, "rollout_percentage": 10})
    assert [e["type"] for e in stream["events"]] == ["RolloutPercentageSet"] and stream["version"] == 5
    assert result["reason"] == "rollback to version 2: rollback test"


def test_rolling_back_all_of_an_orgs_flags(admin: httpx.Client, flag: str, org: str) -> None:
    other = f"{flag}.other"
    call(admin, "POST", "/v1/flags", key=other, group="rb")
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=True)
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{other}", enabled=False)
    good = instant()
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=False)
    call(admin, "PUT", f"/v1/orgs/{org}/users/bob/flags/{other}", enabled=True)
    result = call(admin, "POST", f"/v1/orgs/{org}/rollback", at=good)
    changed = sorted(s["stream"] for s in result["streams"] if s["changed"])
    assert changed == [f"org/{org}/flag/{flag}", f"org/{org}/user/bob/flag/{other}"]
    assert admin.get(f"/v1/streams/org/{org}/flag/{flag}").json()["value"]["enabled"] is True


def test_rolling_back_a_flag_system_wide_needs_a_system_admin(admin: httpx.Client, flag: str, org: str) -> None:
    good = instant()
    call(admin, "PUT", f"/v1/flags/{flag}/system", enabled=True, rollout_percentage=5)
    call(admin, "PATCH", f"/v1/flags/{flag}", description="rewritten", kind="ops", owner="someone else")
    call(admin, "POST", f"/v1/flags/{flag}/kill-switch", reason="panic")
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=True)  # the org exists
    refused = admin.post(f"/v1/flags/{flag}/rollback", headers=org_admin(admin, org),
                         json={"at": good, "reason": "not mine"})
    assert refused.status_code == 403
    result = call(admin, "POST", f"/v1/flags/{flag}/rollback", at=good)
    definition, system = result["streams"]
    assert [e["type"] for e in definition["events"]] == ["KillSwitchReleased", "FlagUpdated"]
    assert system["value"] == {"enabled": False, "rollout_percentage": None}
    assert admin.get(f"/v1/streams/flag/{flag}/system").json()["value"]["enabled"] is False
    restored = admin.get(f"/v1/streams/flag/{flag}").json()["value"]
    assert (restored["kind"], restored["description"], restored["owner"], restored.get("killed")) == (
        "release", "", None, None)


def test_a_definition_back_to_a_version(admin: httpx.Client, flag: str) -> None:
    call(admin, "PATCH", f"/v1/flags/{flag}", description="second")
    call(admin, "PATCH", f"/v1/flags/{flag}", description="third")
    result = call(admin, "POST", f"/v1/flags/{flag}/rollback", version=2, definition=True)
    [stream] = result["streams"]
    assert stream["stream"] == f"flag/{flag}" and stream["value"]["description"] == "second"
    assert admin.get(f"/v1/streams/flag/{flag}").json()["value"]["description"] == "second"


def _future() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "at": "{future}"}, 422, "at"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "at": "last tuesday"}, 422, "at"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "at": "2026-01-01T00:00:00"}, 422, "at"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}"}, 422, "at"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "at": "2026-01-01T00:00:00Z", "version": 1}, 422, "at"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "version": 9}, 422, "version"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "version": 0}, 422, "version"),
        ("/v1/orgs/{org}/rollback", {"version": 1}, 422, "version"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "{flag}", "platform": "meta", "user_id": "u", "version": 1},
         422, "user_id"),
        ("/v1/orgs/{org}/rollback", {"flag_key": "no.such.flag", "version": 1}, 404, "flag_key"),
        ("/v1/orgs/ghost-{org}/rollback", {"flag_key": "{flag}", "version": 1}, 404, "org_id"),
        ("/v1/flags/{flag}/rollback", {"version": 7}, 422, "version"),
        ("/v1/flags/no.such.flag/rollback", {"version": 1}, 404, "flag_key"),
        ("/v1/flags/{flag}/rollback", {"at": "2026-01-01T00:00:00Z", "definition": True}, 422, "definition"),
        ("/v1/flags/{flag}/rollback", {"at": "2020-01-01T00:00:00Z"}, 422, "at"),  # before the flag existed
    ],
)
def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    admin: httpx.Client, flag: str, org: str, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=True)
    before = admin.get("/v1/events", params={"limit": 1000}).json()["next_after"]
    fill = {"{org}": org, "{flag}": flag, "{future}": _future()}

    def filled(text: str) -> str:
        for name, value in fill.items():
            text = text.replace(name, value)
        return text

    answer = admin.post(filled(path), json={"reason": "x", **{k: filled(v) if isinstance(v, str) else v
                                                               for k, v in body.items()}})
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert admin.get("/v1/events", params={"after": before}).json()["events"] == []


def test_flagctl_rolls_back_and_shows_it_in_history(stack: Stack, admin: httpx.Client, flag: str, org: str) -> None:
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=True)
    good = instant()
    call(admin, "PUT", f"/v1/orgs/{org}/flags/{flag}", enabled=False)
    env = {**os.environ, **settings_env(stack.settings), "FLAGS_API_KEY": stack.headers["Authorization"][7:]}

    def flagctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flagctl.main", "--command-url", stack.command_url, "--query-url",
             stack.query_url, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
        )

    done = flagctl("audit", "rollback", "--org", org, "--flag", flag, "--at", good, "--reason", "flaky")
    assert done.returncode == 0, done.stderr
    assert f"rolled back: rollback to {good}: flaky" in done.stdout
    eventually(lambda: "rollback to" in flagctl("audit", "--org", org, "--flag", flag).stdout)
    table = flagctl("audit", "--org", org, "--flag", flag)
    assert table.returncode == 0 and table.stdout.splitlines()[-1].endswith(f"(rollback to {good}: flaky)")
    bad = flagctl("audit", "rollback", "--org", org, "--flag", flag, "--at", _future(), "--reason", "x")
    assert bad.returncode == 1 and "[at]" in bad.stderr and "in the future" in bad.stderr


def test_a_step_scheduled_since_the_target_is_cancelled(admin: httpx.Client, flag: str, org: str) -> None:
    path = f"/v1/orgs/{org}/flags/{flag}"
    call(admin, "PUT", path, enabled=True)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    call(admin, "PUT", f"{path}/schedule", effective_at=tomorrow, rollout_percentage=50)
    good = instant()
    next_week = (datetime.now(UTC) + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    call(admin, "PUT", f"{path}/schedule", effective_at=next_week, enabled=False, reason="the mistake")
    result = call(admin, "POST", f"/v1/orgs/{org}/rollback", flag_key=flag, at=good)
    [stream] = result["streams"]
    assert [e["type"] for e in stream["events"]] == ["ScheduledSettingCancelled"]
    value = admin.get(f"/v1/streams/org/{org}/flag/{flag}").json()["value"]
    assert [step["rollout_percentage"] for step in value["schedule"]] == [50]  # the older step stays
