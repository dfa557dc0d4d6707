"""Keys as an Unleash or flagd export writes them, through every door of the running stack.

`new_checkout`, `Feature.A` (and `feature.a`, another flag) and a 255-character key are defined and set
through the command API, then read back through the native query API (plain and percent-encoded paths),
OFREP single and bulk, the in-process SDK and flagctl, with the users' buckets Unleash's formula gives.
Invalid keys are refused with a 4xx naming the field, never a 500.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from events.vocabulary import MAX_FLAG_KEY
from flagcore.bucketing import in_rollout
from flagctl.main import main as flagctl
from flagsdk import FlagClient
from tests.support.http_flows import wait_for
from tests.support.sdk import sdk_settings
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]  # the stack's catalogue is shared by the session: one 255-character key per run
CHECKOUT, UPPER, LOWER = "new_checkout", "Feature.A", "feature.a"
LONGEST = f"Imported.{RUN}_" + "x" * (MAX_FLAG_KEY - 18)
KEYS = (CHECKOUT, UPPER, LOWER, LONGEST)
USERS = [f"user-{i}" for i in range(30)]
VIP = "u" * 128  # the longest user id: the longest stream name, `org/<64>/user/<128>/flag/<255>`
REASON = "migrated from Unleash"


@dataclass
class World:
    stack: Stack
    org: str
    evaluator: str

    def query(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.evaluator}"}
        return httpx.Client(base_url=self.stack.query_url, timeout=10, headers=headers)


def _ok(response: httpx.Response) -> dict:
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    org = f"o{RUN}" + "g" * 55  # 64 characters, the longest org id
    with httpx.Client(base_url=stack.command_url, timeout=10, headers=stack.headers) as admin:
        for key in KEYS:
            defined = _ok(admin.post("/v1/flags", json={"key": key, "group": "migrated", "reason": REASON}))
            assert defined["events"][0]["stream"] == f"flag/{key}"  # kept exactly as written
        _ok(admin.put(f"/v1/flags/{UPPER}/system", json={"enabled": True, "reason": REASON}))
        _ok(admin.put(f"/v1/orgs/{org}/flags/{CHECKOUT}", json={"enabled": True, "rollout_percentage": 30,
                                                                "reason": REASON}))  # fmt: skip
        _ok(admin.put(f"/v1/orgs/{org}/users/{VIP}/flags/{LONGEST}", json={"enabled": True, "reason": REASON}))
        body = {"name": "migrated app", "role": "evaluator", "org_id": org, "reason": REASON}
        evaluator = str(_ok(admin.post("/v1/keys", json=body))["key"])
    w = World(stack, org, evaluator)
    with w.query() as http:
        def projected() -> bool:
            answer = http.get(f"/v1/orgs/{org}/flags/{LONGEST}", params={"user": VIP})
            return answer.status_code == 200 and answer.json()["level"] == "user"

        wait_for(projected, timeout=20, what="the migrated keys projected")
    yield w


def expected(key: str, user: str | None, org: str) -> bool:
    """What each flag answers: Feature.A on by default, new_checkout 30% by Unleash's buckets (the org's, no user)."""
    if key == UPPER:
        return True
    if key == CHECKOUT:
        return in_rollout(CHECKOUT, org if user is None else user, 30)
    return key == LONGEST and user == VIP


def test_the_native_api_answers_each_key_as_written(world: World) -> None:
    with world.query() as http:
        for key in KEYS:
            for user in (*USERS, VIP):
                answer = _ok(http.get(f"/v1/orgs/{world.org}/flags/{key}", params={"user": user}))
                assert (answer["flag_key"], answer["value"]) == (key, expected(key, user, world.org)), (key, user)
        # percent-encoded `.`, `_`, `-` and letters are the same key; another case is another flag
        encoded = _ok(http.get(f"/v1/orgs/{world.org}/flags/%46eature%2EA"))
        assert (encoded["flag_key"], encoded["value"]) == (UPPER, True)
        assert _ok(http.get(f"/v1/orgs/{world.org}/flags/new%5Fcheckout"))["flag_key"] == CHECKOUT
        assert http.get(f"/v1/orgs/{world.org}/flags/FEATURE.A").status_code == 404
        every = {a["flag_key"]: a["value"] for a in _ok(http.get(f"/v1/orgs/{world.org}/flags"))["flags"]}
        assert {k: every[k] for k in KEYS} == {k: expected(k, None, world.org) for k in KEYS}


def test_ofrep_single_and_bulk_answer_each_key(world: World) -> None:
    with world.query() as http:
        for key in KEYS:
            for user in (*USERS[:10], VIP):
                body = {"context": {"targetingKey": user}}
                answer = _ok(http.post(f"/ofrep/v1/evaluate/flags/{key}", json=body))
                assert (answer["key"], answer["value"]) == (key, expected(key, user, world.org)), (key, user)
        encoded = _ok(http.post("/ofrep/v1/evaluate/flags/Feature%2EA", json={"context": {"targetingKey": "x"}}))
        assert (encoded["key"], encoded["value"]) == (UPPER, True)
        for user in (USERS[3], VIP):
            bulk = _ok(http.post("/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": user}}))
            values = {f["key"]: f["value"] for f in bulk["flags"]}
            assert {k: values[k] for k in KEYS} == {k: expected(k, user, world.org) for k in KEYS}


def test_the_sdk_answers_each_key(world: World) -> None:
    settings = sdk_settings(world.stack.settings)
    with FlagClient.from_settings(settings, api_key=world.evaluator, org_id=world.org) as client:
        assert client.wait_until_current()
        for key in KEYS:
            for user in (*USERS, VIP):
                assert client.evaluate(key, user=user).value is expected(key, user, world.org), (key, user)
                assert client.is_enabled(key, user=user) is expected(key, user, world.org)


def test_flagctl_sets_and_reads_each_key(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    admin = world.stack.headers["Authorization"].removeprefix("Bearer ")
    urls = ["--command-url", world.stack.command_url, "--query-url", world.stack.query_url, "--key", admin]
    assert flagctl([*urls, "set", LOWER, "--org", world.org, "--on", "--reason", REASON]) == 0
    capsys.readouterr()

    def on() -> bool:
        assert flagctl([*urls, "eval", LOWER, "--org", world.org, "--json"]) == 0
        return json.loads(capsys.readouterr().out)["value"] is True

    wait_for(on, what="flagctl's change")
    assert flagctl([*urls, "eval", UPPER, "--org", world.org, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flag_key"] == UPPER
    assert flagctl([*urls, "set", "bad key", "--org", world.org, "--on", "--reason", REASON]) != 0
    assert "flag_key" in capsys.readouterr().err


BAD_BODY_KEYS = ["", "a/b", "a b", "tab\there", "caf\u00e9", "x" * (MAX_FLAG_KEY + 1), ".."]


@pytest.mark.parametrize("key", BAD_BODY_KEYS, ids=repr)
def test_an_invalid_key_in_a_body_is_a_422_naming_it(stack: Stack, key: str) -> None:
    with httpx.Client(base_url=stack.command_url, timeout=10, headers=stack.headers) as admin:
        response = admin.post("/v1/flags", json={"key": key, "group": "migrated", "reason": REASON})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "key"


@pytest.mark.parametrize("path", ["Bad%20Key", "caf%C3%A9", "a%0Ab", "x" * (MAX_FLAG_KEY + 1)])
def test_an_invalid_key_in_a_path_is_a_4xx_naming_it_everywhere(world: World, path: str) -> None:
    with httpx.Client(timeout=10, headers=world.stack.headers) as admin:
        command = admin.put(f"{world.stack.command_url}/v1/orgs/{world.org}/flags/{path}",
                            json={"enabled": True, "reason": REASON})  # fmt: skip
    assert (command.status_code, command.json()["field"]) == (422, "flag_key"), command.text
    with world.query() as http:
        native = http.get(f"/v1/orgs/{world.org}/flags/{path}")
        assert (native.status_code, native.json()["field"]) == (422, "flag_key"), native.text
        ofrep = http.post(f"/ofrep/v1/evaluate/flags/{path}", json={"context": {"targetingKey": "x"}})
        assert 400 <= ofrep.status_code < 500 and "key" in ofrep.json()["errorDetails"], ofrep.text
