"""The shared case table (tests/support/consistency_cases.py) on the in-process SDK.

Two clients per org: one started before the world is published (it learns every
event from the topic) and one bootstrapped from the query service once the
projector has it (it starts from the snapshot). Both must answer every case like
the pure core, through `evaluate` (value, variant, reason, level) and through the
`is_enabled` hot path or the typed getter of the flag's type (value), on each side of the schedules' instant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events import to_record
from flagsdk import FlagClient
from services.infra.settings import Settings
from tests.support.auth import admin_key
from tests.support.consistency_cases import CASES, ORG, OTHER, Case, Outcome, sealed
from tests.support.kafka import produce, topic_size
from tests.support.projection import wait_for_offsets
from tests.support.sdk import sdk_settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

LEAD = timedelta(seconds=8)  # publishing → the schedules' instant: projection, bootstrap, then the early cases


@pytest.fixture(scope="module")
def stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(make_settings(), tmp_path_factory.mktemp("sdk-consistency"))
    yield running
    running.stop()


def ask(client: FlagClient, case: Case) -> tuple[Outcome, Any]:
    r = client.evaluate(case.flag, platform=case.platform, user=case.user)
    got = Outcome(r.value, r.variant, r.reason.value, None if r.level is None else r.level.value)
    return got, fast_value(client, case)


def fast_value(client: FlagClient, case: Case) -> Any:
    """The value from the hot path: `is_enabled`, or the getter of the expected value's type."""
    context: dict[str, Any] = {"platform": case.platform, "user": case.user}
    value = case.expected.value
    if type(value) is bool:
        return client.is_enabled(case.flag, **context)
    if type(value) is str:
        return client.get_string(case.flag, "", **context)
    if type(value) is int:
        return client.get_integer(case.flag, -1, **context)
    if type(value) is float:
        return client.get_float(case.flag, -1.0, **context)
    return client.get_object(case.flag, {}, **context)


def run(clients: dict[str, FlagClient], cases: list[Case], label: str) -> list[str]:
    wrong = []
    for case in cases:
        got, fast = ask(clients[case.org], case)
        if got != case.expected or fast != case.expected.value or type(fast) is not type(case.expected.value):
            wrong.append(f"{label} {case.name}: {got}, hot path {fast!r} != {case.expected}")
    return wrong


def test_the_sdk_answers_every_case_from_the_stream_and_from_a_bootstrap(stack: Stack) -> None:
    key = admin_key(stack.settings)
    sdk = sdk_settings(stack.settings)
    streamed = {org: FlagClient.from_settings(sdk, api_key=key, org_id=org).start() for org in (ORG, OTHER)}
    bootstrapped: dict[str, FlagClient] = {}
    try:
        base = datetime.now(UTC) + LEAD
        events = sealed(base)
        before = asyncio.run(topic_size(stack.settings))
        asyncio.run(produce(stack.settings, [to_record(e) for e in events]))
        asyncio.run(wait_for_offsets(stack.settings, before + len(events)))
        bootstrapped = {
            org: FlagClient.from_settings(sdk, api_key=key, org_id=org).start() for org in (ORG, OTHER)
        }
        for client in (*streamed.values(), *bootstrapped.values()):
            assert client.wait_until_current()
        assert streamed[ORG].status().applied == sum(e.org_id in (None, ORG) for e in events)

        early = [c for c in CASES if c.at is None or c.at < timedelta(0)]
        late = [c for c in CASES if c not in early]
        wrong = run(streamed, early, "streamed") + run(bootstrapped, early, "bootstrapped")
        assert datetime.now(UTC) < base, "the early cases took longer than LEAD: raise it"
        time.sleep((base - datetime.now(UTC)).total_seconds() + 0.01)
        wrong += run(streamed, late, "streamed") + run(bootstrapped, late, "bootstrapped")
        assert wrong == []
    finally:
        for client in (*streamed.values(), *bootstrapped.values()):
            client.close()
