"""PostgreSQL out of reach under load, on the real services: every answer a 2xx or a 503 with `Retry-After`.

The outage is this deployment's database refusing its services' roles (`CONNECTION LIMIT 0`) with
every connection they held cut (`pg_terminate_backend`): what a restart looks like to them, without
stopping the server other tests share. Then the limit is lifted and the services must recover by
themselves: writes accepted again, projected, answered, and `/readyz` ready. No request may get a
500, and the logs must not hold a traceback per request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx
import pytest

from services.infra.settings import Settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG = "outage.probe"
REASON = "outage test"


@pytest.fixture(scope="module")
def deployment(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("outage-logs"))
    try:
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            made = http.post(f"{stack.command_url}/v1/flags", json={"key": FLAG, "group": "outage", "reason": REASON})
            assert made.status_code == 201, made.text
        yield stack
    finally:
        stack.stop()


async def _database(settings: Settings, statement: str) -> None:
    conn = await asyncpg.connect(settings.pg_admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def cut_off(settings: Settings) -> None:
    """The services' roles refused by their database, and every connection they hold closed."""
    name = settings.pg_database
    asyncio.run(_database(settings, f'ALTER DATABASE "{name}" CONNECTION LIMIT 0'))
    asyncio.run(_database(
        settings,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    ))


def reconnect(settings: Settings) -> None:
    asyncio.run(_database(settings, f'ALTER DATABASE "{settings.pg_database}" CONNECTION LIMIT -1'))


def _evaluator(stack: Stack, org: str) -> dict[str, str]:
    with httpx.Client(timeout=10, headers=stack.headers) as http:
        made = http.post(f"{stack.command_url}/v1/keys",
                         json={"name": f"outage {org}", "role": "evaluator", "org_id": org, "reason": REASON})
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['key']}"}


def _load(stack: Stack, org: str, evaluators: list[dict[str, str]], seconds: float) -> list[httpx.Response]:
    """Writes and evaluations from 6 clients at once for `seconds`; every answer kept."""

    def client(n: int) -> list[httpx.Response]:
        answers = []
        deadline = time.monotonic() + seconds
        with httpx.Client(timeout=15) as http:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                if n % 2 == 0:  # a write: key lookup (the admin key's cache expires) and the event store
                    answers.append(http.put(f"{stack.command_url}/v1/orgs/{org}/flags/{FLAG}",
                                            json={"enabled": i % 2 == 0, "reason": REASON}, headers=stack.headers))
                else:  # evaluations, each client's own key: new keys are looked up in Postgres
                    key = evaluators[(n + i) % len(evaluators)]
                    answers.append(http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{FLAG}", params={"user": f"u{i}"},
                                            headers=key))
                    answers.append(http.post(f"{stack.query_url}/ofrep/v1/evaluate/flags/{FLAG}",
                                             json={"context": {"targetingKey": f"u{i}"}}, headers=key))
                answers.append(http.get(f"{(stack.command_url, stack.query_url)[n % 2]}/readyz"))
                time.sleep(0.02)
        return answers

    with ThreadPoolExecutor(6) as pool:
        return [answer for answers in pool.map(client, range(6)) for answer in answers]


def _ready(stack: Stack) -> bool:
    try:
        return all(httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                   for url in (stack.command_url, stack.query_url))
    except httpx.HTTPError:
        return False


def test_an_unreachable_database_is_503_with_retry_after_then_everything_recovers(deployment: Stack) -> None:
    stack, org = deployment, f"o-{uuid.uuid4().hex[:8]}"
    evaluators = [_evaluator(stack, org) for _ in range(3)]
    before = _load(stack, org, evaluators, 1.0)
    assert {r.status_code for r in before} <= {200, 201}, sorted({(r.status_code, r.text[:80]) for r in before})

    cut_off(stack.settings)
    try:
        late = [_evaluator_after_outage_started(stack, org)]
        during = _load(stack, org, evaluators + late, 3.0)
    finally:
        reconnect(stack.settings)

    statuses = {r.status_code for r in during}
    assert 500 not in statuses, [r.text for r in during if r.status_code == 500][:3]
    assert statuses <= {200, 201, 401, 503}, statuses
    unavailable = [r for r in during if r.status_code == 503]
    assert unavailable, "the outage was seen by some request"
    missing = {(r.request.method, r.request.url.port, r.request.url.path) for r in unavailable
               if r.headers.get("retry-after") != "1"}
    assert not missing, missing
    assert all(r.status_code == 503 for r in during if r.request.url.path == "/readyz" and
               r.request.url.port == stack.settings.command_port), "command /readyz says the store is down"

    deadline = time.monotonic() + 20
    while not _ready(stack):
        assert time.monotonic() < deadline, "the services did not recover by themselves"
        time.sleep(0.2)
    with httpx.Client(timeout=10) as http:
        wrote = http.put(f"{stack.command_url}/v1/orgs/{org}/flags/{FLAG}",
                         json={"enabled": True, "reason": "after the outage"}, headers=stack.headers)
        assert wrote.status_code in (200, 201), wrote.text  # 200: the writers' last change had set it already
        version = wrote.json()["version"]
        deadline = time.monotonic() + 20
        while True:  # projected and answered: the projector reconnected too
            answer = http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{FLAG}", headers=evaluators[0]).json()
            if answer.get("value") is True and answer["event"]["version"] == version:
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.1)
    for service in (stack.command, stack.query):
        tracebacks = service.log_path.read_text().count("Traceback")
        assert tracebacks <= 2, f"{service.name} logged {tracebacks} tracebacks for one outage"


def _evaluator_after_outage_started(stack: Stack, org: str) -> dict[str, str]:
    """A key the query service has never seen: its lookup must reach Postgres, which refuses it."""
    made = httpx.post(f"{stack.command_url}/v1/keys", timeout=10, headers=stack.headers,
                      json={"name": "late", "role": "evaluator", "org_id": org, "reason": REASON})
    assert made.status_code == 503 and made.headers["retry-after"] == "1", made.text
    return {"Authorization": "Bearer fsk_0123456789abcdef_" + "x" * 43}  # unknown: 401 or 503, never 500
