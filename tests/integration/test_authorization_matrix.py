"""The authorization matrix: every route of both APIs × every kind of caller × own org / other org / system scope.

One table, `MATRIX`, says what each caller gets from each route for each
target. The cells are generated from the apps' own routes, so a route added
without a row is a failing test (`… | NO ROW`), and so is a row left behind
by a route that is gone. Every refused write — 401 or 403 or 404 — must leave
the event store (which is the outbox), the key table and Redis exactly as they
were. Keys are created through `POST /v1/keys` once per module, on a stack of
its own (the bad keys are each sent from a fresh loopback address, so the
failed-auth throttle, which is in force, never blocks the suite).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.command.api import create_app as command_app
from services.infra.settings import Settings
from services.query.api import create_app as query_app
from tests.support.auth import admin_headers, bearer
from tests.support.stack import Stack, start_stack
from tests.support.tenants import (
    REASON,
    Evidence,
    Snapshot,
    Tenants,
    create_key,
    expect,
    fresh_source,
    from_address,
    seed_tenants,
)

pytestmark = pytest.mark.integration

# Open on purpose (probes for orchestrators and Prometheus), and the interactive docs.
OPEN = {
    ("command", "GET", "/healthz"),
    ("command", "GET", "/readyz"),
    ("command", "GET", "/metrics"),
    ("query", "GET", "/healthz"),
    ("query", "GET", "/readyz"),
    ("query", "GET", "/metrics"),
}

# The callers, as columns. The last four must get 401 from every route that is not open.
ROLES = ("system-admin", "org-admin of A", "auditor of A", "system auditor", "evaluator of A")
UNAUTHENTICATED = ("revoked admin key", "expired admin key", "unknown key", "no key")
CALLERS = ROLES + UNAUTHENTICATED


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None


class World:
    """The module's stack, tenants, keys and victims, and the setup an allowed write needs."""

    def __init__(self, stack: Stack, tenants: Tenants, admin: httpx.AsyncClient, evidence: Evidence) -> None:
        self.stack = stack
        self.t = tenants
        self.admin = admin
        self.evidence = evidence
        self.headers: dict[str, dict[str, str]] = {}
        self.victims: dict[str, str] = {}  # target -> id of a live key a refused revoke would hit
        self._n = itertools.count(1)
        self._last_pct: dict[str, int] = {}
        self._subscriptions: dict[tuple[str, bool], str] = {}  # (target, paused) -> a live victim subscription
        self._segments: dict[str, str] = {}  # target -> the key of a live victim segment

    def next(self) -> int:
        return next(self._n)

    def pct(self, path: str) -> int:
        """A rollout percentage other than the last one set at `path` (1–90; refused writes ask for 99)."""
        self._last_pct[path] = self._last_pct.get(path, 50) % 90 + 1
        return self._last_pct[path]

    def org(self, target: str) -> str:
        return {"own": self.t.a, "other": self.t.b}[target]

    def url(self, service: str, path: str) -> str:
        return (self.stack.command_url if service == "command" else self.stack.query_url) + path

    async def setup(self, method: str, path: str, body: dict[str, Any], *statuses: int) -> dict[str, Any]:
        return await expect(await self.admin.request(method, self.stack.command_url + path, json=body),
                            *(statuses or (201,)))

    async def fresh_key(self, target: str) -> str:
        role, org = {"own": ("evaluator", self.t.a), "other": ("evaluator", self.t.b), "system": ("auditor", None)}[
            target
        ]
        return str((await create_key(self.admin, self.stack.command_url, role, org))["id"])

    async def prime(self) -> None:
        """Read A's and B's documents through the query service, so Redis holds them (and a change would show)."""
        for org in (self.t.a, self.t.b):
            url = self.url("query", f"/v1/orgs/{org}/flags")
            await expect(await self.admin.get(url, params={"platform": "meta", "user": self.t.user}), 200)


Builder = Callable[[World, str, bool], Awaitable[Req]]  # (world, target, allowed) -> the request


# --- request builders: an allowed write gets a fresh precondition; a refused one aims at live state -------------


def _body(**fields: Any) -> dict[str, Any]:
    return {"reason": REASON, **fields}


async def define_flag(w: World, _: str, allowed: bool) -> Req:
    key = f"{w.t.flag}-new{w.next()}" if allowed else f"{w.t.flag}-refused"
    return Req("POST", "/v1/flags", _body(key=key, group="acl"))


async def update_flag(w: World, _: str, allowed: bool) -> Req:
    return Req("PATCH", f"/v1/flags/{w.t.flag}", _body(description=f"v{w.next()}" if allowed else "refused"))


async def archive_flag(w: World, _: str, allowed: bool) -> Req:
    key = w.t.flag
    if allowed:
        key = f"{w.t.spare}-doomed{w.next()}"
        await w.setup("POST", "/v1/flags", _body(key=key, group="acl"))
    return Req("POST", f"/v1/flags/{key}/archive", _body())


async def set_system(w: World, _: str, allowed: bool) -> Req:
    path = f"/v1/flags/{w.t.flag}/system"
    return Req("PUT", path, _body(rollout_percentage=w.pct(path) if allowed else 99))


def set_override(level: int) -> Builder:
    async def build(w: World, target: str, allowed: bool) -> Req:
        path = w.t.override_paths(w.org(target))[level]
        return Req("PUT", path, _body(rollout_percentage=w.pct(path) if allowed else 99))

    return build


def clear_override(level: int) -> Builder:
    async def build(w: World, target: str, allowed: bool) -> Req:
        org = w.org(target)
        if not allowed:  # the seeded override: a clear that got through would write
            return Req("DELETE", w.t.override_paths(org)[level], _body())
        path = [
            f"/v1/orgs/{org}/flags/{w.t.spare}",
            f"/v1/orgs/{org}/platforms/google/flags/{w.t.spare}",
            f"/v1/orgs/{org}/users/u{w.next()}/flags/{w.t.spare}",
        ][level]
        await w.setup("PUT", path, _body(enabled=True))
        return Req("DELETE", path, _body())

    return build


async def get_stream(w: World, target: str, _: bool) -> Req:
    stream = {
        "own": f"org/{w.t.a}/flag/{w.t.flag}",
        "other": f"org/{w.t.b}/flag/{w.t.flag}",
        "catalog": f"flag/{w.t.flag}",
        "keys": f"key/{w.victims['own']}",
    }[target]
    return Req("GET", f"/v1/streams/{stream}")


def _org_param(w: World, target: str) -> dict[str, str]:
    return {} if target == "all" else {"org": w.org(target)}


async def list_events(w: World, target: str, _: bool) -> Req:
    return Req("GET", "/v1/events", params=_org_param(w, target))


async def list_keys(w: World, target: str, _: bool) -> Req:
    return Req("GET", "/v1/keys", params=_org_param(w, target))


async def create_a_key(w: World, target: str, _: bool) -> Req:
    role, org = ("auditor", None) if target == "system" else ("evaluator", w.org(target))
    return Req("POST", "/v1/keys", _body(name=f"matrix {w.next()}", role=role, org_id=org))


async def revoke_key(w: World, target: str, allowed: bool) -> Req:
    key_id = await w.fresh_key(target) if allowed else w.victims[target]
    return Req("POST", f"/v1/keys/{key_id}/revoke", _body())


async def set_key_expiry(w: World, target: str, allowed: bool) -> Req:
    key_id = await w.fresh_key(target) if allowed else w.victims[target]
    return Req("PUT", f"/v1/keys/{key_id}/expiry", _body(expires_at="2099-01-01T00:00:00Z"))


async def evaluate_one(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"/v1/orgs/{w.org(target)}/flags/{w.t.flag}", params={"platform": "meta", "user": w.t.user})


async def evaluate_all(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"/v1/orgs/{w.org(target)}/flags")


async def evaluate_one_posted(w: World, target: str, _: bool) -> Req:
    body = {"platform": "meta", "user": w.t.user, "context": {"email": "ana@acme.com"}}
    return Req("POST", f"/v1/orgs/{w.org(target)}/flags/{w.t.flag}/evaluate", body)


async def evaluate_all_posted(w: World, target: str, _: bool) -> Req:
    return Req("POST", f"/v1/orgs/{w.org(target)}/evaluate", {"context": {"plan": "enterprise"}})


async def sdk_bootstrap(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"/v1/orgs/{w.org(target)}/bootstrap")


async def platforms(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"/v1/orgs/{w.org(target)}/platforms", params={"user": w.t.user})


async def catalog(w: World, _: str, __: bool) -> Req:
    return Req("GET", "/v1/flags")


def _ofrep_context(w: World, target: str) -> dict[str, Any]:
    return {"context": {"org": w.org(target), "platform": "meta", "targetingKey": w.t.user}}


async def ofrep_one(w: World, target: str, _: bool) -> Req:
    return Req("POST", f"/ofrep/v1/evaluate/flags/{w.t.flag}", _ofrep_context(w, target))


async def ofrep_all(w: World, target: str, _: bool) -> Req:
    return Req("POST", "/ofrep/v1/evaluate/flags", _ofrep_context(w, target))


async def ofrep_changes(w: World, target: str, _: bool) -> Req:
    return Req("GET", "/ofrep/v1/changes", params={"org": w.org(target)})


async def whoami(w: World, _: str, __: bool) -> Req:
    return Req("GET", "/v1/whoami")


async def history(w: World, target: str, _: bool) -> Req:
    return Req("GET", "/v1/history", params=_org_param(w, target))


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def rollback_org(w: World, target: str, allowed: bool) -> Req:
    org = w.org(target)
    if not allowed:  # back to before the seed: one that got through would clear every override
        return Req("POST", f"/v1/orgs/{org}/rollback", _body(flag_key=w.t.flag, at="2020-01-01T00:00:00Z"))
    user = f"r{w.next()}"
    before = datetime.now(UTC)
    await w.setup("PUT", f"/v1/orgs/{org}/users/{user}/flags/{w.t.spare}", _body(enabled=True))
    return Req("POST", f"/v1/orgs/{org}/rollback", _body(flag_key=w.t.spare, user_id=user, at=_instant(before)))


async def rollback_system(w: World, _: str, allowed: bool) -> Req:
    path = f"/v1/flags/{w.t.flag}/system"
    if not allowed:
        return Req("POST", f"/v1/flags/{w.t.flag}/rollback", _body(version=1))
    await w.setup("PUT", path, _body(rollout_percentage=w.pct(path)))
    before = datetime.now(UTC)
    await w.setup("PUT", path, _body(rollout_percentage=w.pct(path)))
    return Req("POST", f"/v1/flags/{w.t.flag}/rollback", _body(at=_instant(before)))


async def time_travel_at(w: World, target: str, _: bool) -> Req:
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return Req("GET", "/v1/audit/at", params={"org": w.org(target), "at": at})


async def time_travel_diff(w: World, target: str, _: bool) -> Req:
    now = datetime.now(UTC)
    since, until = ((now - timedelta(minutes=5)).isoformat(), now.isoformat())
    return Req("GET", "/v1/audit/diff", params={"org": w.org(target), "from": since, "to": until})


def _soon(w: World) -> str:
    """A future instant no other request of the module uses."""
    return _instant(datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, seconds=w.next()))


def _scope_path(level: int) -> Callable[[World, str], str]:
    """-1: the system default of the seeded flag; 0–2: its org, platform or user override in the target org."""

    def path(w: World, target: str) -> str:
        return f"/v1/flags/{w.t.flag}/system" if level < 0 else w.t.override_paths(w.org(target))[level]

    return path


def schedule_step(level: int) -> Builder:
    async def build(w: World, target: str, _: bool) -> Req:
        return Req("PUT", _scope_path(level)(w, target) + "/schedule", _body(effective_at=_soon(w), enabled=True))

    return build


def cancel_step(level: int) -> Builder:
    async def build(w: World, target: str, _: bool) -> Req:
        path = _scope_path(level)(w, target) + "/schedule"
        at = _soon(w)  # a live step: a cancel that got through would write
        await w.setup("PUT", path, _body(effective_at=at, rollout_percentage=5))
        await _settled(w)
        return Req("DELETE", path, _body(effective_at=at))

    return build


async def _settled(w: World) -> None:
    """Setup done before a request: projected and its caches refilled, so a refusal's snapshot starts clean."""
    await w.evidence.settle()
    await w.prime()


async def _ops_flag(w: World) -> str:
    key = f"{w.t.spare}-ops{w.next()}"
    await w.setup("POST", "/v1/flags", _body(key=key, group="acl", kind="ops"))
    return key


async def engage_kill_switch(w: World, _: str, __: bool) -> Req:
    key = await _ops_flag(w)
    await _settled(w)
    return Req("POST", f"/v1/flags/{key}/kill-switch", _body())


async def acknowledge_foreign_record(w: World, _: str, __: bool) -> Req:
    """A place no other call names: each allowed call is a first acknowledgement (201), never a 409."""
    offset = secrets.randbelow(2**62)
    return Req("POST", "/v1/audit/foreign-records", _body(partition=0, offset=offset, sha256="ab" * 32))


async def release_kill_switch(w: World, _: str, __: bool) -> Req:
    key = await _ops_flag(w)
    await w.setup("POST", f"/v1/flags/{key}/kill-switch", _body())
    await _settled(w)
    return Req("DELETE", f"/v1/flags/{key}/kill-switch", _body())


def _rules_path(w: World, target: str) -> str:
    """The spare flag's rules at the system level or in the target org (the seeded flag's read models stay put)."""
    flag = w.t.spare
    return f"/v1/flags/{flag}/rules" if target == "system" else f"/v1/orgs/{w.org(target)}/flags/{flag}/rules"


def _rules(w: World) -> list[dict[str, Any]]:
    """A list no earlier request set (a fresh id), so a write of it always writes."""
    condition = {"attribute": "plan", "operator": "equals", "values": ["pro"]}
    return [{"id": f"r{w.next()}", "conditions": [condition], "variant": "on"}]


async def set_rules(w: World, target: str, _: bool) -> Req:
    return Req("PUT", _rules_path(w, target), _body(rules=_rules(w)))


async def clear_rules(w: World, target: str, _: bool) -> Req:
    path = _rules_path(w, target)
    await w.setup("PUT", path, _body(rules=_rules(w)))  # live rules: a clear that got through would write
    await _settled(w)
    return Req("DELETE", path, _body())


async def get_rules(w: World, target: str, _: bool) -> Req:
    return Req("GET", _rules_path(w, target))


async def stale_report(w: World, _: str, __: bool) -> Req:
    return Req("GET", "/v1/reports/stale-flags", params={"days": "30"})


async def override_counts(w: World, _: str, __: bool) -> Req:
    return Req("GET", "/v1/reports/override-counts")


async def org_usage(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"/v1/orgs/{w.org(target)}/usage", params={"minutes": "5"})


async def all_usage(w: World, _: str, __: bool) -> Req:
    return Req("GET", "/v1/usage", params={"minutes": "5"})


async def schedules(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"/v1/orgs/{w.org(target)}/schedules", params={"flag": w.t.flag})


def _subscriptions_path(w: World, target: str) -> str:
    return "/v1/subscriptions" if target == "system" else f"/v1/orgs/{w.org(target)}/subscriptions"


def _subscription_body(w: World) -> dict[str, Any]:
    return _body(name=f"matrix {w.next()}", destination={"kind": "webhook", "url": "https://hooks.example/matrix"})


async def _new_subscription(w: World, target: str, *, paused: bool = False) -> str:
    path = _subscriptions_path(w, target)
    made = await w.setup("POST", path, _subscription_body(w))
    if paused:
        await w.setup("POST", f"{path}/{made['id']}/pause", _body())
    return str(made["id"])


async def _subscription(w: World, target: str, allowed: bool, *, paused: bool = False) -> str:
    """A fresh subscription for an allowed change; for a refused one, a live one it would have changed."""
    if allowed:
        return await _new_subscription(w, target, paused=paused)
    if (target, paused) not in w._subscriptions:
        w._subscriptions[target, paused] = await _new_subscription(w, target, paused=paused)
    return w._subscriptions[target, paused]


async def create_subscription(w: World, target: str, _: bool) -> Req:
    return Req("POST", _subscriptions_path(w, target), _subscription_body(w))


async def list_subscriptions(w: World, target: str, _: bool) -> Req:
    return Req("GET", _subscriptions_path(w, target))


async def get_subscription(w: World, target: str, _: bool) -> Req:
    return Req("GET", f"{_subscriptions_path(w, target)}/{await _subscription(w, target, False)}")


async def change_subscription(w: World, target: str, allowed: bool) -> Req:
    sid = await _subscription(w, target, allowed)
    return Req("PATCH", f"{_subscriptions_path(w, target)}/{sid}", _body(flag_pattern=f"p{w.next()}.*"))


def act_on_subscription(action: str) -> Builder:
    async def build(w: World, target: str, allowed: bool) -> Req:
        sid = await _subscription(w, target, allowed, paused=action == "resume")
        path = f"{_subscriptions_path(w, target)}/{sid}"
        return Req("DELETE", path, _body()) if action == "delete" else Req("POST", f"{path}/{action}", _body())

    return build


def _segments_path(w: World, target: str) -> str:
    return "/v1/segments" if target == "system" else f"/v1/orgs/{w.org(target)}/segments"


def _segment_body(w: World, key: str) -> dict[str, Any]:
    plan = {"attribute": "plan", "operator": "equals", "values": ["x"]}
    return _body(segment_key=key, name="Matrix", conditions=[plan])


async def _segment(w: World, target: str, allowed: bool) -> str:
    """A fresh segment for an allowed change; for a refused one, a live one it would have changed."""
    if allowed or target not in w._segments:
        key = f"matrix-{w.next()}"
        await w.setup("POST", _segments_path(w, target), _segment_body(w, key))
        if allowed:
            return key
        w._segments[target] = key
    return w._segments[target]


async def define_segment(w: World, target: str, allowed: bool) -> Req:
    return Req("POST", _segments_path(w, target), _segment_body(w, f"matrix-new{w.next()}"))


async def list_segments(w: World, target: str, _: bool) -> Req:
    return Req("GET", _segments_path(w, target))


def read_segment(rest: str) -> Builder:
    async def build(w: World, target: str, _: bool) -> Req:
        return Req("GET", f"{_segments_path(w, target)}/{await _segment(w, target, False)}{rest}")

    return build


async def change_segment(w: World, target: str, allowed: bool) -> Req:
    key = await _segment(w, target, allowed)
    return Req("PATCH", f"{_segments_path(w, target)}/{key}", _body(name=f"Matrix {w.next()}"))


async def archive_segment(w: World, target: str, allowed: bool) -> Req:
    key = await _segment(w, target, allowed)
    return Req("POST", f"{_segments_path(w, target)}/{key}/archive", _body())


SEGMENT_ROUTES: dict[tuple[str, str], Builder] = {
    ("POST", ""): define_segment,
    ("GET", ""): list_segments,
    ("GET", "/{segment_key}"): read_segment(""),
    ("GET", "/{segment_key}/flags"): read_segment("/flags"),
    ("PATCH", "/{segment_key}"): change_segment,
    ("POST", "/{segment_key}/archive"): archive_segment,
}


# --- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    build: Builder
    targets: tuple[str, ...]
    expect: dict[str, tuple[int, ...]]  # role -> one status per target, in order


SYSTEM_WRITE = {"system-admin": (201,), "org-admin of A": (403,), "auditor of A": (403,),
                "system auditor": (403,), "evaluator of A": (403,)}
OVERRIDE_WRITE = {"system-admin": (201, 201), "org-admin of A": (201, 403), "auditor of A": (403, 403),
                  "system auditor": (403, 403), "evaluator of A": (403, 403)}
EVALUATION = {"system-admin": (200, 200), "org-admin of A": (200, 403), "auditor of A": (403, 403),
              "system auditor": (403, 403), "evaluator of A": (200, 403)}
# A role that manages no keys gets 403 before any lookup; an org admin asking for a key of
# another org (or a system key) gets 404, like a key that does not exist.
KEY_CHANGE = {"system-admin": (200, 200, 200), "org-admin of A": (200, 404, 404), "auditor of A": (403, 403, 403),
              "system auditor": (403, 403, 403), "evaluator of A": (403, 403, 403)}
AUDIT_READ = {"system-admin": (200, 200), "org-admin of A": (200, 403), "auditor of A": (200, 403),
              "system auditor": (200, 200), "evaluator of A": (403, 403)}
SYSTEM_READ = {"system-admin": (200,), "org-admin of A": (403,), "auditor of A": (403,),
               "system auditor": (200,), "evaluator of A": (403,)}
OWN_OTHER = ("own", "other")
KEYS = ("own", "other", "system")

SUBSCRIPTION_ROUTES: dict[tuple[str, str], Builder] = {
    ("POST", ""): create_subscription,
    ("GET", ""): list_subscriptions,
    ("GET", "/{subscription_id}"): get_subscription,
    ("PATCH", "/{subscription_id}"): change_subscription,
    ("DELETE", "/{subscription_id}"): act_on_subscription("delete"),
    ("POST", "/{subscription_id}/pause"): act_on_subscription("pause"),
    ("POST", "/{subscription_id}/resume"): act_on_subscription("resume"),
}


def _subscription_rows() -> dict[tuple[str, str, str], Row]:
    """Notification subscriptions: managed like the flags of their scope, read like its audit trail."""
    rows = {}
    for (method, rest), build in SUBSCRIPTION_ROUTES.items():
        read = method == "GET"
        rows["command", method, f"/v1/subscriptions{rest}"] = Row(
            build, ("system",), SYSTEM_READ if read else SYSTEM_WRITE
        )
        rows["command", method, f"/v1/orgs/{{org}}/subscriptions{rest}"] = Row(
            build, OWN_OTHER, AUDIT_READ if read else OVERRIDE_WRITE
        )
    return rows


def _segment_rows() -> dict[tuple[str, str, str], Row]:
    """Segments: managed like the flags (system-wide) or the overrides (an org's) of their scope; the system's
    read by every key, as the catalogue; an org's like its audit trail."""
    rows = {}
    for (method, rest), build in SEGMENT_ROUTES.items():
        read = method == "GET"
        rows["command", method, f"/v1/segments{rest}"] = Row(
            build, ("system",), {role: (200,) for role in ROLES} if read else SYSTEM_WRITE
        )
        rows["command", method, f"/v1/orgs/{{org}}/segments{rest}"] = Row(
            build, OWN_OTHER, AUDIT_READ if read else OVERRIDE_WRITE
        )
    return rows


MATRIX: dict[tuple[str, str, str], Row] = {
    **_subscription_rows(),
    **_segment_rows(),
    # flag semantics: kill switches (system admins), schedules at every scope, the stale report
    ("command", "POST", "/v1/flags/{flag_key}/kill-switch"): Row(engage_kill_switch, ("system",), SYSTEM_WRITE),
    ("command", "DELETE", "/v1/flags/{flag_key}/kill-switch"): Row(release_kill_switch, ("system",), SYSTEM_WRITE),
    ("command", "POST", "/v1/audit/foreign-records"): Row(acknowledge_foreign_record, ("system",), SYSTEM_WRITE),
    ("command", "PUT", "/v1/flags/{flag_key}/system/schedule"): Row(schedule_step(-1), ("system",), SYSTEM_WRITE),
    ("command", "DELETE", "/v1/flags/{flag_key}/system/schedule"): Row(cancel_step(-1), ("system",), SYSTEM_WRITE),
    ("command", "PUT", "/v1/orgs/{org_id}/flags/{flag_key}/schedule"): Row(
        schedule_step(0), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "DELETE", "/v1/orgs/{org_id}/flags/{flag_key}/schedule"): Row(
        cancel_step(0), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "PUT", "/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}/schedule"): Row(
        schedule_step(1), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "DELETE", "/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}/schedule"): Row(
        cancel_step(1), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "PUT", "/v1/orgs/{org_id}/users/{user_id}/flags/{flag_key}/schedule"): Row(
        schedule_step(2), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "DELETE", "/v1/orgs/{org_id}/users/{user_id}/flags/{flag_key}/schedule"): Row(
        cancel_step(2), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "GET", "/v1/reports/stale-flags"): Row(stale_report, ("all",), SYSTEM_READ),
    # targeting rules: written like the level's setting; the system's read as the catalogue, an org's as its audit
    ("command", "PUT", "/v1/flags/{flag_key}/rules"): Row(set_rules, ("system",), SYSTEM_WRITE),
    ("command", "DELETE", "/v1/flags/{flag_key}/rules"): Row(clear_rules, ("system",), SYSTEM_WRITE),
    ("command", "GET", "/v1/flags/{flag_key}/rules"): Row(get_rules, ("system",), {role: (200,) for role in ROLES}),
    ("command", "PUT", "/v1/orgs/{org_id}/flags/{flag_key}/rules"): Row(set_rules, OWN_OTHER, OVERRIDE_WRITE),
    ("command", "DELETE", "/v1/orgs/{org_id}/flags/{flag_key}/rules"): Row(clear_rules, OWN_OTHER, OVERRIDE_WRITE),
    ("command", "GET", "/v1/orgs/{org_id}/flags/{flag_key}/rules"): Row(get_rules, OWN_OTHER, AUDIT_READ),
    ("query", "GET", "/v1/orgs/{org_id}/schedules"): Row(schedules, OWN_OTHER, AUDIT_READ),
    # console gaps: how many orgs override each flag (a count across every org: system-wide readers)
    ("query", "GET", "/v1/reports/override-counts"): Row(override_counts, ("all",), SYSTEM_READ),
    # console gaps: evaluations per flag per minute, one org's (its audit readers) or every org's
    ("query", "GET", "/v1/orgs/{org_id}/usage"): Row(org_usage, OWN_OTHER, AUDIT_READ),
    ("query", "GET", "/v1/usage"): Row(all_usage, ("all",), SYSTEM_READ),
    # command API: changes to the catalogue and system defaults
    ("command", "POST", "/v1/flags"): Row(define_flag, ("system",), SYSTEM_WRITE),
    ("command", "PATCH", "/v1/flags/{flag_key}"): Row(update_flag, ("system",), SYSTEM_WRITE),
    ("command", "POST", "/v1/flags/{flag_key}/archive"): Row(archive_flag, ("system",), SYSTEM_WRITE),
    ("command", "PUT", "/v1/flags/{flag_key}/system"): Row(set_system, ("system",), SYSTEM_WRITE),
    # command API: one org's overrides
    ("command", "PUT", "/v1/orgs/{org_id}/flags/{flag_key}"): Row(set_override(0), OWN_OTHER, OVERRIDE_WRITE),
    ("command", "DELETE", "/v1/orgs/{org_id}/flags/{flag_key}"): Row(clear_override(0), OWN_OTHER, OVERRIDE_WRITE),
    ("command", "PUT", "/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}"): Row(
        set_override(1), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "DELETE", "/v1/orgs/{org_id}/platforms/{platform}/flags/{flag_key}"): Row(
        clear_override(1), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "PUT", "/v1/orgs/{org_id}/users/{user_id}/flags/{flag_key}"): Row(
        set_override(2), OWN_OTHER, OVERRIDE_WRITE
    ),
    ("command", "DELETE", "/v1/orgs/{org_id}/users/{user_id}/flags/{flag_key}"): Row(
        clear_override(2), OWN_OTHER, OVERRIDE_WRITE
    ),
    # command API: the log
    ("command", "GET", "/v1/streams/{stream}"): Row(
        get_stream,
        ("own", "other", "catalog", "keys"),
        {"system-admin": (200, 200, 200, 200), "org-admin of A": (200, 403, 200, 403),
         "auditor of A": (200, 403, 200, 403), "system auditor": (200, 200, 200, 200),
         "evaluator of A": (403, 403, 200, 403)},
    ),
    ("command", "GET", "/v1/events"): Row(
        list_events,
        ("own", "other", "all"),
        {"system-admin": (200, 200, 200), "org-admin of A": (200, 403, 200), "auditor of A": (200, 403, 200),
         "system auditor": (200, 200, 200), "evaluator of A": (403, 403, 403)},
    ),
    # command API: the audit trail (history reads; rollback writes like the changes it makes)
    ("command", "GET", "/v1/history"): Row(
        history,
        ("own", "other", "all"),
        {"system-admin": (200, 200, 200), "org-admin of A": (200, 403, 200), "auditor of A": (200, 403, 200),
         "system auditor": (200, 200, 200), "evaluator of A": (403, 403, 403)},
    ),
    ("command", "POST", "/v1/orgs/{org_id}/rollback"): Row(rollback_org, OWN_OTHER, OVERRIDE_WRITE),
    ("command", "POST", "/v1/flags/{flag_key}/rollback"): Row(rollback_system, ("system",), SYSTEM_WRITE),
    # command API: time travel (read-only, like the history)
    ("command", "GET", "/v1/audit/at"): Row(time_travel_at, OWN_OTHER, AUDIT_READ),
    ("command", "GET", "/v1/audit/diff"): Row(time_travel_diff, OWN_OTHER, AUDIT_READ),
    # command API: keys
    ("command", "POST", "/v1/keys"): Row(
        create_a_key,
        KEYS,
        {"system-admin": (201, 201, 201), "org-admin of A": (201, 403, 403), "auditor of A": (403, 403, 403),
         "system auditor": (403, 403, 403), "evaluator of A": (403, 403, 403)},
    ),
    ("command", "GET", "/v1/keys"): Row(
        list_keys,
        ("own", "other", "all"),
        {"system-admin": (200, 200, 200), "org-admin of A": (200, 403, 200), "auditor of A": (403, 403, 403),
         "system auditor": (403, 403, 403), "evaluator of A": (403, 403, 403)},
    ),
    ("command", "POST", "/v1/keys/{key_id}/revoke"): Row(revoke_key, KEYS, KEY_CHANGE),
    ("command", "PUT", "/v1/keys/{key_id}/expiry"): Row(set_key_expiry, KEYS, KEY_CHANGE),
    # command API: a key asking about itself (the admin console's sign-in)
    ("command", "GET", "/v1/whoami"): Row(whoami, ("own",), {role: (200,) for role in ROLES}),
    # query API
    ("query", "GET", "/v1/orgs/{org_id}/flags/{flag_key}"): Row(evaluate_one, OWN_OTHER, EVALUATION),
    ("query", "GET", "/v1/orgs/{org_id}/flags"): Row(evaluate_all, OWN_OTHER, EVALUATION),
    ("query", "POST", "/v1/orgs/{org_id}/flags/{flag_key}/evaluate"): Row(evaluate_one_posted, OWN_OTHER, EVALUATION),
    ("query", "POST", "/v1/orgs/{org_id}/evaluate"): Row(evaluate_all_posted, OWN_OTHER, EVALUATION),
    ("query", "GET", "/v1/orgs/{org_id}/platforms"): Row(platforms, OWN_OTHER, EVALUATION),
    ("query", "GET", "/v1/orgs/{org_id}/bootstrap"): Row(sdk_bootstrap, OWN_OTHER, EVALUATION),
    ("query", "GET", "/v1/flags"): Row(catalog, ("catalog",), {role: (200,) for role in ROLES}),
    # query API: OFREP (the org in the evaluation context; an org-scoped key may name only its own)
    ("query", "POST", "/ofrep/v1/evaluate/flags/{key}"): Row(ofrep_one, OWN_OTHER, EVALUATION),
    ("query", "POST", "/ofrep/v1/evaluate/flags"): Row(ofrep_all, OWN_OTHER, EVALUATION),
    ("query", "GET", "/ofrep/v1/changes"): Row(ofrep_changes, OWN_OTHER, EVALUATION),  # the org in `?org=`
}

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def app_routes() -> set[tuple[str, str, str]]:
    """(service, method, path template) of every operation both apps' OpenAPI documents declare.

    Read from the documents rather than `app.routes`: FastAPI nests included routers
    lazily, and no route of ours is hidden from its document.
    """
    found = set()
    for service, app in (("command", command_app(Settings())), ("query", query_app(Settings()))):
        for path, operations in app.openapi()["paths"].items():
            found |= {(service, method.upper(), path) for method in operations}
    return found


def cells() -> Iterator[Any]:
    for route in sorted(app_routes() - OPEN):
        row = MATRIX.get(route)
        label = f"{route[0]} {route[1]} {route[2]}"
        if row is None:
            yield pytest.param(route, "-", "-", id=f"{label} | NO ROW")
            continue
        for target, caller in itertools.product(row.targets, CALLERS):
            yield pytest.param(route, target, caller, id=f"{label} | {target} | {caller}")


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix_stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("matrix"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
async def world(matrix_stack: Stack) -> AsyncIterator[World]:
    stack = matrix_stack
    tenants = Tenants.new()
    evidence = await Evidence.open(stack.settings)
    async with httpx.AsyncClient(timeout=15, headers=admin_headers(stack.settings)) as bootstrap:
        await seed_tenants(bootstrap, stack.command_url, tenants)
        url = stack.command_url
        expiring = datetime.now(UTC) + timedelta(seconds=2)
        made = {
            "system-admin": await create_key(bootstrap, url, "system-admin", None),
            "org-admin of A": await create_key(bootstrap, url, "org-admin", tenants.a),
            "auditor of A": await create_key(bootstrap, url, "auditor", tenants.a),
            "system auditor": await create_key(bootstrap, url, "auditor", None),
            "evaluator of A": await create_key(bootstrap, url, "evaluator", tenants.a),
            "revoked admin key": await create_key(bootstrap, url, "system-admin", None),
            "expired admin key": await create_key(bootstrap, url, "system-admin", None,
                                                  expires_at=expiring.isoformat()),
        }
        revoked = made["revoked admin key"]["id"]
        await expect(await bootstrap.post(f"{url}/v1/keys/{revoked}/revoke", json={"reason": REASON}), 200)
        victims = {
            "own": await create_key(bootstrap, url, "evaluator", tenants.a),
            "other": await create_key(bootstrap, url, "evaluator", tenants.b),
            "system": await create_key(bootstrap, url, "auditor", None),
        }
    async with httpx.AsyncClient(timeout=15, headers=bearer(made["system-admin"]["key"])) as admin:
        w = World(stack, tenants, admin, evidence)
        w.headers = {name: bearer(key["key"]) for name, key in made.items()}
        w.headers["unknown key"] = bearer("fsk_0123456789abcdef_" + "x" * 43)
        w.headers["no key"] = {}
        w.victims = {target: key["id"] for target, key in victims.items()}
        # the expiry passes, the revocation and expiry outlive every replica's key cache (0.5 s)
        time.sleep(max(0.0, (expiring - datetime.now(UTC)).total_seconds()) + 0.6)
        await evidence.settle()
        await w.prime()
        yield w
    await evidence.close()


# --- the tests ----------------------------------------------------------------------------------------------


def test_every_route_has_a_row_and_every_row_a_route() -> None:
    routes = app_routes()
    assert routes >= OPEN, "an open route is gone: update OPEN"
    assert sorted(routes - OPEN - set(MATRIX)) == [], "routes with no row in MATRIX"
    assert sorted(set(MATRIX) - routes) == [], "rows of MATRIX for routes that no longer exist"
    for route, row in MATRIX.items():
        assert set(row.expect) == set(ROLES), route
        assert all(len(statuses) == len(row.targets) for statuses in row.expect.values()), route


async def test_the_open_routes_need_no_key(world: World) -> None:
    async with from_address(fresh_source()) as anonymous:
        for service, method, path in sorted(OPEN):
            response = await anonymous.request(method, world.url(service, path))
            assert response.status_code == 200, (service, path, response.text)
            assert response.headers["x-content-type-options"] == "nosniff"


def _differences(before: Snapshot, after: Snapshot) -> list[str]:
    problems = []
    if (after.events, after.last_sequence) != (before.events, before.last_sequence):
        problems.append(f"event store: {before.events} rows → {after.events}")
    if after.keys != before.keys:
        problems.append("api_keys changed")
    if after.cached != before.cached:
        changed = sorted(set(after.cached.items()) ^ set(before.cached.items()))
        problems.append(f"redis changed: {[name for name, _ in changed]}")
    return problems


async def _send(world: World, service: str, caller: str, request: Req) -> httpx.Response:
    url = world.url(service, request.path)
    if caller in UNAUTHENTICATED:  # each bad key from an address of its own: see fresh_source
        async with from_address(fresh_source(), headers=world.headers[caller]) as client:
            return await _answer(client, request.method, url, json=request.json, params=request.params)
    return await _answer(
        world.admin, request.method, url, json=request.json, params=request.params, headers=world.headers[caller]
    )


async def _answer(client: httpx.AsyncClient, method: str, url: str, **options: Any) -> httpx.Response:
    """The response, read whole; an event stream (OFREP's changes) is answered by its status and headers alone."""
    async with client.stream(method, url, **options) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
        return response


def _haunted(world: World, request: Req) -> Req:
    """The same request with org B (and its key id) swapped for ones that have never existed."""
    swaps = {world.t.b: "ghost-org", world.victims["other"]: "0123456789abcdef"}

    def haunt(text: str) -> str:
        for real, ghost in swaps.items():
            text = text.replace(real, ghost)
        return text

    body = None
    if request.json is not None:
        body = {name: haunt(value) if isinstance(value, str) else value for name, value in request.json.items()}
    params = {name: haunt(value) for name, value in (request.params or {}).items()}
    return Req(request.method, haunt(request.path), body, params)


@pytest.mark.parametrize(("route", "target", "caller"), list(cells()))
async def test_matrix(world: World, route: tuple[str, str, str], target: str, caller: str) -> None:
    row = MATRIX.get(route)
    assert row is not None, f"{route} has no row in MATRIX: say who may call it"
    service, method, template = route
    expected = row.expect[caller][row.targets.index(target)] if caller in ROLES else 401
    allowed = expected < 300
    request = await row.build(world, target, allowed)
    assert request.method == method
    write = method in WRITE_METHODS
    if write and not allowed:
        before = await world.evidence.snapshot()
    response = await _send(world, service, caller, request)
    assert response.status_code == expected, f"{caller} {method} {request.path} {target}: {response.text}"
    if not allowed:
        body = response.json()
        assert body["error"] == {401: "unauthenticated", 403: "forbidden", 404: "unknown_key"}[expected], body
        if target == "other":  # the refusal must not tell whether B (or its flag, or its key) exists
            ghost = await _send(world, service, caller, _haunted(world, request))
            assert (ghost.status_code, ghost.json()) == (response.status_code, body), "B answered unlike a ghost"
    if write and not allowed:
        after = await world.evidence.snapshot()
        assert _differences(before, after) == [], f"a refused {method} {template} wrote something"
        page = await world.admin.get(world.url("command", "/v1/events"), params={"after": str(before.last_sequence)})
        assert (await expect(page, 200))["events"] == []
    if write and allowed:
        await world.evidence.settle()
        await world.prime()
