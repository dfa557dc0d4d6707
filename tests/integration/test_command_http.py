"""The command service as a real process (`python -m services.command`) over HTTP.

Each module gets its own database, topic and port (`make_settings`), so the
service's relay and port never collide with a `stack` another test started.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import decode, from_record
from services.infra.settings import Settings
from tests.support.auth import admin_headers
from tests.support.kafka import consume_all
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration


def start_service(settings: Settings, log_dir: Path) -> ServiceProcess:
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    return ServiceProcess("command", settings, log_dir, health).start()


@pytest.fixture(scope="module")
def service(
    make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    running = start_service(make_settings(), tmp_path_factory.mktemp("command-http"))
    yield running
    running.stop()


@pytest.fixture
def url(service: ServiceProcess) -> str:
    return f"http://127.0.0.1:{service.settings.command_port}"


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers=admin_headers(service.settings)) as client:
        yield client


def fresh_key() -> str:
    return f"it{uuid.uuid4().hex[:8]}.enabled"


def fresh_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def write(http: httpx.Client, method: str, url: str, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = http.request(method, url, json={"reason": "integration", **fields})
    assert response.status_code == status, response.text
    return response.json()


def define(http: httpx.Client, url: str, key: str) -> None:
    write(http, "POST", f"{url}/v1/flags", key=key, group="it", description="integration flag")


def test_a_flag_through_every_level(http: httpx.Client, url: str) -> None:
    key, org = fresh_key(), fresh_org()
    define(http, url, key)
    write(http, "PUT", f"{url}/v1/flags/{key}/system", enabled=False)
    org_set = write(http, "PUT", f"{url}/v1/orgs/{org}/flags/{key}", enabled=True, rollout_percentage=30)
    assert [e["type"] for e in org_set["events"]] == ["OrgOverrideSet", "RolloutPercentageSet"]
    platform = write(http, "PUT", f"{url}/v1/orgs/{org}/platforms/linkedin/flags/{key}", enabled=False)
    user = write(http, "PUT", f"{url}/v1/orgs/{org}/users/jane@example.com/flags/{key}", enabled=True)
    assert platform["stream"] == f"org/{org}/platform/linkedin/flag/{key}"
    assert user["stream"] == f"org/{org}/user/jane@example.com/flag/{key}"

    unchanged = write(http, "PUT", f"{url}/v1/orgs/{org}/flags/{key}", status=200, rollout_percentage=30)
    assert unchanged == {"changed": False, "stream": f"org/{org}/flag/{key}", "version": 2, "events": []}

    write(http, "PUT", f"{url}/v1/orgs/{org}/flags/{key}", rollout_percentage=None, expected_version=2)
    cleared = write(http, "DELETE", f"{url}/v1/orgs/{org}/platforms/linkedin/flags/{key}")
    assert cleared["events"][0]["new"] is None

    head = http.get(f"{url}/v1/streams/org/{org}/flag/{key}").json()
    assert head == {
        "stream": f"org/{org}/flag/{key}",
        "version": 3,
        "value": {"enabled": True, "rollout_percentage": None},
    }

    page = http.get(f"{url}/v1/events", params={"org": org})
    events = [decode(raw) for raw in _raw_events(page.text)]  # the exact stored bytes verify
    assert [e.type for e in events] == [
        "OrgOverrideSet",
        "RolloutPercentageSet",
        "PlatformOverrideSet",
        "UserOverrideSet",
        "RolloutPercentageSet",
        "PlatformOverrideCleared",
    ]
    assert {e.actor.name for e in events} == {"test admin"}


def _raw_events(body: str) -> list[str]:
    """Split the `events` array of a /v1/events answer into each envelope's raw text."""
    inner = body[len('{"events":[') : body.rindex('],"next_after":')]
    return re.split(r"(?<=\}),(?=\{\"actor\")", inner) if inner else []


def test_a_stale_expected_version_is_409_naming_the_current_version(http: httpx.Client, url: str) -> None:
    key, org = fresh_key(), fresh_org()
    define(http, url, key)
    target = f"{url}/v1/orgs/{org}/users/u-1/flags/{key}"
    write(http, "PUT", target, enabled=True, expected_version=0)
    conflict = write(http, "PUT", target, status=409, enabled=False, expected_version=0)
    assert conflict["error"] == "version_conflict"
    assert (conflict["stream"], conflict["current_version"], conflict["expected_version"]) == (
        f"org/{org}/user/u-1/flag/{key}",
        1,
        0,
    )


def test_racing_puts_with_the_same_expected_version_exactly_one_wins(http: httpx.Client, url: str) -> None:
    key, org = fresh_key(), fresh_org()
    define(http, url, key)
    target = f"{url}/v1/orgs/{org}/flags/{key}"
    write(http, "PUT", target, enabled=True)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10, headers=http.headers) as client:
            bodies = [
                {"reason": f"racer {i}", "enabled": i % 2 == 0, "rollout_percentage": i, "expected_version": 1}
                for i in range(6)
            ]
            return await asyncio.gather(*(client.put(target, json=b) for b in bodies))

    responses = asyncio.run(race())
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    head = http.get(f"{url}/v1/streams/org/{org}/flag/{key}").json()["version"]
    assert head > 1  # the winner's events (one or two, depending on which racer won)
    assert {r.json()["current_version"] for r in responses if r.status_code == 409} == {head}
    winner = next(r for r in responses if r.status_code == 201).json()
    assert http.get(f"{url}/v1/streams/org/{org}/flag/{key}").json()["version"] == winner["version"]


def test_error_contract_over_the_wire(http: httpx.Client, url: str) -> None:
    key = fresh_key()
    define(http, url, key)
    bad_json = http.put(f"{url}/v1/orgs/acme/flags/{key}", content=b"{", headers={"content-type": "application/json"})
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "malformed_json")
    too_big = http.post(f"{url}/v1/flags", json={"reason": "r", "description": "x" * 20_000})
    assert (too_big.status_code, too_big.json()["error"]) == (413, "body_too_large")
    platform = http.put(f"{url}/v1/orgs/acme/platforms/myspace/flags/{key}", json={"reason": "r", "enabled": True})
    assert (platform.status_code, platform.json()["field"]) == (422, "platform")
    unknown = http.put(f"{url}/v1/orgs/acme/flags/{fresh_key()}", json={"reason": "r", "enabled": True})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_flag")
    # inputs PostgreSQL itself would refuse are stopped at the edge, never a 500
    for method, path, payload in [
        ("GET", "/v1/streams/org/a%00b/flag/x", None),
        ("GET", "/v1/events?after=99999999999999999999", None),
        ("GET", "/v1/events?org=%00", None),
        ("PUT", f"/v1/orgs/acme/flags/{key}", {"reason": "nul \u0000 here", "enabled": True}),
        ("PUT", f"/v1/orgs/acme/users/u%00/flags/{key}", {"reason": "r", "enabled": True}),
        ("PUT", f"/v1/orgs/acme/flags/{key}", {"reason": "r", "enabled": True, "expected_version": 2**40}),
    ]:
        response = http.request(method, f"{url}{path}", json=payload)
        assert response.status_code == 422, (path, response.text)
    odd = http.put(f"{url}/v1/orgs/acme/flags/{key}", json={"reason": "émoji 🚩 ✓ Zoë", "enabled": True})
    assert odd.status_code == 201, odd.text


def test_probes_docs_and_metrics(http: httpx.Client, url: str) -> None:
    assert http.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = http.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["postgres"] == "ok"
    assert "outbox_lag" in ready.json()
    assert "/v1/flags" in http.get(f"{url}/openapi.json").json()["paths"]
    assert http.get(f"{url}/docs").status_code == 200
    assert "flagstream_outbox_backlog_events" in http.get(f"{url}/metrics").text


def test_accepted_changes_reach_kafka(http: httpx.Client, url: str, service: ServiceProcess) -> None:
    key, org = fresh_key(), fresh_org()
    define(http, url, key)
    changed = write(http, "PUT", f"{url}/v1/orgs/{org}/flags/{key}", enabled=True)
    event_id = changed["events"][0]["event_id"]
    total = len(http.get(f"{url}/v1/events", params={"limit": 1000}).json()["events"])

    records = asyncio.run(consume_all(service.settings, total))
    ids = [str(from_record(r.value, r.headers).event_id) for r in records]
    assert event_id in ids
    assert len(ids) == len(set(ids))


def test_keeps_accepting_while_kafka_is_down_and_stops_cleanly(
    http: httpx.Client, make_settings: Callable[[], Settings], tmp_path: Path
) -> None:
    settings = make_settings().model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    down = start_service(settings, tmp_path)
    url = f"http://127.0.0.1:{settings.command_port}"
    http.headers.update(admin_headers(settings))  # this service has its own database, hence its own admin
    try:
        key = fresh_key()
        define(http, url, key)
        write(http, "PUT", f"{url}/v1/flags/{key}/system", enabled=True)
        ready = http.get(f"{url}/readyz").json()
        # the admin key's ApiKeyCreated, the definition and the default: all waiting for Kafka
        assert ready["status"] == "ready" and ready["outbox_lag"] == 3
        assert "flagstream_relay_kafka_up 0.0" in http.get(f"{url}/metrics").text
        asyncio.run(asyncio.sleep(2))  # several relay retries
    finally:
        assert down.proc is not None
        down.proc.send_signal(signal.SIGTERM)
        code = down.proc.wait(20)
    log = down.log_path.read_text()
    assert code == 0, log
    assert log.count("Kafka unavailable") == 1, log  # one warning per outage, not per retry
    assert "Unable connect to" not in log
    assert "Traceback" not in log
