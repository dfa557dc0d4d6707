"""The console's Notifications pages against the real stack and notifier, with a real receiver on 127.0.0.1.

A receiver that fails on purpose makes a dead letter of a real change; the console shows it on the
subscription's page (read from the notifier with the user's key) and "Retry now" sends it again, to the
receiver now answering. An org admin sees only its org's subscriptions; an auditor reads without retrying.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterator
from html import unescape
from typing import Any

import httpx
import pytest

from services.infra.settings import Settings
from tests.support.console import FLAG, ConsoleStack, start_console
from tests.support.processes import ServiceProcess
from tests.support.receivers import Answer, Received, Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"console notifications secret, 32").decode()


@pytest.fixture(scope="module")
def cs(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    logs = tmp_path_factory.mktemp("console-notifications")

    def settings() -> Settings:
        return make_settings().model_copy(update={"notifier_allow_hosts": ["127.0.0.1"], "notifier_max_attempts": 1})

    for stack in start_console(settings, logs):
        notifier = ServiceProcess("notifier", stack.stack.settings, logs,
                                  f"http://127.0.0.1:{stack.stack.settings.notifier_port}/healthz")  # fmt: skip
        try:
            notifier.start()
            yield stack
        finally:
            notifier.stop()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def form_fields(html: str, action: str) -> dict[str, str]:
    section = html.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', section)}


async def signed_in(cs: ConsoleStack, role: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=cs.url, timeout=10, follow_redirects=True)
    page = await http.get("/signin")
    answer = await http.post("/signin", data={"key": cs.keys[role], "csrf": csrf_of(page.text)})
    assert answer.status_code == 200, answer.text
    return http


async def command(cs: ConsoleStack, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, headers=cs.stack.headers) as http:
        answer = await http.request(method, f"{cs.stack.command_url}{path}", json=body)
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


async def eventually(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_dead_letter_shows_on_the_subscriptions_page_and_retry_now_sends_it_again(cs: ConsoleStack) -> None:
    up = {"answering": False}

    def respond(request: Received, index: int) -> Answer:
        return Answer(200) if up["answering"] else Answer(500, b"down on purpose")

    async with Receiver(respond) as receiver:
        made = await command(cs, "POST", f"/v1/orgs/{cs.org}/subscriptions", {
            "name": "acme pipeline", "reason": "console test", "flag_pattern": FLAG,
            "event_types": ["OrgOverrideSet", "alert.kill_switch"],
            "destination": {"kind": "webhook", "url": receiver.url, "secret": SECRET},
        })  # fmt: skip
        sid = made["id"]
        changed = await command(cs, "PUT", f"/v1/orgs/{cs.org}/flags/{FLAG}", {"enabled": True, "reason": "pilot"})
        event_id = changed["events"][0]["event_id"]

        admin = await signed_in(cs, "org-admin")
        try:
            listing = await admin.get("/subscriptions")
            assert listing.status_code == 200
            assert "acme pipeline" in listing.text and ">active<" in listing.text and ">kill_switch<" in listing.text

            async def dead_page() -> str | None:
                page = await admin.get(f"/subscriptions/{sid}")
                assert page.status_code == 200, page.text
                return page.text if "Dead letters (1 not retried)" in page.text else None

            page = await eventually(dead_page, "the dead letter on the console")
            assert event_id in page and "HTTP 500" in page and "Retry now" in page
            assert (await admin.get(f"/subscriptions?org={cs.other}")).status_code == 403
            assert (await admin.get(f"/subscriptions/{sid}?org={cs.other}")).status_code == 403

            up["answering"] = True
            action = f"/subscriptions/{sid}/retry"
            retried = await admin.post(action, data=form_fields(page, action))
            assert retried.status_code == 200 and "Queued again now" in retried.text
            await eventually(lambda: _accepted(receiver), "the retried delivery")
            assert receiver.received[-1].headers["webhook-id"] == event_id

            async def delivered_page() -> str | None:
                text = (await admin.get(f"/subscriptions/{sid}")).text
                return text if "Dead letters (0 not retried)" in text and ">delivered<" in text else None

            await eventually(delivered_page, "the retried dead letter marked retried")
        finally:
            await admin.aclose()

        auditor = await signed_in(cs, "auditor")
        try:
            page = (await auditor.get(f"/subscriptions/{sid}")).text
            assert "acme pipeline" in page and "Retry now" not in page
        finally:
            await auditor.aclose()


async def _accepted(receiver: Receiver) -> bool:
    return 200 in receiver.answered
