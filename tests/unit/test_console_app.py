"""The console's own enforcement, over HTTP with a fake of its API port: sessions, CSRF, roles, the change flow.

The fake records every call it receives, so a refusal is shown to happen in
the console itself, before anything reaches the APIs (which enforce again).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import httpx
import pytest

from services.console.app import create_app
from services.console.ports import ApiError
from services.console.sessions import MemorySessionStore
from services.console.web import COOKIE
from services.infra.settings import Settings

FLAG = "ai.insights.enabled"
KEYS = {
    "fsk_admin": {"key_id": "a" * 16, "name": "Ada", "role": "system-admin", "org_id": None},
    "fsk_acme_admin": {"key_id": "b" * 16, "name": "Olu", "role": "org-admin", "org_id": "acme"},
    "fsk_auditor": {"key_id": "c" * 16, "name": "Aud", "role": "auditor", "org_id": None},
    "fsk_evaluator": {"key_id": "d" * 16, "name": "Eve", "role": "evaluator", "org_id": "acme"},
}


@dataclass
class World:
    """What the fake APIs hold: stream heads, the log, and the calls received."""

    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    hidden_from_history: int = 0  # the newest events history does not show yet (its visibility horizon)
    usage_down: bool = False  # the query service cannot read evaluation counts (Redis down)
    catalog: list[dict[str, Any]] = field(default_factory=list)  # flags listed after FLAG
    notifier_down: bool = False  # the notifier does not answer (its delivery log cannot be read)

    def head(self, stream: str) -> dict[str, Any]:
        return self.streams.setdefault(stream, {"stream": stream, "version": 0, "value": None})

    def record(self, stream: str, value: Any, actor: str, reason: str, **extra: Any) -> dict[str, Any]:
        head = self.head(stream)
        previous = head["value"]
        head["version"] += 1
        head["value"] = value
        event = {
            "event_id": f"ev-{len(self.events) + 1}",
            "sequence": len(self.events) + 1,
            "occurred_at": "2026-11-29T10:00:00Z",
            "type": "OrgOverrideSet",
            "stream": stream,
            "version": head["version"],
            "org_id": extra.get("org", "acme"),
            "flag_key": FLAG,
            "actor": {"id": "key:x", "name": actor},
            "reason": reason,
            "previous": previous,
            "new": value,
        }
        self.events.append(event)
        return event


class FakeApi:
    def __init__(self, world: World, key: str) -> None:
        self.world = world
        self.key = key

    def _call(self, name: str, args: Any = None) -> None:
        self.world.calls.append((self.key, name, args))
        if self.key not in KEYS or self.key in self.world.revoked:
            raise ApiError(401, {"error": "unauthenticated", "detail": "no"})

    async def whoami(self) -> dict[str, Any]:
        self._call("whoami")
        return KEYS[self.key]

    async def catalog(self) -> list[dict[str, Any]]:
        self._call("catalog")
        return [
            {
                "key": FLAG,
                "group": "ai",
                "kind": "release",
                "owner": "ads",
                "description": "AI insights",
                "archived": False,
                "version": 1,
                "system": {"enabled": False, "rollout_percentage": None},
            },
            *self.world.catalog,
        ]

    async def evaluate(
        self, org: str, flag: str, *, platform: str | None, user: str | None, context: str | None = None
    ) -> dict[str, Any]:
        self._call("evaluate", (org, flag) if context is None else (org, flag, context))
        if context is not None:  # as the query API answers a context its org's rule matches
            explanation = f"{flag} is on: org level, rule 'staff' matched, set by Ada ('dogfood')"
            return {"flag_key": flag, "value": True, "reason": "TARGETING_MATCH", "level": "org", "error_code": None,
                    "rule": "staff", "explanation": explanation, "rollout": None, "event": None}  # fmt: skip
        return {
            "flag_key": flag,
            "value": False,
            "reason": "STATIC",
            "level": "system",
            "error_code": None,
            "explanation": f"{flag} is off: system level",
            "rollout": None,
            "event": None,
        }

    async def evaluate_all(self, org: str, *, platform: str | None, user: str | None) -> list[dict[str, Any]]:
        self._call("evaluate_all", org)
        return [await self.evaluate(org, FLAG, platform=platform, user=user)]

    async def platforms(self, org: str) -> list[str]:
        self._call("platforms", org)
        return ["meta"]

    async def stream(self, stream: str) -> dict[str, Any]:
        self._call("stream", stream)
        return dict(self.world.head(stream))

    async def events(self, *, org: str | None, flag: str | None, after: int, limit: int) -> dict[str, Any]:
        self._call("events", org)
        found = [e for e in self.world.events if e["sequence"] > after and (org is None or e["org_id"] == org)]
        return {"events": found[:limit], "next_after": found[-1]["sequence"] if found else after}

    async def history(self, params: dict[str, Any]) -> dict[str, Any]:
        self._call("history", params.get("org"))
        org, flag = params.get("org"), params.get("flag")
        found = [e for e in self.world.events if org in (None, e["org_id"]) and flag in (None, e["flag_key"])]
        visible = found[: len(found) - self.world.hidden_from_history]
        return {"entries": visible, "next_cursor": None, "has_more": False}

    async def export(self, params: dict[str, Any]) -> bytes:
        self._call("export", params.get("org"))
        return b"".join(json.dumps(e).encode() + b"\n" for e in (await self.history(params))["entries"])

    async def diff(self, *, org: str, since: str, until: str) -> dict[str, Any]:
        self._call("diff", org)
        return {"changes": []}

    async def stale_flags(self) -> dict[str, Any]:
        self._call("stale_flags")
        return {"days": 30, "as_of": "2026-11-29T10:00:00Z", "flags": []}

    async def schedules(self, org: str) -> dict[str, Any]:
        self._call("schedules", org)
        return {"org_id": org, "steps": []}

    async def at(self, *, org: str, at: str, flag: str | None, platform: str | None, user: str | None
                 ) -> dict[str, Any]:
        self._call("at", org)
        return {"org_id": org, "at": at, "flags": []}

    async def keys(self, org: str | None) -> list[dict[str, Any]]:
        self._call("keys", org)
        return []

    async def change(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._call("change", (method, path, body))
        if path.startswith("/v1/keys"):
            return {"id": "e" * 16, "name": body.get("name"), "key": "fsk_" + "e" * 16 + "_new"}
        stream = f"org/acme/flag/{FLAG}"
        head = self.world.head(stream)
        if body["expected_version"] != head["version"]:
            raise ApiError(409, {"error": "version_conflict", "detail": "moved", "current_version": head["version"]})
        value = (
            None
            if method == "DELETE"
            else {"enabled": body["enabled"], "rollout_percentage": body["rollout_percentage"]}
        )
        event = self.world.record(stream, value, KEYS[self.key]["name"], body["reason"])
        return {
            "changed": True,
            "stream": stream,
            "version": head["version"],
            "events": [{"event_id": event["event_id"], "type": event["type"], "version": event["version"]}],
        }

    async def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "outbox_lag": 0}

    async def override_counts(self) -> dict[str, dict[str, int]]:
        self._call("override_counts")
        return {FLAG: {"orgs": 3, "overrides": 7}}

    async def usage(self, org: str | None, *, minutes: int) -> dict[str, Any]:
        self._call("usage", (org, minutes))
        if self.world.usage_down:
            raise ApiError(503, {"error": "unavailable", "detail": "redis is unavailable"})
        stamps = [f"2026-11-29T10:{m:02d}:00Z" for m in range(minutes)]
        counts = [0] * (minutes - 2) + [11, 4]
        return {"org_id": org, "minutes": stamps, "flags": [{"flag_key": FLAG, "total": 15, "counts": counts}]}


    # --- notifications ---

    async def subscriptions(self, org: str | None) -> list[dict[str, Any]]:
        self._call("subscriptions", org)
        return [subscription_of(org)]

    async def subscription(self, org: str | None, subscription_id: str) -> dict[str, Any]:
        self._call("subscription", (org, subscription_id))
        if subscription_id != "hook1":
            raise ApiError(404, {"error": "unknown_subscription", "detail": "no such subscription",
                                 "field": "subscription_id"})
        return subscription_of(org)

    async def deliveries(self, org: str | None, subscription_id: str, *, limit: int) -> list[dict[str, Any]]:
        self._call("deliveries", (org, subscription_id, limit))
        if self.world.notifier_down:
            raise ApiError(503, {"error": "unreachable", "detail": "the service did not answer (ConnectError)"})
        return [{"id": 2, "event_ids": ["9b1d"], "attempt": 3, "status": "failed", "http_status": 503,
                 "latency_ms": 12.4, "error": "HTTP 503 after 3 attempts", "response": "down",
                 "attempted_at": "2026-12-04T10:00:01+00:00"}]

    async def dead_letters(self, org: str | None, subscription_id: str, *, limit: int) -> list[dict[str, Any]]:
        self._call("dead_letters", (org, subscription_id, limit))
        if self.world.notifier_down:
            raise ApiError(503, {"error": "unreachable", "detail": "the service did not answer (ConnectError)"})
        return [{"id": 7, "event_ids": ["9b1d"], "reason": "HTTP 503 after 3 attempts", "attempts": 3,
                 "created_at": "2026-12-04T10:00:01+00:00", "retried_at": None}]

    async def retry_dead_letters(self, org: str | None, subscription_id: str) -> dict[str, Any]:
        self._call("retry_dead_letters", (org, subscription_id))
        return {"subscription_id": subscription_id, "org_id": org, "retried": [7]}


def subscription_of(org: str | None) -> dict[str, Any]:
    return {"id": "hook1", "org_id": org, "name": f"hook of {org or 'the system'}",
            "destination": {"kind": "webhook", "target": "https://hooks.example/flags"}, "flag_pattern": "*",
            "groups": [], "kinds": [], "levels": [], "event_types": ["alert.dead_letter", "alert.kill_switch"],
            "paused": False, "version": 1, "created_at": "2026-12-04T09:00:00+00:00",
            "changed_at": "2026-12-04T09:00:00+00:00"}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Console:
    client: httpx.AsyncClient
    world: World
    clock: Clock

    async def sign_in(self, key: str) -> None:
        page = await self.client.get("/signin")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        answer = await self.client.post("/signin", data={"key": key, "csrf": token}, follow_redirects=False)
        assert answer.status_code == 303, answer.text

    async def csrf(self, path: str = "/flags") -> str:
        page = await self.client.get(path)
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    def changes(self) -> list[Any]:
        return [c for c in self.world.calls if c[1] == "change"]


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    world, clock = World(), Clock()
    app = create_app(
        Settings(console_idle_seconds=60),
        sessions=MemorySessionStore(idle=60, clock=clock),
        api_for=lambda key: FakeApi(world, key),
    )  # type: ignore[arg-type,return-value]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield Console(client, world, clock)


def org_change(csrf: str | None, **over: str) -> dict[str, str]:
    form = {
        "what": "setting",
        "flag": FLAG,
        "level": "org",
        "org": "acme",
        "state": "on",
        "rollout": "",
        "reason": "pilot for Acme",
        "expected_version": "0",
        "return_to": "/explain?org=acme",
    }
    if csrf is not None:
        form["csrf"] = csrf
    return {**form, **over}


# --- signing in and out ---------------------------------------------------------------------------------


async def test_pages_need_a_session_and_send_the_user_to_sign_in(console: Console) -> None:
    answer = await console.client.get("/orgs/acme?platform=tiktok", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2Forgs%2Facme%3Fplatform%3Dtiktok"


async def test_sign_in_gives_an_httponly_strict_cookie_that_is_not_the_key(console: Console) -> None:
    await console.sign_in("fsk_admin")
    cookie = next(c for c in console.client.cookies.jar if c.name == COOKIE)
    assert cookie.value != "fsk_admin" and len(cookie.value) >= 43
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") in ("Strict", "strict")
    page = await console.client.get("/flags")
    assert page.status_code == 200 and FLAG in page.text
    assert "fsk_admin" not in page.text  # the key never goes back to the browser
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_a_bad_key_or_a_forged_sign_in_is_refused(console: Console) -> None:
    page = await console.client.get("/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    bad = await console.client.post("/signin", data={"key": "fsk_nobody", "csrf": token})
    assert bad.status_code == 401 and "not accepted" in bad.text
    console.client.cookies.clear()
    forged = await console.client.post("/signin", data={"key": "fsk_admin", "csrf": token})
    assert forged.status_code == 403
    assert COOKIE not in console.client.cookies


async def test_idle_sessions_end_and_sign_out_ends_them_now(console: Console) -> None:
    await console.sign_in("fsk_admin")
    console.clock.now += 59
    assert (await console.client.get("/flags")).status_code == 200
    console.clock.now += 61
    expired = await console.client.get("/flags", follow_redirects=False)
    assert expired.status_code == 303 and "why=expired" in expired.headers["location"]

    await console.sign_in("fsk_admin")
    cookie = console.client.cookies[COOKIE]
    assert (
        await console.client.post("/signout", data={"csrf": await console.csrf()}, follow_redirects=False)
    ).status_code == 303
    console.client.cookies.set(COOKIE, cookie)  # replaying the old cookie does not bring the session back
    assert (await console.client.get("/flags", follow_redirects=False)).status_code == 303


async def test_a_revoked_key_ends_the_session(console: Console) -> None:
    await console.sign_in("fsk_admin")
    console.world.revoked.add("fsk_admin")
    answer = await console.client.get("/flags", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin?why=revoked"
    assert (await console.client.get("/flags", follow_redirects=False)).headers["location"].startswith("/signin")


# --- CSRF -------------------------------------------------------------------------------------------------


async def test_state_changing_posts_need_the_sessions_csrf_token_and_our_origin(console: Console) -> None:
    await console.sign_in("fsk_admin")
    token = await console.csrf()
    for form, headers in [
        (org_change(None), {}),
        (org_change("forged"), {}),
        (org_change(token), {"Origin": "https://evil.example"}),
    ]:
        answer = await console.client.post("/change/apply", data=form, headers=headers)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert (await console.client.post("/signout", data={})).status_code == 403
    assert console.changes() == []
    ok = await console.client.post("/change/apply", data=org_change(token), headers={"Origin": "http://console.test"})
    assert ok.status_code == 200 and len(console.changes()) == 1


async def test_a_cookieless_post_is_refused_and_never_replayed(console: Console) -> None:
    answer = await console.client.post("/change/apply", data=org_change("anything"), follow_redirects=False)
    assert answer.status_code == 401
    assert console.world.calls == []


# --- roles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["fsk_auditor", "fsk_evaluator"])
async def test_roles_that_change_nothing_cannot_change_anything(console: Console, key: str) -> None:
    await console.sign_in(key)
    token = await console.csrf()
    for step in ("/change/preview", "/change/apply"):
        answer = await console.client.post(step, data=org_change(token))
        assert answer.status_code == 403, step
    system = org_change(token, level="system", state="off")
    assert (await console.client.post("/change/apply", data=system)).status_code == 403
    assert (await console.client.get(f"/change?flag={FLAG}&level=org&org=acme")).status_code == 403
    assert console.changes() == []
    assert "Review change" not in (await console.client.get(f"/flags/{FLAG}")).text  # and no form is offered


async def test_explain_passes_the_context_and_names_the_rule_that_matched(console: Console) -> None:
    await console.sign_in("fsk_acme_admin")
    context = '{"email": "ana@acme.com"}'
    page = await console.client.get("/explain", params={"org": "acme", "flag": FLAG, "context": context})
    assert page.status_code == 200
    assert ("fsk_acme_admin", "evaluate", ("acme", FLAG, context)) in console.world.calls
    assert '<strong id="rule">staff</strong>' in page.text and "rule &#39;staff&#39; matched" in page.text
    assert 'value="{&#34;email&#34;: &#34;ana@acme.com&#34;}"' in page.text  # the form keeps what was asked
    plain = await console.client.get("/explain", params={"org": "acme", "flag": FLAG})
    assert 'id="rule"' not in plain.text


async def test_an_org_admin_cannot_reach_another_orgs_pages_or_data(console: Console) -> None:
    await console.sign_in("fsk_acme_admin")
    token = await console.csrf()
    before = len(console.world.calls)
    for path in [
        "/orgs/globex",
        "/explain?org=globex&flag=" + FLAG,
        "/audit?org=globex",
        "/audit/export?org=globex",
        "/audit/live?org=globex",
        f"/change?flag={FLAG}&level=org&org=globex",
    ]:
        answer = await console.client.get(path)
        assert answer.status_code == 403, path
        assert "globex" not in answer.text  # the refusal says nothing about the org it names
    for form in (org_change(token, org="globex"), org_change(token, level="system")):
        assert (await console.client.post("/change/apply", data=form)).status_code == 403
    assert console.world.calls[before:] == []  # refused in the console: no API call was made
    assert (await console.client.get("/orgs/acme")).status_code == 200


async def test_an_evaluator_sees_no_audit_log(console: Console) -> None:
    await console.sign_in("fsk_evaluator")
    assert (await console.client.get("/audit")).status_code == 403
    assert "Audit log" not in (await console.client.get("/orgs/acme")).text


# --- the change flow --------------------------------------------------------------------------------------


async def test_preview_shows_previous_and_new_and_sends_nothing(console: Console) -> None:
    await console.sign_in("fsk_acme_admin")
    preview = await console.client.post(
        "/change/preview", data=org_change(await console.csrf(), state="on", rollout="25")
    )
    assert preview.status_code == 200
    assert re.search(r'class="before">not set<.*class="after">on, 25% rollout<', preview.text, re.S)
    assert console.changes() == []
    applied = await console.client.post(
        "/change/apply", data=org_change(await console.csrf(), state="on", rollout="25")
    )
    assert applied.status_code == 200 and "Recorded as version 1" in applied.text
    ((_, _, (method, path, body)),) = console.changes()
    assert (method, path) == ("PUT", f"/v1/orgs/acme/flags/{FLAG}")
    assert body == {"reason": "pilot for Acme", "expected_version": 0, "enabled": True, "rollout_percentage": 25}


async def test_a_lost_race_shows_their_change_and_offers_mine_again(console: Console) -> None:
    await console.sign_in("fsk_acme_admin")
    token = await console.csrf()
    console.world.record(
        f"org/acme/flag/{FLAG}", {"enabled": False, "rollout_percentage": None}, "Bo", "incident 42"
    )  # someone else, after my page loaded at version 0
    lost = await console.client.post("/change/apply", data=org_change(token))
    assert lost.status_code == 409
    assert "Bo" in lost.text and "incident 42" in lost.text and "not set → off" in lost.text
    redo = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', lost.text.split('action="/change/preview"')[1]))
    assert redo["expected_version"] == "1" and redo["state"] == "on" and redo["reason"] == "pilot for Acme"
    again = await console.client.post("/change/preview", data=redo)
    assert again.status_code == 200 and 'class="before">off<' in again.text
    confirm = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', again.text.split('action="/change/apply"')[1]))
    assert (await console.client.post("/change/apply", data=confirm)).status_code == 200
    assert console.world.head(f"org/acme/flag/{FLAG}")["version"] == 2


async def test_bad_input_is_a_4xx_naming_the_field_never_a_stack_trace(console: Console) -> None:
    await console.sign_in("fsk_admin")
    answer = await console.client.post("/change/preview", data=org_change(await console.csrf(), rollout="150"))
    assert answer.status_code == 422 and "rollout" in answer.text and "Traceback" not in answer.text
    assert (await console.client.get("/orgs/not%20an%20org")).status_code == 422
    assert (await console.client.get("/audit?since=soon")).status_code == 422
    assert (await console.client.get("/nowhere")).status_code == 404
    escaped = await console.client.post(
        "/change/apply", data=org_change(await console.csrf(), return_to="//evil.example")
    )
    assert escaped.status_code == 200 and "evil.example" not in escaped.text  # back links stay in the console


async def test_rolling_back_needs_the_role_that_could_make_the_change(console: Console) -> None:
    stream = f"org/acme/flag/{FLAG}"
    console.world.record(stream, {"enabled": True, "rollout_percentage": None}, "Ada", "first")
    console.world.record(stream, {"enabled": False, "rollout_percentage": None}, "Ada", "second")
    await console.sign_in("fsk_auditor")
    audit_page = await console.client.get("/audit")
    assert "second" in audit_page.text and "Roll back" not in audit_page.text
    assert (await console.client.get(f"/rollback?stream={stream}&version=2")).status_code == 403
    form = {"csrf": await console.csrf("/audit"), "stream": stream, "version": "2", "reason": "undo"}
    assert (await console.client.post("/rollback/apply", data=form)).status_code == 403
    assert console.changes() == []

    await console.sign_in("fsk_acme_admin")
    assert "Roll back" in (await console.client.get("/audit")).text
    page = await console.client.get(f"/rollback?stream={stream}&version=2")
    assert re.search(r'class="before">off<.*class="after">on<', page.text, re.S)
    form = {"csrf": await console.csrf("/audit"), "stream": stream, "version": "2", "reason": "undo"}
    assert (await console.client.post("/rollback/apply", data={**form, "reason": " "})).status_code == 422
    assert console.changes() == []


async def test_a_change_history_does_not_show_yet_is_on_the_audit_page_at_once(console: Console) -> None:
    for n in range(3):
        console.world.record(f"org/acme/flag/{FLAG}", {"enabled": n % 2 == 0, "rollout_percentage": None}, "Ada",
                             f"change {n}")
    console.world.hidden_from_history = 2
    await console.sign_in("fsk_acme_admin")
    page = (await console.client.get("/audit")).text
    assert page.count('class="entry') == 3 and page.index("change 2") < page.index("change 0")


async def test_keys_follow_the_grant_rules(console: Console) -> None:
    await console.sign_in("fsk_auditor")
    assert (await console.client.get("/keys")).status_code == 403
    await console.sign_in("fsk_acme_admin")
    assert (await console.client.get("/keys?org=globex")).status_code == 403
    token = await console.csrf("/keys")
    for role, org in (("system-admin", ""), ("evaluator", "globex"), ("auditor", "")):
        form = {"csrf": token, "name": "n", "role": role, "org": org, "reason": "r"}
        assert (await console.client.post("/keys", data=form)).status_code == 403, (role, org)
    assert console.changes() == []
    made = await console.client.post("/keys", data={"csrf": token, "name": "web", "role": "evaluator", "org": "acme",
                                                    "reason": "app"})
    assert made.status_code == 200 and "fsk_" + "e" * 16 + "_new" in made.text  # shown once, on this page
    (_, _, (method, path, body)), = console.changes()
    assert (method, path, body["org_id"], body["role"]) == ("POST", "/v1/keys", "acme", "evaluator")
    assert "fsk_" + "e" * 16 not in (await console.client.get("/keys")).text


# --- override counts and evaluation counts ------------------------------------------------------------------


async def test_the_flag_list_says_how_many_orgs_override_each_flag_to_system_wide_readers_only(
    console: Console,
) -> None:
    await console.sign_in("fsk_auditor")
    page = await console.client.get("/flags")
    cell = re.search(r'<td class="override-count">(.*?)</td>', page.text, re.S)
    assert cell is not None and "3 orgs" in cell.group(1) and "7 overrides" in cell.group(1)
    await console.sign_in("fsk_acme_admin")
    before = len(console.world.calls)
    page = await console.client.get("/flags")
    assert page.status_code == 200 and "Overridden by" not in page.text
    assert "override_counts" not in [name for _, name, _ in console.world.calls[before:]]


@pytest.mark.parametrize(("key", "asked"), [("fsk_admin", None), ("fsk_acme_admin", "acme")])
async def test_the_status_page_charts_evaluations_per_flag_of_the_callers_scope(
    console: Console, key: str, asked: str | None
) -> None:
    await console.sign_in(key)
    page = await console.client.get("/status")
    assert page.status_code == 200
    assert ("usage", (asked, 60)) in [(name, args) for _, name, args in console.world.calls]
    assert f"Evaluations per minute: {FLAG} (15 in all)" in page.text
    assert 'aria-label="Evaluations per minute, all flags, last 60 minutes (UTC)"' in page.text
    assert "<title>10:58: 11</title>" in page.text  # the bar of that minute, with its count


async def test_an_evaluator_asks_for_no_evaluation_counts(console: Console) -> None:
    await console.sign_in("fsk_evaluator")
    assert (await console.client.get("/status")).status_code == 200
    assert "usage" not in [name for _, name, _ in console.world.calls]


async def test_the_status_page_stands_when_evaluation_counts_cannot_be_read(console: Console) -> None:
    console.world.usage_down = True
    await console.sign_in("fsk_admin")
    page = await console.client.get("/status")
    assert page.status_code == 200 and "Recent changes" in page.text
    assert "Evaluation counts are unavailable: redis is unavailable." in page.text


# --- typed flags: the type, the variants' values (JSON, escaped), a level's variant or split ----------------

THEME = "t.layout"
VALUES = {"grid": {"columns": 3, "note": "<script>alert(1)</script>"}, "list": [1, 2]}
DEFINITION = {"key": THEME, "group": "t", "kind": "release", "description": "", "owner": None, "archived": False,
              "killed": False, "variants": [], "expires_at": None, "value_type": "object", "values": VALUES,
              "default_variant": "grid", "off_variant": "list"}


def typed_world(console: Console, *, system: dict[str, Any] | None = None) -> None:
    listed = DEFINITION | {"version": 1, "system": system}
    console.world.catalog.append(listed)
    console.world.streams[f"flag/{THEME}"] = {"stream": f"flag/{THEME}", "version": 1, "value": DEFINITION}
    if system is not None:
        console.world.streams[f"flag/{THEME}/system"] = {"stream": f"flag/{THEME}/system", "version": 1,
                                                         "value": system}


def form_fields(html: str, action: str) -> dict[str, str]:
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', html.split(f'action="{action}"')[1].split("</form>")[0]))


async def test_the_flag_page_shows_the_type_each_variants_value_and_what_the_system_default_serves(
    console: Console,
) -> None:
    system = {"enabled": True, "rollout_percentage": None, "split": [{"name": "grid", "weight": 250},
                                                                      {"name": "list", "weight": 750}]}
    typed_world(console, system=system)
    await console.sign_in("fsk_admin")
    page = await console.client.get(f"/flags/{THEME}")
    assert page.status_code == 200
    assert '<span class="tag">object</span>' in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert(1)" not in page.text
    assert '<pre class="json">{\n  &#34;columns&#34;: 3,' in page.text  # pretty JSON, escaped
    assert re.search(r'<th scope="row">grid</th>.*?tag on">default<', page.text, re.S)
    assert re.search(r'<th scope="row">list</th>.*?tag off">when off<', page.text, re.S)
    assert "on, split grid 25% / list 75%" in page.text
    assert '<textarea id="variant_value_0" name="variant_value_0"' in page.text  # an object's value is JSON
    assert 'name="serve" value="split"' in page.text and 'value="grid=250, list=750"' in page.text
    assert "Serves when on (now: split grid 25% / list 75%)" in page.text


async def test_a_boolean_flags_page_offers_no_variant_rows(console: Console) -> None:
    await console.sign_in("fsk_admin")
    page = await console.client.get("/flags/ai.insights.enabled")
    assert '<span class="tag">boolean</span>' in page.text
    assert "variant_name_0" not in page.text and 'name="serve"' not in page.text


async def test_an_edit_with_bad_json_is_refused_naming_the_row(console: Console) -> None:
    typed_world(console)
    await console.sign_in("fsk_admin")
    body = {"csrf": await console.csrf(), "what": "definition", "flag": THEME, "expected_version": "1",
            "reason": "softer",
            "variant_name_0": "grid", "variant_value_0": "{columns: 3}", "variant_name_1": "list",
            "variant_value_1": "[1, 2]", "new_group": "t", "new_default_variant": "grid", "new_off_variant": "list"}
    refused = await console.client.post("/change/preview", data=body)
    assert refused.status_code == 422 and "variant_value_0" in refused.text and "not JSON" in refused.text
    body["variant_value_0"] = '{"columns": 4}'
    preview = await console.client.post("/change/preview", data=body)
    assert preview.status_code == 200, preview.text
    assert "grid={&#34;columns&#34;: 4}, list=[1, 2]" in preview.text
    confirm = form_fields(preview.text, "/change/apply")
    assert (confirm["variant_name_0"], unescape(confirm["variant_value_0"])) == ("grid", '{"columns": 4}')
    assert console.changes() == []


async def test_a_level_form_picks_a_variant_or_a_split_and_sends_it(console: Console) -> None:
    typed_world(console)
    await console.sign_in("fsk_acme_admin")
    page = await console.client.get(f"/change?flag={THEME}&level=org&org=acme")
    assert page.status_code == 200 and "now: the default variant" in page.text
    assert "<option >grid</option><option >list</option>" in page.text
    form = {"what": "setting", "flag": THEME, "level": "org", "org": "acme", "state": "on", "rollout": "",
            "reason": "list for Acme", "expected_version": "0", "serve": "split", "split": "grid=300, list=600",
            "csrf": await console.csrf()}
    refused = await console.client.post("/change/preview", data=form)
    assert refused.status_code == 422 and "split" in refused.text and "sum to 1000" in refused.text
    preview = await console.client.post("/change/preview", data={**form, "split": "grid=300, list=700"})
    assert preview.status_code == 200 and 'class="after">on, split grid 30% / list 70%<' in preview.text
    confirm = form_fields(preview.text, "/change/apply")
    assert (confirm["serve"], confirm["split"]) == ("split", "grid=300, list=700")
    applied = await console.client.post("/change/apply", data=confirm)
    assert applied.status_code == 200
    [(_, _, (method, path, body))] = console.changes()
    assert (method, path) == ("PUT", f"/v1/orgs/acme/flags/{THEME}")
    assert body["split"] == [{"name": "grid", "weight": 300}, {"name": "list", "weight": 700}]


# --- notifications --------------------------------------------------------------------------------------


def calls_of(console: Console, *names: str) -> list[tuple[str, Any]]:
    return [(c[1], c[2]) for c in console.world.calls if c[1] in names]


async def test_a_system_admin_lists_the_system_subscriptions_and_reads_a_delivery_log_and_dead_letters(
    console: Console,
) -> None:
    await console.sign_in("fsk_admin")
    page = await console.client.get("/subscriptions")
    assert page.status_code == 200
    assert "hook of the system" in page.text and "alerts only" in page.text and ">kill_switch<" in page.text
    assert calls_of(console, "subscriptions") == [("subscriptions", None)]
    detail = await console.client.get("/subscriptions/hook1")
    assert detail.status_code == 200
    text = unescape(detail.text)
    assert "HTTP 503 after 3 attempts" in text and "Dead letters (1 not retried)" in text and "Retry now" in text
    assert ("deliveries", (None, "hook1", 50)) in calls_of(console, "deliveries")
    other = await console.client.get("/subscriptions/hook1?org=globex")
    assert other.status_code == 200 and "hook of globex" in other.text  # a system admin reads any org's


async def test_retry_now_needs_the_csrf_token_and_queues_the_dead_letters_again(console: Console) -> None:
    await console.sign_in("fsk_admin")
    assert (await console.client.post("/subscriptions/hook1/retry", data={"org": ""})).status_code == 403
    assert not calls_of(console, "retry_dead_letters")
    token = await console.csrf("/subscriptions/hook1")
    done = await console.client.post("/subscriptions/hook1/retry", data={"csrf": token, "org": ""})
    assert done.status_code == 200 and "Queued again now: dead letter 7" in done.text
    assert calls_of(console, "retry_dead_letters") == [("retry_dead_letters", (None, "hook1"))]


async def test_an_org_admin_sees_only_its_orgs_subscriptions(console: Console) -> None:
    await console.sign_in("fsk_acme_admin")
    page = await console.client.get("/subscriptions")
    assert page.status_code == 200 and "hook of acme" in page.text
    before = len(console.world.calls)
    for path in ("/subscriptions?org=globex", "/subscriptions/hook1?org=globex"):
        assert (await console.client.get(path)).status_code == 403, path
    token = await console.csrf("/subscriptions/hook1")
    refused = await console.client.post("/subscriptions/hook1/retry", data={"csrf": token, "org": "globex"})
    assert refused.status_code == 403
    assert not [c for c in console.world.calls[before:] if "globex" in repr(c[2])]  # refused before any call
    mine = await console.client.post("/subscriptions/hook1/retry", data={"csrf": token, "org": ""})
    assert mine.status_code == 200 and ("retry_dead_letters", ("acme", "hook1")) in calls_of(
        console, "retry_dead_letters")


async def test_an_auditor_reads_the_log_without_a_retry_button_and_an_evaluator_sees_nothing(
    console: Console,
) -> None:
    await console.sign_in("fsk_auditor")
    detail = await console.client.get("/subscriptions/hook1")
    assert detail.status_code == 200 and "HTTP 503" in detail.text and "Retry now" not in detail.text
    token = await console.csrf("/subscriptions/hook1")
    assert (await console.client.post("/subscriptions/hook1/retry", data={"csrf": token})).status_code == 403
    assert not calls_of(console, "retry_dead_letters")
    await console.client.post("/signout", data={"csrf": token})
    await console.sign_in("fsk_evaluator")
    assert (await console.client.get("/subscriptions")).status_code == 403
    assert 'href="/subscriptions"' not in (await console.client.get("/status")).text


async def test_a_subscription_page_stands_when_the_notifier_is_away_and_names_a_bad_id(console: Console) -> None:
    await console.sign_in("fsk_admin")
    console.world.notifier_down = True
    page = await console.client.get("/subscriptions/hook1")
    assert page.status_code == 200
    assert "hook of the system" in page.text and "The delivery log cannot be shown now" in page.text
    bad = await console.client.get("/subscriptions/Not%20an%20id")
    assert bad.status_code == 422 and "subscription_id" in bad.text
    assert (await console.client.get("/subscriptions/nohook")).status_code == 404
