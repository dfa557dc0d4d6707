"""A subscription's life over HTTP, on the real services, told to real receivers on 127.0.0.1.

The command service and the notifier run as processes (FLAGS_NOTIFIER_ALLOW_HOSTS names the
receivers' host); subscriptions are managed with `flagctl notify` (a client of the command API
and of the notifier's), flags changed with the command API. A witness subscription hears every
change too: once the witness has a change, a subscription that was going to hear it has had it,
so "no delivery" is checked without sleeping on a guess.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from flagctl.main import main
from services.infra.settings import Settings
from tests.support.auth import admin_key
from tests.support.processes import ServiceProcess
from tests.support.receivers import Answer, Received, Receiver, always, verifying

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"end-to-end webhook secret, 32 b!").decode()
ORG = "acme"


@dataclass
class Services:
    settings: Settings
    command_url: str
    notifier_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {admin_key(self.settings)}"}


@pytest.fixture
def services(make_settings: Callable[[], Settings], tmp_path: Path) -> Iterator[Services]:
    settings = make_settings().model_copy(update={
        "notifier_allow_hosts": ["127.0.0.1"],
        "notifier_backoff_base": 0.05,
        "notifier_backoff_cap": 0.1,
        "notifier_max_attempts": 2,
    })  # fmt: skip
    base = "http://127.0.0.1"
    command = ServiceProcess("command", settings, tmp_path, f"{base}:{settings.command_port}/healthz")
    notifier = ServiceProcess("notifier", settings, tmp_path, f"{base}:{settings.notifier_port}/healthz")
    try:
        command.start()
        notifier.start()
        yield Services(settings, f"{base}:{settings.command_port}", f"{base}:{settings.notifier_port}")
    finally:
        notifier.stop()
        command.stop()


def flagctl(s: Services, capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    """`flagctl notify …  --org acme --json`: its one JSON answer (or the lines of a list, as `items`)."""
    status = main(["--command-url", s.command_url, "--notifier-url", s.notifier_url, "--key", admin_key(s.settings),
                   "notify", *argv, "--org", ORG, "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    return lines[0] if len(lines) == 1 and argv[0] not in ("log", "list") else {"items": lines}


async def change(s: Services, flag: str, enabled: bool) -> str:
    """Set acme's override; the event id (= the `webhook-id` of its deliveries)."""
    async with httpx.AsyncClient(headers=s.headers, timeout=10) as http:
        put = await http.put(f"{s.command_url}/v1/orgs/{ORG}/flags/{flag}", json={"enabled": enabled, "reason": "e2e"})
    assert put.status_code == 201, put.text
    return str(put.json()["events"][0]["event_id"])


async def heard(receiver: Receiver, event_id: str, timeout: float = 15.0) -> Received:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request, status in zip(receiver.received, receiver.answered, strict=False):
            if request.headers.get("webhook-id") == event_id and 200 <= status < 300:
                return request
        await asyncio.sleep(0.02)
    raise AssertionError(f"{event_id} not delivered in {timeout} s; got {[r.headers for r in receiver.received]}")


def ids(receiver: Receiver) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.received]


async def test_create_change_pause_resume_and_a_dead_letter_retried_now(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    s = services
    flag = f"e2e.n{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(headers=s.headers, timeout=10) as http:
        made = await http.post(f"{s.command_url}/v1/flags", json={"key": flag, "group": "e2e", "reason": "e2e"})
        assert made.status_code == 201, made.text
    down = {"failing": True}

    def flaky(request: Received, index: int) -> Answer:
        return Answer(503, b"down on purpose") if down["failing"] else Answer(200)

    async with Receiver(verifying(SECRET)) as signed, Receiver(always()) as witness, Receiver(flaky) as failing:
        created = flagctl(s, capsys, "add", "signed", "--webhook", signed.url, "--secret", SECRET, "--flags", flag,
                          "--reason", "e2e: a signed webhook")  # fmt: skip
        sid = created["id"]
        assert created["secret"] == SECRET and not created["paused"]
        flagctl(s, capsys, "add", "witness", "--webhook", witness.url, "--flags", flag, "--reason", "e2e: witness")
        listed = flagctl(s, capsys, "list")["items"]
        assert {x["name"] for x in listed} == {"signed", "witness"} and all("secret" not in x for x in listed)

        first = await change(s, flag, True)
        request = await heard(signed, first)
        assert Webhook(SECRET).verify(request.body, request.headers)["data"]["event_id"] == first
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(request.headers)
        assert signed.answered == [204]  # the receiver's own standardwebhooks verifier accepted it

        assert flagctl(s, capsys, "pause", sid, "--reason", "e2e: quiet")["paused"] is True
        while_paused = await change(s, flag, False)
        await heard(witness, while_paused)
        await asyncio.sleep(0.5)  # the signed subscription's queue is empty: it would have had it by now
        assert ids(signed) == [first]

        assert flagctl(s, capsys, "resume", sid, "--reason", "e2e: again")["paused"] is False
        after = await change(s, flag, True)
        await heard(signed, after)
        assert ids(signed) == [first, after]  # the change made while paused is not sent later
        [newest, *_] = flagctl(s, capsys, "log", sid)["items"]
        assert (newest["status"], newest["http_status"], newest["event_ids"]) == ("delivered", 204, [after])

        broken = flagctl(s, capsys, "add", "failing", "--webhook", failing.url, "--flags", flag,
                         "--reason", "e2e: a receiver that fails")["id"]  # fmt: skip
        lost = await change(s, flag, False)
        await heard(witness, lost)
        deadline = time.monotonic() + 15
        dead: list[dict] = []  # type: ignore[type-arg]
        while not dead and time.monotonic() < deadline:
            dead = flagctl(s, capsys, "log", broken, "--dead")["items"]
            await asyncio.sleep(0.1)
        [letter] = dead
        assert (letter["event_ids"], letter["attempts"], letter["retried_at"]) == ([lost], 2, None)
        assert letter["reason"] == "HTTP 503 after 2 attempts" and failing.answered == [503, 503]

        down["failing"] = False
        assert flagctl(s, capsys, "retry", broken)["retried"] == [letter["id"]]
        await heard(failing, lost)
        deadline = time.monotonic() + 10
        while flagctl(s, capsys, "log", broken, "--dead")["items"][0]["retried_at"] is None:
            assert time.monotonic() < deadline, "the retried dead letter is never marked retried"
            await asyncio.sleep(0.1)
        assert flagctl(s, capsys, "retry", broken)["retried"] == []  # nothing left to send again
        [delivered, *_] = flagctl(s, capsys, "log", broken)["items"]
        assert (delivered["status"], delivered["event_ids"]) == ("delivered", [lost])
        assert ids(signed) == [first, after, lost]  # the failing destination held nobody else back

    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{s.notifier_url}/readyz")).json() == {"status": "ready", "postgres": "ok"}
