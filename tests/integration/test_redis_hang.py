"""A hung Redis (SIGSTOP: connections open, nothing answered) on the real services.

Propagation must not depend on Redis answering: the projector queues invalidations instead of
waiting on them, and the query service notices the silence on its invalidation subscription
within `InvalidationListener.SILENCE_LIMIT` and reads Postgres. When Redis answers again it must
not serve the documents it held from before the hang. (A stopped Redis keeps what was sent into
its sockets and runs it on SIGCONT; invalidations are really lost when a projector dies with some
queued, which the next projector's start-up purge covers: the second test.)
This deployment has its own Redis (the other tests share one), so stopping it harms nobody.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.infra.cache_keys import CacheKeys
from services.infra.settings import Settings
from services.query.adapters import InvalidationListener
from tests.support.processes import free_port
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

FLAG = "hang.probe"
REASON = "redis hang test"
# Change → visible while Redis is hung: the listener's silence limit, one projector batch, a poll, margin.
VISIBLE_WITHIN = InvalidationListener.SILENCE_LIMIT + 5.0
RECOVERED_WITHIN = 3.0  # the projector's queued invalidations reach a Redis that answers again


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (scripts/stack installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("own-redis")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            break
        except redis.RedisError:
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.1)
    try:
        yield proc, url
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def deployment(
    make_settings: Callable[[], Settings],
    own_redis: tuple[subprocess.Popen[bytes], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    settings = make_settings().model_copy(update={"redis_url": own_redis[1]})
    stack = start_stack(settings, Path(tmp_path_factory.mktemp("redis-hang-logs")))
    try:
        yield stack
    finally:
        stack.stop()


def _answer(http: httpx.Client, stack: Stack, org: str, key: dict[str, str]) -> bool:
    got = http.get(f"{stack.query_url}/v1/orgs/{org}/flags/{FLAG}", headers=key)
    assert got.status_code == 200, got.text  # never a 5xx: Postgres answers while Redis does not
    return bool(got.json()["value"])


def _set(http: httpx.Client, stack: Stack, org: str, on: bool) -> None:
    wrote = http.put(f"{stack.command_url}/v1/orgs/{org}/flags/{FLAG}", json={"enabled": on, "reason": REASON},
                     headers=stack.headers)
    assert wrote.status_code == 201, wrote.text


def _seen_within(seconds: float, http: httpx.Client, stack: Stack, org: str, key: dict[str, str], on: bool) -> float:
    began = time.monotonic()
    while _answer(http, stack, org, key) is not on:
        assert time.monotonic() - began < seconds, f"{FLAG} not {on} {seconds:.0f} s after the change"
        time.sleep(0.05)
    return time.monotonic() - began


def test_changes_propagate_while_redis_hangs_and_no_stale_document_survives_it(
    deployment: Stack, own_redis: tuple[subprocess.Popen[bytes], str]
) -> None:
    stack, org, proc = deployment, f"o-{uuid.uuid4().hex[:8]}", own_redis[0]
    with httpx.Client(timeout=15) as http:
        made = http.post(f"{stack.command_url}/v1/flags", json={"key": FLAG, "group": "hang", "reason": REASON},
                         headers=stack.headers)
        assert made.status_code == 201, made.text
        created = http.post(f"{stack.command_url}/v1/keys", headers=stack.headers,
                            json={"name": "hang", "role": "evaluator", "org_id": org, "reason": REASON})
        assert created.status_code == 201, created.text
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        _set(http, stack, org, False)
        _seen_within(10, http, stack, org, key, False)
        for _ in range(20):  # the org's document now cached in Redis and in the query service
            assert _answer(http, stack, org, key) is False

        os.kill(proc.pid, signal.SIGSTOP)
        try:
            delays = []
            for on in (True, False, True):
                _set(http, stack, org, on)
                delays.append(_seen_within(VISIBLE_WITHIN, http, stack, org, key, on))
            print(f"change → visible with Redis hung: {', '.join(f'{d:.2f} s' for d in delays)}")
        finally:
            os.kill(proc.pid, signal.SIGCONT)

        time.sleep(RECOVERED_WITHIN)  # Redis answers again: its pre-hang document (off) must be gone
        for _ in range(50):
            assert _answer(http, stack, org, key) is True, "a document cached before the hang was served again"
            time.sleep(0.02)
        _set(http, stack, org, False)  # and invalidation works as before
        print(f"change → visible after the hang: {_seen_within(10, http, stack, org, key, False):.2f} s")
        pending = _metric(http, stack, "flagstream_projector_cache_invalidations_pending")
        assert pending == 0, f"{pending} invalidations still queued after Redis came back"


def _metric(http: httpx.Client, stack: Stack, name: str) -> float:
    page = http.get(f"{stack.projector_url}/metrics").text
    values = [float(line.split()[-1]) for line in page.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not on the projector's /metrics"
    return values[0]


def test_a_projector_starting_purges_documents_its_predecessor_may_not_have_invalidated(
    deployment: Stack, own_redis: tuple[subprocess.Popen[bytes], str]
) -> None:
    stack, org = deployment, f"o-{uuid.uuid4().hex[:8]}"
    keys = CacheKeys(stack.settings.redis_prefix)
    shared = redis.Redis.from_url(own_redis[1])
    shared.set(keys.org(org), b"left behind by a projector that died before invalidating it", ex=3600)
    stack.projector.stop()
    stack.projector.start()
    deadline = time.monotonic() + 10
    while shared.exists(keys.org(org)):
        assert time.monotonic() < deadline, "the starting projector did not purge the cached documents"
        time.sleep(0.05)
