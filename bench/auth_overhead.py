"""What authentication costs native evaluation on the query service: auth on vs off, side by side.

    .venv/bin/python -m bench.auth_overhead [--seconds 10] [--rounds 2]

Target (access-control issue): at most 5 % less throughput with authentication on.

"auth on" is the query service as shipped (`python -m services.query`), asked with
a system-admin key; "auth off" is `bench.query_without_auth`, the same app with the
authentication dependency overridden by a fixed system-admin principal. Both run
at once, on the same database, Redis and seeded flags, and wrk sends both the same
request, `Authorization` header included: `GET /v1/orgs/acme/flags/ai.insights.enabled
?platform=tiktok&user=u-42` (a cached evaluation, where a fixed cost shows most),
with `-t1 -c16 -d10s --latency` for throughput and `-c1` for latency. The two
builds take turns, in alternating order, for `--rounds` rounds; figures are the
means over rounds. A micro-benchmark times `Authenticator.authenticate` with a
warm key cache (the in-process path every request takes between cache refreshes).

OFREP is not measured: the query service does not serve OFREP yet (another issue);
this measures native evaluation only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.evaluation_latency import KEY, ORG, seed, wrk
from bench.harness import REPO, drop_database, isolated_settings
from services.auth.authenticator import Authenticator
from services.auth.policy import Role
from services.infra.settings import Settings
from tests.conftest import start_stack
from tests.support.auth import MemoryKeys, admin_key, bearer
from tests.support.processes import free_port, settings_env

RESULTS = Path(__file__).parent / "results"
PATH = f"/v1/orgs/{ORG}/flags/{KEY}?platform=tiktok&user=u-42"
TARGET_LOSS_PERCENT = 5.0
OFREP_NOTE = "OFREP: not measured, the query service does not serve OFREP yet (separate issue); native evaluation only"


class AuthOffService:
    """`python -m bench.query_without_auth` on its own port, with the stack's settings otherwise."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings.model_copy(update={"query_port": free_port()})
        self.url = f"http://127.0.0.1:{self.settings.query_port}"
        self.log_path = log_dir / "query-without-auth.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> AuthOffService:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.query_without_auth"],
                cwd=REPO,
                env=settings_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"auth-off query service exited {self.proc.returncode}: see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"auth-off query service not healthy after {timeout}s: see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def check_builds(on_url: str, off_url: str, key: str) -> None:
    """Both answer the same evaluation with the key; only the auth-off build answers without one."""
    with_key = [httpx.get(f"{url}{PATH}", headers=bearer(key), timeout=5) for url in (on_url, off_url)]
    assert all(r.status_code == 200 for r in with_key), [r.text for r in with_key]
    assert with_key[0].json() == with_key[1].json(), "the two builds disagree"
    assert with_key[0].json()["level"] == "platform", with_key[0].text  # the seed was projected
    assert httpx.get(f"{on_url}{PATH}", timeout=5).status_code == 401, "auth-on build answered without a key"
    assert httpx.get(f"{off_url}{PATH}", timeout=5).status_code == 200, "auth-off build still authenticates"


async def wait_for_seed(url: str, key: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=bearer(key), timeout=5) as http:
        while True:
            r = await http.get(f"{url}{PATH}")
            if r.status_code == 200 and r.json()["level"] == "platform":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"seed not projected after {timeout}s: {r.status_code} {r.text}")
            await asyncio.sleep(0.1)


def http_rounds(urls: dict[str, str], key: str, *, seconds: int, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """{connections label: {build: mean figures}}, each build run `rounds` times in alternating order."""
    for url in urls.values():  # warm both: the in-process document cache, the key cache, the connections
        wrk(f"{url}{PATH}", key=key, connections=16, seconds=2)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for connections in (16, 1):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for i in range(rounds):
            order = list(urls) if i % 2 == 0 else list(reversed(urls))
            for name in order:
                figures = wrk(f"{urls[name]}{PATH}", key=key, connections=connections, seconds=seconds)
                runs[name].append(figures)
                print(
                    f"  round {i + 1}, -c{connections:<2} {name:<8} {figures['rps']:>9,.0f} req/s   "
                    f"p50 {figures['p50']:.3f} ms   p99 {figures['p99']:.3f} ms",
                    file=sys.stderr,
                )
        results[f"c{connections}"] = {
            name: {metric: statistics.fmean(r[metric] for r in rs) for metric in rs[0]} | {"runs": len(rs)}
            for name, rs in runs.items()
        }
    return results


async def authenticate_micro(calls: int = 200_000, repeats: int = 5) -> dict[str, float]:
    """µs per `Authenticator.authenticate` with a warm cache (best of `repeats`), in-memory key lookup."""
    keys = MemoryKeys()
    header = f"Bearer {keys.issue(Role.SYSTEM_ADMIN, name='bench')}"
    authenticator = Authenticator(keys, ttl=3600.0)  # every call below is a cache hit
    await authenticator.authenticate(header)  # warm: the record is cached, last-use recorded
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            await authenticator.authenticate(header)
        timings.append((time.perf_counter() - started) / calls * 1e6)
    return {"us_per_call_best": min(timings), "us_per_call_median": statistics.median(timings), "calls": calls}


def loss_percent(on: float, off: float) -> float:
    return (off - on) / off * 100.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(OFREP_NOTE)
    micro = await authenticate_micro()
    settings = await isolated_settings("auth")
    logs = Path(tempfile.mkdtemp())
    stack = start_stack(settings, logs)
    off = AuthOffService(settings, logs)
    try:
        key = admin_key(settings)
        await seed(stack.command_url, stack.headers)
        await wait_for_seed(stack.query_url, key)
        off.start()
        check_builds(stack.query_url, off.url, key)
        http = http_rounds({"auth on": stack.query_url, "auth off": off.url}, key, seconds=args.seconds,
                           rounds=args.rounds)
    finally:
        off.stop()
        stack.stop()
        await drop_database(settings)

    print(f"\nnative evaluation, GET {PATH} (cached), wrk -t1 -d{args.seconds}s, mean of {args.rounds} round(s)")
    losses: dict[str, float] = {}
    for label, builds in http.items():
        on, off_ = builds["auth on"], builds["auth off"]
        losses[label] = loss_percent(on["rps"], off_["rps"])
        for name, r in builds.items():
            print(f"  -{label:<3} {name:<8} {r['rps']:>9,.0f} req/s   p50 {r['p50']:.3f} ms   "
                  f"p90 {r['p90']:.3f} ms   p99 {r['p99']:.3f} ms")
        print(f"  -{label:<3} throughput loss with auth on: {losses[label]:+.1f} %   "
              f"p50 {on['p50'] - off_['p50']:+.3f} ms   p99 {on['p99'] - off_['p99']:+.3f} ms")
    per_request_us = 1e6 / http["c1"]["auth off"]["rps"]
    print(f"Authenticator.authenticate, warm cache: {micro['us_per_call_best']:.2f} µs per call (best of 5 x "
          f"{micro['calls']:,}; median {micro['us_per_call_median']:.2f} µs), "
          f"{micro['us_per_call_best'] / per_request_us * 100:.1f} % of one -c1 request ({per_request_us:.0f} µs)")
    met = losses["c16"] <= TARGET_LOSS_PERCENT
    print(f"target: throughput loss ≤ {TARGET_LOSS_PERCENT:.0f} % at -c16: {'met' if met else 'MISSED'} "
          f"({losses['c16']:+.1f} %)")
    print(OFREP_NOTE)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "auth_overhead.json").write_text(json.dumps({
        "request": f"GET {PATH}",
        "wrk": {"threads": 1, "seconds": args.seconds, "rounds": args.rounds},
        "http": http,
        "throughput_loss_percent": losses,
        "authenticate_warm_cache": micro,
        "target": {"max_throughput_loss_percent": TARGET_LOSS_PERCENT, "met": met},
        "ofrep": "not measured: OFREP is not served yet (separate issue)",
        "cpus": os.cpu_count(),
    }, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
