"""The admin console over HTTP against the real stack: sign in with real keys, change, race, refuse.

The console runs as its own process (`python -m services.console`) in front of
the real command, projector and query services; the checks read the outcome
back through the APIs and Redis, never through the console alone.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import unescape

import httpx
import pytest
from redis import Redis

from services.infra.settings import Settings
from tests.support.console import FLAG, ConsoleStack, start_console

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def cs(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    yield from start_console(make_settings, tmp_path_factory.mktemp("console"))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def form_fields(html: str, action: str) -> dict[str, str]:
    """The hidden and filled inputs of the form posting to `action`."""
    section = html.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', section)}


@contextmanager
def signed_in(cs: ConsoleStack, role: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cs.url, timeout=10, follow_redirects=True) as http:
        page = http.get("/signin")
        answer = http.post("/signin", data={"key": cs.keys[role], "csrf": csrf_of(page.text)})
        assert answer.status_code == 200, answer.text
        yield http


def wait_for(probe: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def change(http: httpx.Client, org: str, *, state: str, reason: str, level: str = "org", **extra: str
           ) -> httpx.Response:
    """Load the change form, preview, confirm: what a person does, at the version the form was loaded at."""
    query = {"flag": FLAG, "level": level, "org": org, **extra}
    page = http.get("/change", params=query)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text, "/change/preview") | {"state": state, "reason": reason, "rollout": ""}
    preview = http.post("/change/preview", data=fields)
    assert preview.status_code == 200, preview.text
    return http.post("/change/apply", data=form_fields(preview.text, "/change/apply"))


def test_sign_in_change_with_a_reason_and_see_it_everywhere_within_a_second(cs: ConsoleStack) -> None:
    with signed_in(cs, "org-admin") as http:
        assert http.get("/").url.path == f"/orgs/{cs.org}"  # an org admin lands on its own org
        done = change(http, cs.org, state="on", reason="pilot for Acme", level="platform", platform="tiktok")
        assert done.status_code == 200 and "Recorded as version 1" in done.text
        started = time.monotonic()
        wait_for(lambda: cs.evaluate(cs.org, "tiktok").get("level") == "platform", "the projection")
        explained = http.get("/explain", params={"org": cs.org, "platform": "tiktok", "flag": FLAG})
        assert 'id="winner">platform<' in explained.text and "pilot for Acme" in explained.text
        audit = http.get("/audit", params={"flag": FLAG})
        assert "pilot for Acme" in audit.text and "not set → <strong>on</strong>" in audit.text
        assert time.monotonic() - started < 1.0
    (event,) = [e for e in cs.events(cs.org) if e["reason"] == "pilot for Acme"]
    assert event["actor"]["name"] == "org-admin of A"  # the actor is the signed-in user's key


def test_losing_a_race_shows_the_other_change_and_the_redo_wins(cs: ConsoleStack) -> None:
    with signed_in(cs, "org-admin") as http:
        page = http.get("/change", params={"flag": FLAG, "level": "org", "org": cs.org})
        mine = form_fields(page.text, "/change/preview") | {"state": "on", "reason": "mine", "rollout": "30"}
        preview = http.post("/change/preview", data=mine)
        with cs.admin as other:  # someone else gets there first
            answer = other.put(f"{cs.stack.command_url}/v1/orgs/{cs.org}/flags/{FLAG}",
                               json={"enabled": False, "reason": "incident 42"})
            assert answer.status_code == 201
        lost = http.post("/change/apply", data=form_fields(preview.text, "/change/apply"))
        assert lost.status_code == 409
        assert "incident 42" in lost.text and "test admin" in lost.text
        assert sum(e["reason"] == "mine" for e in cs.events(cs.org)) == 0  # nothing of mine was written
        again = http.post("/change/preview", data=form_fields(lost.text, "/change/preview"))
        assert 'class="before">off<' in again.text and 'class="after">on, 30% rollout<' in again.text
        won = http.post("/change/apply", data=form_fields(again.text, "/change/apply"))
        assert won.status_code == 200
    wait_for(lambda: (cs.evaluate(cs.org).get("event") or {}).get("reason") == "mine", "the redo, projected")
    assert cs.evaluate(cs.org)["rollout"]["percentage"] == 30


def test_an_org_admin_cannot_reach_another_org_by_url(cs: ConsoleStack) -> None:
    before = len(cs.events())
    with signed_in(cs, "org-admin") as http:
        for path, params in [(f"/orgs/{cs.other}", {}), ("/explain", {"org": cs.other, "flag": FLAG}),
                             ("/audit", {"org": cs.other}), ("/audit/export", {"org": cs.other}),
                             ("/change", {"flag": FLAG, "level": "org", "org": cs.other})]:
            answer = http.get(path, params=params)
            assert answer.status_code == 403, path
            assert cs.other not in answer.text
        form = {"csrf": csrf_of(http.get("/flags").text), "what": "setting", "flag": FLAG, "level": "org",
                "org": cs.other, "state": "off", "reason": "sneaky", "expected_version": "1"}
        assert http.post("/change/apply", data=form).status_code == 403
        assert cs.other not in http.get("/audit").text  # its own log shows only its own org
    assert len(cs.events()) == before


@pytest.mark.parametrize("role", ["auditor", "evaluator"])
def test_roles_that_change_nothing_cannot_change_anything(cs: ConsoleStack, role: str) -> None:
    before = len(cs.events())
    with signed_in(cs, role) as http:
        token = csrf_of(http.get("/flags").text)
        for level, org in (("org", cs.org), ("system", "")):
            form = {"csrf": token, "what": "setting", "flag": FLAG, "level": level, "org": org, "state": "on",
                    "reason": "not mine to make", "expected_version": "0"}
            for step in ("/change/preview", "/change/apply"):
                assert http.post(step, data=form).status_code == 403
        flag_page = http.get(f"/flags/{FLAG}")
        assert flag_page.status_code == 200 and "Review change" not in flag_page.text
    assert len(cs.events()) == before


def test_posts_without_the_csrf_token_or_the_cookie_are_refused(cs: ConsoleStack) -> None:
    before = len(cs.events())
    form = {"what": "setting", "flag": FLAG, "level": "org", "org": cs.org, "state": "off",
            "reason": "forged", "expected_version": "0"}
    with signed_in(cs, "admin") as http:
        assert http.post("/change/apply", data=form).status_code == 403
        assert http.post("/change/apply", data=form | {"csrf": "guess"}).status_code == 403
        token = csrf_of(http.get("/flags").text)
        foreign = http.post("/change/apply", data=form | {"csrf": token}, headers={"Origin": "http://evil.test"})
        assert foreign.status_code == 403
    with httpx.Client(base_url=cs.url, timeout=10) as stranger:
        assert stranger.post("/change/apply", data=form | {"csrf": token}).status_code == 401
    assert len(cs.events()) == before


def test_the_key_lives_only_in_redis_under_a_digest_and_sign_out_removes_it(cs: ConsoleStack) -> None:
    redis = Redis.from_url(cs.stack.settings.redis_url)
    prefix = f"{cs.stack.settings.redis_prefix}:console:session:"
    with signed_in(cs, "auditor") as http:
        cookie = http.cookies["fs_session"]
        stored = [k.decode() for k in redis.scan_iter(match=prefix + "*")]
        assert stored and all(cookie not in k for k in stored)
        ttl = max(redis.ttl(k) for k in stored)
        assert 0 < ttl <= cs.stack.settings.console_idle_seconds
        page = http.get("/status")
        assert cs.keys["auditor"] not in page.text
        http.post("/signout", data={"csrf": csrf_of(page.text)})
        assert http.get("/flags").url.path == "/signin"
        assert len([k for k in redis.scan_iter(match=prefix + "*")]) == len(stored) - 1
    redis.close()


def test_new_audit_entries_arrive_live_over_server_sent_events(cs: ConsoleStack) -> None:
    with signed_in(cs, "auditor") as http, http.stream("GET", "/audit/live", timeout=15) as live:
        lines = live.iter_lines()
        assert next(lines) == ": connected"
        time.sleep(0.3)
        with cs.admin as admin:
            admin.put(f"{cs.stack.command_url}/v1/orgs/{cs.org}/users/u-7/flags/{FLAG}",
                      json={"enabled": True, "reason": "live entry"})
            admin.put(f"{cs.stack.command_url}/v1/orgs/{cs.other}/users/u-7/flags/{FLAG}",
                      json={"enabled": True, "reason": "someone else's org"})
        started = time.monotonic()
        seen = ""
        for line in lines:
            seen += line + "\n"
            if "live entry" in seen:
                break
        assert time.monotonic() - started < 2.0
        assert "event: entry" in seen and "u-7" in seen
        assert "someone else's org" not in seen


def test_status_shows_lag_and_charts(cs: ConsoleStack) -> None:
    with signed_in(cs, "admin") as http:
        page = http.get("/status")
        assert page.status_code == 200
        assert re.search(r'id="outbox-lag">\d+<', page.text)
        assert "<svg" in page.text and "Recent changes" in page.text
        wait_for(lambda: re.search(r'id="projector-lag">\d+<', http.get("/status").text) is not None,
                 "the projector lag", timeout=15)


def test_roll_back_a_change_from_the_audit_log(cs: ConsoleStack) -> None:
    with signed_in(cs, "org-admin") as http:
        for state, reason in (("on", "turn it on"), ("off", "a mistake")):
            assert change(http, cs.org, state=state, reason=reason, level="user", user="rb-user").status_code == 200
        audit = http.get("/audit", params={"flag": FLAG, "actor": "org-admin of A"})
        row = audit.text.split("a mistake", 1)[0].rsplit("<tr", 1)[1] + audit.text.split("a mistake", 1)[1]
        link = re.search(r'href="(/rollback\?[^"]+)"', row).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        preview = http.get(link)
        assert re.search(r'class="before">off<.*class="after">on<', preview.text, re.S)
        done = http.post("/rollback/apply", data=form_fields(preview.text, "/rollback/apply") | {"reason": "undo it"})
        assert done.status_code == 200 and "version 3" in done.text
    (event,) = [e for e in cs.events(cs.org) if "undo it" in e["reason"]]
    assert event["new"]["enabled"] is True and event["actor"]["name"] == "org-admin of A"
    assert event["reason"].startswith("rollback to")


def test_diff_and_csv_export(cs: ConsoleStack) -> None:
    with signed_in(cs, "auditor") as http:
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
        with cs.admin as admin:
            admin.put(f"{cs.stack.command_url}/v1/orgs/{cs.org}/flags/ops.kill.sync",
                      json={"enabled": True, "reason": "diff me"})
        time.sleep(1.1)
        end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        diff = http.get("/audit/diff", params={"from": start, "to": end})
        assert diff.status_code == 200 and "ops.kill.sync" in diff.text and "diff me" in diff.text
        csv = http.get("/audit/export", params={"format": "csv", "flag": "ops.kill.sync"})
        assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("sequence,")
        # the export is the history route's: a row is in it once history's visibility horizon has passed it
        wait_for(lambda: "diff me" in http.get("/audit/export", params={"format": "csv", "flag": "ops.kill.sync"}
                                                ).text, "the change in the CSV export", timeout=30)
        assert http.get("/audit/export", params={"format": "xls"}).status_code == 422


def test_kill_switch_schedule_and_the_status_page(cs: ConsoleStack) -> None:
    with signed_in(cs, "admin") as http:
        wait_for(lambda: http.get("/flags/ops.kill.sync").status_code == 200, "the flag's projection")
        page = http.get("/flags/ops.kill.sync")
        kill = form_fields(page.text.split("<h2>Kill switch</h2>", 1)[1], "/change/preview")
        preview = http.post("/change/preview", data=kill | {"reason": "incident 7"})
        assert 'class="after">engaged: off everywhere<' in preview.text
        done = http.post("/change/apply", data=form_fields(preview.text, "/change/apply"))
        assert done.status_code == 200, done.text
        wait_for(lambda: "kill switch engaged" in http.get("/flags/ops.kill.sync").text, "the kill switch")
        assert "killed" in http.get("/flags", params={"kind": "ops"}).text

        page = http.get(f"/flags/{FLAG}")
        step = form_fields(page.text.split("<h2>Schedule the system default</h2>", 1)[1], "/change/preview")
        step |= {"effective_at": "2031-05-01T09:00", "state": "on", "rollout": "", "reason": "launch day"}
        preview = http.post("/change/preview", data=step)
        assert "from 2031-05-01T09:00:00Z" in preview.text and 'class="after">on<' in preview.text
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200
        wait_for(lambda: "2031-05-01T09:00:00Z" in http.get("/status").text, "the schedule on the status page")
        status = http.get("/status").text
        assert "Scheduled changes coming up" in status and "Stale flags" in status

    with signed_in(cs, "org-admin") as http:  # an org admin schedules in its own org
        page = http.get("/change", params={"flag": FLAG, "level": "platform", "org": cs.org, "platform": "google"})
        step = form_fields(page.text.split("Or schedule a change", 1)[1], "/change/preview")
        step |= {"effective_at": "2031-06-01T09:00", "state": "off", "rollout": "", "reason": "google sunset"}
        preview = http.post("/change/preview", data=step)
        assert f"org {cs.org}, platform google from 2031-06-01T09:00:00Z" in preview.text
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200
        wait_for(lambda: "google sunset" in http.get("/audit").text, "the scheduled step in the log")
        wait_for(lambda: "2031-06-01T09:00:00Z" in http.get("/status").text, "the org's schedule on the status page")


def test_explain_as_of_an_instant_for_an_auditor(cs: ConsoleStack) -> None:
    with cs.admin as admin:  # something to travel back to
        admin.put(f"{cs.stack.command_url}/v1/orgs/{cs.org}/users/then/flags/{FLAG}",
                  json={"enabled": True, "reason": "before the instant"})
    time.sleep(1.1)
    with signed_in(cs, "auditor") as http:
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        page = http.get("/explain", params={"org": cs.org, "flag": FLAG, "at": at})
        assert page.status_code == 200 and f"As of {at} UTC" in page.text
        assert FLAG in page.text and "system" in page.text
        assert http.get("/explain", params={"org": cs.org, "flag": FLAG}).status_code == 403  # live: evaluators
        assert http.get("/explain", params={"org": cs.other, "flag": FLAG, "at": at}).status_code == 403


def test_edit_an_experiments_variants_and_details(cs: ConsoleStack) -> None:
    with signed_in(cs, "admin") as http:
        wait_for(lambda: http.get("/flags/exp.checkout.enabled").status_code == 200, "the flag's projection")
        page = http.get("/flags/exp.checkout.enabled")
        details = form_fields(page.text.split("<h2>Details</h2>", 1)[1], "/change/preview")
        details |= {"new_variants": "control=50, new-checkout=50", "new_owner": "checkout-team", "reason": "A/B"}
        preview = http.post("/change/preview", data=details)
        assert 'class="after">control=500, new-checkout=500<' in preview.text
        assert 'class="after">checkout-team<' in preview.text
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200
        wait_for(lambda: "new-checkout (50.0%)" in http.get("/flags/exp.checkout.enabled").text, "the variants")


def test_define_a_flag_then_archive_it(cs: ConsoleStack) -> None:
    with signed_in(cs, "admin") as http:
        define = form_fields(http.get("/flags").text.split("Define a new flag", 1)[1], "/change/preview")
        define |= {"flag": "ai.summaries.enabled", "new_group": "ai", "new_description": "Summaries",
                   "new_owner": "insights-team", "reason": "new feature"}
        preview = http.post("/change/preview", data=define)
        assert 'class="before">not defined<' in preview.text
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200
        wait_for(lambda: http.get("/flags/ai.summaries.enabled").status_code == 200, "the new flag")
        again = http.post("/change/apply", data=form_fields(preview.text, "/change/apply"))
        assert again.status_code == 409  # defined meanwhile (by us): never a silent overwrite
        page = http.get("/flags/ai.summaries.enabled")
        archive = form_fields(page.text.split("<h2>Archive</h2>", 1)[1], "/change/preview") | {"reason": "retired"}
        preview = http.post("/change/preview", data=archive)
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200
        wait_for(lambda: ">archived<" in http.get("/flags", params={"q": "summaries"}).text, "the archive")


def test_an_org_admin_hands_out_a_key_and_revokes_it(cs: ConsoleStack) -> None:
    with signed_in(cs, "org-admin") as http:
        page = http.get("/keys")
        form = form_fields(page.text, "/keys") | {"name": "acme web app", "role": "evaluator", "reason": "new app"}
        made = http.post("/keys", data=form)
        assert made.status_code == 200
        new_key = re.search(r'id="new-key" readonly value="([^"]+)"', made.text).group(1)  # type: ignore[union-attr]
        assert new_key.startswith("fsk_")
        cs.keys["new evaluator"] = new_key
        with signed_in(cs, "new evaluator") as app:  # the new key works, as an evaluator of the org
            assert app.get("/").url.path == f"/orgs/{cs.org}"
            key_id = new_key.split("_")[1]
            revoke = form_fields(made.text, f"/keys/{key_id}/revoke") | {"reason": "app retired"}
            assert http.post(f"/keys/{key_id}/revoke", data=revoke).status_code == 200
            time.sleep(1.1)  # revocation reaches every service's key cache within a second
            assert app.get("/flags").url.path == "/signin"  # its console session ends with it


def test_flags_show_how_many_orgs_override_them_and_status_charts_evaluations(cs: ConsoleStack) -> None:
    admin = {"Authorization": f"Bearer {cs.keys['admin']}"}
    for _ in range(5):
        r = httpx.get(f"{cs.stack.query_url}/v1/orgs/{cs.org}/flags/{FLAG}", headers=admin, timeout=10)
        assert r.status_code == 200, r.text
    with signed_in(cs, "admin") as http:
        row = http.get("/flags", params={"q": FLAG}).text
        cell = re.search(r'<td class="override-count">(.*?)</td>', row, re.S)
        assert cell is not None and re.search(r"\d+ orgs?", cell.group(1)), row
        chart = f"Evaluations per minute: {FLAG}"
        wait_for(lambda: chart in http.get("/status").text, "the evaluation chart", timeout=15)
    with signed_in(cs, "org-admin") as http:
        assert "Overridden by" not in http.get("/flags").text  # a count across every org: not for one org
        assert f"Evaluations per minute: {FLAG} (" in http.get("/status").text  # its own org's evaluations


def test_define_a_typed_flag_edit_its_variants_and_split_it_at_an_org(cs: ConsoleStack) -> None:
    key = f"checkout.layout{uuid.uuid4().hex[:6]}"
    rows = {"variant_name_0": "grid", "variant_value_0": '{"columns": 3, "note": "<b>wide</b>"}',
            "variant_name_1": "list", "variant_value_1": "[1, 2]"}
    with signed_in(cs, "admin") as http:
        define = form_fields(http.get("/flags").text.split("Define a new flag", 1)[1], "/change/preview")
        define |= {"flag": key, "new_group": "checkout", "new_type": "object", "reason": "layouts",
                   "new_default_variant": "grid", "new_off_variant": "list", **rows, "variant_value_1": "[1, 2"}
        refused = http.post("/change/preview", data=define)
        assert refused.status_code == 422 and "variant_value_1" in refused.text and "not JSON" in refused.text
        preview = http.post("/change/preview", data=define | {"variant_value_1": "[1, 2]"})
        assert preview.status_code == 200, preview.text
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200
        wait_for(lambda: http.get(f"/flags/{key}").status_code == 200, "the typed flag's projection")
        page = http.get(f"/flags/{key}").text
        assert '<span class="tag">object</span>' in page and "&lt;b&gt;wide&lt;/b&gt;" in page

        details = form_fields(page.split("<h2>Details</h2>", 1)[1], "/change/preview")
        edit = details | rows | {"variant_value_1": "[1, 2, 3]", "reason": "longer list"}
        preview = http.post("/change/preview", data=edit)
        assert 'class="after">grid={"columns": 3, "note": "<b>wide</b>"}, list=[1, 2, 3]<' in unescape(preview.text)
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200

    with signed_in(cs, "org-admin") as http:
        page = http.get("/change", params={"flag": key, "level": "org", "org": cs.org})
        fields = form_fields(page.text, "/change/preview") | {
            "state": "on", "rollout": "", "reason": "lists for us", "serve": "split", "split": "grid=0, list=1000"}
        preview = http.post("/change/preview", data=fields)
        assert 'class="after">on, split grid 0% / list 100%<' in preview.text, preview.text
        assert http.post("/change/apply", data=form_fields(preview.text, "/change/apply")).status_code == 200

    def answered() -> object:
        with cs.admin as api:
            response = api.get(f"{cs.stack.query_url}/v1/orgs/{cs.org}/flags/{key}", params={"user": "u-1"})
            return response.json().get("value") if response.status_code == 200 else None
    wait_for(lambda: answered() == [1, 2, 3], "the split's answer, with the edited value")
