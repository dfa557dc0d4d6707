"""What authentication costs evaluation on the query service: auth on vs off, same server, side by side.

    .venv/bin/python -m bench.auth_overhead [--seconds 10] [--rounds 2]

Target: at most 5 % less throughput with authentication on,
for OFREP and for native evaluation.

"auth on" is the query service as shipped (`python -m services.query`: the product's HTTP
server with the hot path), asked with an evaluator key of the org; "auth off" is
`bench.query_without_auth`, the same server whose `AuthGate` returns a fixed
evaluator of the same org without looking at the request. Both run at once on the
same database, Redis and seeded flags (`bench.ofrep.seed`), and wrk sends both the
same requests, `Authorization` header included: OFREP single-flag evaluation and
the native `GET`, cached answers (where a fixed cost shows most), `-t1 -c16` and
`-c1`. The builds take turns, in alternating order, for `--rounds` rounds; figures
are means over rounds. wrk runs on CPU 0 and both servers on the other CPUs, as in
`bench.ofrep` (with everything on any CPU, two busy servers and wrk on 2 cores gave
gaps of 15–22% between rounds, either way). A micro-benchmark times `Authenticator.authenticate` with a
warm key cache, the in-process work every request does between cache refreshes.
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

from bench.harness import REPO, drop_database, isolated_settings
from bench.ofrep import WRK_CPU, Target, flagstream_targets, place_servers, seed, wait_for_seed, wrk
from services.auth.authenticator import Authenticator
from services.auth.policy import Role
from services.infra.settings import Settings
from tests.conftest import start_stack
from tests.support.auth import MemoryKeys
from tests.support.processes import free_port, settings_env

RESULTS = Path(__file__).parent / "results"
SCENARIOS = ("single", "native")  # OFREP POST /ofrep/v1/evaluate/flags/{key}; GET /v1/orgs/{org}/flags/{key}
TARGET_LOSS_PERCENT = 5.0


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


def send(target: Target, *, with_key: bool = True) -> httpx.Response:
    headers = dict(target.headers) if with_key else {k: v for k, v in target.headers.items() if k != "Authorization"}
    return httpx.request(target.method, target.url, headers=headers, content=target.body, timeout=5)


def check_builds(targets: dict[str, dict[str, Target]]) -> None:
    """Both builds give the same answers with the key; only the auth-off build answers without one."""
    for scenario, builds in targets.items():
        on, off = send(builds["auth on"]), send(builds["auth off"])
        assert on.status_code == off.status_code == 200, (scenario, on.text, off.text)
        assert on.json() == off.json(), f"the two builds disagree on {scenario}"
        assert send(builds["auth on"], with_key=False).status_code == 401, "auth-on build answered without a key"
        assert send(builds["auth off"], with_key=False).status_code == 200, "auth-off build still authenticates"


def http_rounds(targets: dict[str, dict[str, Target]], *, seconds: int, rounds: int) -> dict[str, dict[str, dict]]:
    """{"<scenario> -c<n>": {build: mean figures}}, each build run `rounds` times in alternating order."""
    for builds in targets.values():  # warm both: document cache, key cache, connections
        for target in builds.values():
            wrk(target, connections=16, seconds=2, apart=True)
    results: dict[str, dict[str, dict]] = {}
    for scenario, builds in targets.items():
        for connections in (16, 1):
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
            for i in range(rounds):
                for name in list(builds) if i % 2 == 0 else list(reversed(builds)):
                    figures = wrk(builds[name], connections=connections, seconds=seconds, apart=True)
                    runs[name].append(figures)
                    print(f"  round {i + 1}, {scenario:<6} -c{connections:<2} {name:<8} {figures['rps']:>9,.0f} req/s"
                          f"   p50 {figures['p50']:.3f} ms   p99 {figures['p99']:.3f} ms", file=sys.stderr)
            results[f"{scenario} -c{connections}"] = {
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
    micro = await authenticate_micro()
    settings = await isolated_settings("auth")
    print(f"wrk on CPU {WRK_CPU}, the servers on CPUs {sorted(place_servers())}", file=sys.stderr)
    logs = Path(tempfile.mkdtemp())
    stack = start_stack(settings, logs)
    off = AuthOffService(settings, logs)
    try:
        key = await seed(stack.command_url, stack.headers)
        await wait_for_seed(stack.query_url, key)
        off.start()
        on_targets, off_targets = flagstream_targets(stack.query_url, key), flagstream_targets(off.url, key)
        targets = {s: {"auth on": on_targets[s], "auth off": off_targets[s]} for s in SCENARIOS}
        check_builds(targets)
        http = http_rounds(targets, seconds=args.seconds, rounds=args.rounds)
    finally:
        off.stop()
        stack.stop()
        await drop_database(settings)

    print(f"\ncached evaluations, wrk -t1 -d{args.seconds}s, mean of {args.rounds} round(s)")
    losses: dict[str, float] = {}
    for label, builds in http.items():
        on, off_ = builds["auth on"], builds["auth off"]
        losses[label] = loss_percent(on["rps"], off_["rps"])
        for name, r in builds.items():
            print(f"  {label:<10} {name:<8} {r['rps']:>9,.0f} req/s   p50 {r['p50']:.3f} ms   "
                  f"p90 {r['p90']:.3f} ms   p99 {r['p99']:.3f} ms")
        print(f"  {label:<10} throughput loss with auth on: {losses[label]:+.1f} %   "
              f"p50 {on['p50'] - off_['p50']:+.3f} ms   p99 {on['p99'] - off_['p99']:+.3f} ms")
    per_request_us = 1e6 / http["single -c1"]["auth off"]["rps"]
    print(f"Authenticator.authenticate, warm cache: {micro['us_per_call_best']:.2f} µs per call (best of 5 x "
          f"{micro['calls']:,}; median {micro['us_per_call_median']:.2f} µs), "
          f"{micro['us_per_call_best'] / per_request_us * 100:.1f} % of one -c1 OFREP request "
          f"({per_request_us:.0f} µs)")
    met = {label: loss <= TARGET_LOSS_PERCENT for label, loss in losses.items() if label.endswith("-c16")}
    for label, ok in met.items():
        print(f"target: throughput loss ≤ {TARGET_LOSS_PERCENT:.0f} % ({label}): {'met' if ok else 'MISSED'} "
              f"({losses[label]:+.1f} %)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "auth_overhead.json").write_text(json.dumps({
        "scenarios": {s: f"{t['auth on'].method} {t['auth on'].url}" for s, t in targets.items()},
        "wrk": {"threads": 1, "seconds": args.seconds, "rounds": args.rounds},
        "http": http,
        "throughput_loss_percent": losses,
        "authenticate_warm_cache": micro,
        "target": {"max_throughput_loss_percent": TARGET_LOSS_PERCENT, "met": met},
        "cpus": os.cpu_count(),
    }, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
