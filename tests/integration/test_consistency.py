"""The shared case table (tests/support/consistency_cases.py) on every surface: the pure core, the native API, OFREP
(the single-flag and the bulk endpoint), targeting rules' cases with their evaluation contexts included.

The core folds the sealed log and evaluates each case at its instant exactly.
The services get the very same sealed events on their topic (as the relay
would publish them), projected by the real projector; they evaluate at the
wall clock, so the world's schedules fall due a few seconds after the log is
published: the cases before the instant are asked first (and must be answered
before it), then the runner waits for the instant and asks the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from events import to_record
from flagcore import evaluate, fold
from services.infra.settings import Settings
from tests.support.consistency_cases import CASES, RULE_CASES, Case, Outcome, sealed
from tests.support.kafka import produce, topic_size
from tests.support.projection import wait_for_offsets
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

LEAD = timedelta(seconds=10)  # from publishing the log to the schedules' instant: projection, then the early cases
Runner = Callable[[Case], Awaitable[Outcome]]
ALL = CASES + RULE_CASES


def test_the_pure_core_answers_every_case() -> None:
    base = datetime(2030, 6, 1, 12, tzinfo=UTC)
    state = fold(sealed(base))
    wrong = []
    for case in ALL:
        now = base + (case.at or timedelta(0))
        e = evaluate(
            state.catalog,
            state.tenant(case.org),
            case.flag,
            platform=case.platform,
            user_id=case.user,
            now=now,
            context=case.context,
        )
        got = Outcome(e.value, e.variant, e.reason.value, None if e.level is None else e.level.value, e.rule)
        if got != case.expected:
            wrong.append(f"{case.name}: {got} != {case.expected}")
    assert wrong == []


@pytest.fixture(scope="module")
def stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(make_settings(), tmp_path_factory.mktemp("consistency"))
    yield running
    running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def base(stack: Stack) -> datetime:
    """Publish the world, wait until the projector consumed it; its schedules fall due at the returned instant."""
    instant = datetime.now(UTC) + LEAD
    events = sealed(instant)
    before = await topic_size(stack.settings)
    await produce(stack.settings, [to_record(e) for e in events])
    await wait_for_offsets(stack.settings, before + len(events))
    return instant


@pytest_asyncio.fixture(loop_scope="session")
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.query_url, headers=stack.headers, timeout=10) as client:
        yield client


def native_params(case: Case) -> list[tuple[str, str]]:
    """The case as query parameters: string attributes as `context.NAME=VALUE`, the others in one `context={...}`."""
    params = [(k, v) for k, v in (("platform", case.platform), ("user", case.user)) if v is not None]
    attrs = case.context or {}
    params += [(f"context.{k}", v) for k, v in attrs.items() if isinstance(v, str)]
    typed = {k: v for k, v in attrs.items() if not isinstance(v, str)}
    return params + ([("context", json.dumps(typed))] if typed else [])


def native(http: httpx.AsyncClient) -> Runner:
    async def ask(case: Case) -> Outcome:
        r = await http.get(f"/v1/orgs/{case.org}/flags/{case.flag}", params=native_params(case))
        if r.status_code == 404:
            return Outcome(False, None, "ERROR", None)
        assert r.status_code == 200, r.text
        body = r.json()
        return Outcome(body["value"], body["variant"], body["reason"], body["level"], body["rule"])

    return ask


def ofrep_context(case: Case) -> dict[str, Any]:
    context: dict[str, Any] = {"org": case.org, **(case.context or {})}
    if case.platform is not None:
        context["platform"] = case.platform
    if case.user is not None:
        context["targetingKey"] = case.user
    return context


def _ofrep_outcome(body: dict[str, Any]) -> Outcome:
    metadata = body["metadata"]
    return Outcome(body["value"], body["variant"], body["reason"], metadata.get("level"), metadata.get("rule"))


def ofrep(http: httpx.AsyncClient) -> Runner:
    async def ask(case: Case) -> Outcome:
        r = await http.post(f"/ofrep/v1/evaluate/flags/{case.flag}", json={"context": ofrep_context(case)})
        if r.status_code == 404:
            assert r.json()["errorCode"] == "FLAG_NOT_FOUND", r.text
            return Outcome(False, None, "ERROR", None)
        assert r.status_code == 200, r.text
        return _ofrep_outcome(r.json())

    return ask


def ofrep_bulk(http: httpx.AsyncClient) -> Runner:
    async def ask(case: Case) -> Outcome:
        r = await http.post("/ofrep/v1/evaluate/flags", json={"context": ofrep_context(case)})
        assert r.status_code == 200, r.text
        found = [f for f in r.json()["flags"] if f["key"] == case.flag]
        return _ofrep_outcome(found[0]) if found else Outcome(False, None, "ERROR", None)

    return ask


async def _run(runner: Runner, base: datetime) -> list[str]:
    """Every case, the ones before the schedules' instant first (the rules' after it); the mismatches."""
    wrong = []
    early = [c for c in CASES if c.at is None or c.at < timedelta(0)]
    late = [c for c in CASES if c not in early] + list(RULE_CASES)  # rules have no schedule: any time will do
    for case in early:
        got = await runner(case)
        if not got.matches(case.expected):
            wrong.append(f"{case.name}: {got} != {case.expected}")
    assert datetime.now(UTC) < base, "the early cases took longer than LEAD: raise it"
    await asyncio.sleep((base - datetime.now(UTC)).total_seconds() + 0.01)
    for case in late:
        got = await runner(case)
        if not got.matches(case.expected):
            wrong.append(f"{case.name}: {got} != {case.expected}")
    return wrong


async def test_the_native_api_and_ofrep_answer_every_case(http: httpx.AsyncClient, base: datetime) -> None:
    native_wrong, ofrep_wrong, bulk_wrong = await asyncio.gather(
        _run(native(http), base), _run(ofrep(http), base), _run(ofrep_bulk(http), base)
    )
    assert native_wrong == [], "native API"
    assert ofrep_wrong == [], "OFREP"
    assert bulk_wrong == [], "OFREP bulk"
