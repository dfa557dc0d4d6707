"""OFREP's change stream on the running stack: a change made through the command API, projected by the real
projector, reaches the org's SSE stream as `refetchEvaluation`; resumption with `Last-Event-ID`; keys and orgs.

The query service runs as `python -m services.query` serves it (its own HTTP server, two workers), with a short
heartbeat so that idle streams show their keep-alive comments within the test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.infra.settings import Settings
from tests.support.auth import bearer
from tests.support.sse_client import EventStream
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG = "stream.flag"
REASON = {"reason": "ofrep stream integration test"}
HEARTBEAT = 0.5  # s, FLAGS_OFREP_STREAM_HEARTBEAT_SECONDS for this stack


@dataclass
class World:
    stack: Stack
    org: str
    other: str
    key: str  # an evaluator of `org`
    other_key: str  # an evaluator of `other`
    auditor: str  # an auditor of `org`
    admin: str  # a system-wide admin key

    @property
    def changes(self) -> str:
        return f"{self.stack.query_url}/ofrep/v1/changes"

    def stream(self, key: str | None = None, *, org: str | None = None, last: str | None = None) -> EventStream:
        url = self.changes if org is None else f"{self.changes}?org={org}"
        return EventStream(url, bearer(self.key if key is None else key), last_event_id=last)

    async def set(self, org: str, enabled: bool) -> None:
        async with httpx.AsyncClient(base_url=self.stack.command_url, headers=self.stack.headers, timeout=10) as http:
            response = await http.put(f"/v1/orgs/{org}/flags/{FLAG}", json={"enabled": enabled, **REASON})
            assert response.status_code in (200, 201), response.text


def _call(http: httpx.Client, method: str, path: str, **body: Any) -> dict[str, Any]:
    response = http.request(method, path, json={**REASON, **body})
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings().model_copy(update={"ofrep_stream_heartbeat_seconds": HEARTBEAT})
    stack = start_stack(settings, tmp_path_factory.mktemp("ofrep_stream"))
    org, other = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    try:
        with httpx.Client(base_url=stack.command_url, headers=stack.headers, timeout=10) as http:
            _call(http, "POST", "/v1/flags", key=FLAG, group="stream")
            keys = [
                str(_call(http, "POST", "/v1/keys", name=f"stream {role}", role=role, org_id=o)["key"])
                for role, o in (("evaluator", org), ("evaluator", other), ("auditor", org), ("system-admin", None))
            ]
        world = World(stack, org, other, *keys)
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=stack.query_url, headers=bearer(world.key), timeout=10) as query:
            while query.post(f"/ofrep/v1/evaluate/flags/{FLAG}", json={}).status_code != 200:
                assert time.monotonic() < deadline, "the flag was never projected"
                time.sleep(0.05)
        yield world
    finally:
        stack.stop()


async def _change_and_wait(world: World, stream: EventStream, org: str, enabled: bool) -> tuple[float, str]:
    """Change `org`'s flag; the latency (ms) from the command's 2xx to the refetch event on `stream`, its id."""
    await world.set(org, enabled)
    done = time.perf_counter()
    event = await stream.next_event(timeout=10)
    assert event.is_refetch, event
    assert event.id is not None
    return (event.at - done) * 1000, event.id


async def test_a_change_of_the_org_is_pushed_as_refetch_evaluation(world: World) -> None:
    async with world.stream() as stream:
        assert stream.status == 200, stream.body
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-store"
        assert (await stream.next()).retry == 1000
        first = await stream.next_event()  # no Last-Event-ID: refetch at once, at the org's position
        assert first.is_refetch and first.id is not None
        latencies = []
        previous = int(first.id)
        for i in range(5):
            latency, event_id = await _change_and_wait(world, stream, world.org, i % 2 == 0)
            assert int(event_id) > previous, "an id is a position: it grows with every change"
            previous = int(event_id)
            latencies.append(latency)
        print(f"\ncommand 2xx → refetchEvaluation on the stream: {', '.join(f'{ms:.1f}' for ms in latencies)} ms")

    # what the provider then refetches is the new value, and the bulk answer names this very stream
    async with httpx.AsyncClient(base_url=world.stack.query_url, headers=bearer(world.key), timeout=10) as query:
        bulk = (await query.post("/ofrep/v1/evaluate/flags", json={})).json()
    flags = {f["key"]: f for f in bulk["flags"]}
    assert flags[FLAG]["value"] is True and flags[FLAG]["reason"] == "TARGETING_MATCH"
    assert bulk["eventStreams"] == [{"type": "sse", "endpoint": {"requestUri": f"/ofrep/v1/changes?org={world.org}"}}]


async def test_last_event_id_resumes_and_a_missed_change_is_told_at_once(world: World) -> None:
    async with world.stream() as stream:
        current = (await stream.next_event()).id
    assert current is not None
    async with world.stream(last=current) as resumed:  # up to date: nothing to refetch
        blocks = [await resumed.next() for _ in range(3)]
        assert [b.comment for b in blocks[1:]] == ["up to date", "keep-alive"], blocks
        assert not any(b.is_refetch for b in blocks)
    await world.set(world.org, False)  # while no stream is open
    await world.set(world.org, True)
    deadline = time.monotonic() + 10
    while True:  # once projected, a client that saw `current` missed it: told at once on reconnecting
        async with world.stream(last=current) as behind:
            await behind.next()  # retry
            block = await behind.next()
        if block.is_refetch:
            assert block.id is not None and int(block.id) >= int(current) + 2
            break
        assert time.monotonic() < deadline, "the changes were never projected"
        await asyncio.sleep(0.05)


async def test_another_orgs_change_is_not_sent(world: World) -> None:
    async with world.stream() as mine, world.stream(world.other_key) as theirs:
        await mine.next_event()
        await theirs.next_event()
        await world.set(world.other, True)
        assert (await theirs.next_event(timeout=10)).is_refetch  # projected, and told to its own org
        quiet = [await mine.next(timeout=HEARTBEAT * 4) for _ in range(2)]
        assert [b.comment for b in quiet] == ["keep-alive", "keep-alive"], quiet


async def test_the_stream_is_authenticated_and_scoped_like_every_ofrep_route(world: World) -> None:
    async with EventStream(world.changes, {}) as anonymous:
        assert anonymous.status == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
    async with world.stream("fs_not_a_key") as bad:
        assert bad.status == 401
    async with world.stream(world.auditor) as auditor:
        assert auditor.status == 403
    async with world.stream(org=world.other) as elsewhere:  # an org-scoped key naming another org
        assert (elsewhere.status, elsewhere.body) == (403, elsewhere.body)
        assert b"forbidden" in elsewhere.body
    async with world.stream(world.admin) as unnamed:  # a system-wide key must name the org
        assert unnamed.status == 422 and b'"field":"org"' in unnamed.body
    async with world.stream(world.admin, org="no such/org") as malformed:
        assert malformed.status == 422 and b'"field":"org"' in malformed.body
    async with world.stream(world.admin, org=world.org) as admin:
        assert admin.status == 200
        assert (await admin.next_event()).is_refetch
